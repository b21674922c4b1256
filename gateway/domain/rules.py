"""What a customer's e-mail does to its ticket, and what each change tells the customer.

Pure functions over values: the service layer asks, then writes what they answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from gateway.domain.model import Status


class ReplyEffect(StrEnum):
    """The kinds of effect a customer's follow-up has on its ticket."""

    ADDED = "added"  # article added, status kept
    ANSWERED = "answered"  # awaiting_customer -> in_progress
    ACCEPTED = "accepted"  # awaiting_acceptance + approval -> closed
    NOT_ACCEPTED = "not_accepted"  # awaiting_acceptance + anything else -> in_progress
    REOPENED = "reopened"  # closed, within the reopen window -> in_progress
    NEW_TICKET = "new_ticket"  # closed, after the reopen window -> a new, linked ticket


@dataclass(frozen=True)
class ReplyOutcome:
    effect: ReplyEffect
    new_status: Status | None  # None: the status does not change


_NEGATION = re.compile(
    r"^\s*(?:niet|not|no|nee|geen|nicht|never)\b",
    re.IGNORECASE,
)
_APPROVAL = re.compile(
    r"^\s*(?:akkoord|accoord|goedgekeurd|geaccepteerd|accepted|approved|agreed|accept|"
    r"oké|oke|okay|ok|prima|yes|ja)\b",
    re.IGNORECASE,
)


def is_approval(text: str) -> bool:
    """True when the customer's new text starts with an approval ("Akkoord, bedankt!").

    A negation at the start ("niet akkoord", "not accepted") is never an approval.
    """
    first = next((line for line in text.splitlines() if line.strip()), "")
    if _NEGATION.match(first):
        return False
    return _APPROVAL.match(first) is not None


def customer_reply_outcome(
    status: Status,
    text: str,
    *,
    closed_at: datetime | None,
    now: datetime,
    reopen_window: timedelta,
) -> ReplyOutcome:
    """The effect of a customer's e-mail on a ticket in `status` (PROCESS.md)."""
    if status is Status.AWAITING_CUSTOMER:
        return ReplyOutcome(ReplyEffect.ANSWERED, Status.IN_PROGRESS)
    if status is Status.AWAITING_ACCEPTANCE:
        if is_approval(text):
            return ReplyOutcome(ReplyEffect.ACCEPTED, Status.CLOSED)
        return ReplyOutcome(ReplyEffect.NOT_ACCEPTED, Status.IN_PROGRESS)
    if status is Status.CLOSED:
        if closed_at is not None and now - closed_at <= reopen_window:
            return ReplyOutcome(ReplyEffect.REOPENED, Status.IN_PROGRESS)
        return ReplyOutcome(ReplyEffect.NEW_TICKET, None)
    return ReplyOutcome(ReplyEffect.ADDED, None)


# Status changes by an agent that are announced to the customer, and the template that
# does it. Open and in_progress are the provider's own business and are not announced.
STATUS_NOTICES: dict[Status, str] = {
    Status.AWAITING_CUSTOMER: "info_needed",
    Status.ON_HOLD: "on_hold",
    Status.SCHEDULED: "scheduled",
    Status.AWAITING_ACCEPTANCE: "awaiting_acceptance",
    Status.CLOSED: "closed",
}


def status_notice(new_status: Status) -> str | None:
    """The customer notification template for an agent's status change, if any."""
    return STATUS_NOTICES.get(new_status)
