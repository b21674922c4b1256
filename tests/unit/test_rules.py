from datetime import UTC, datetime, timedelta

import pytest

from gateway.domain.model import Status
from gateway.domain.rules import (
    ReplyEffect,
    customer_reply_outcome,
    is_approval,
    status_notice,
)

NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
WINDOW = timedelta(days=14)


def outcome(status: Status, text: str = "Hierbij de gegevens.", closed_at: datetime | None = None):
    return customer_reply_outcome(status, text, closed_at=closed_at, now=NOW, reopen_window=WINDOW)


def test_answer_while_awaiting_customer_moves_to_in_progress() -> None:
    result = outcome(Status.AWAITING_CUSTOMER)
    assert (result.effect, result.new_status) == (ReplyEffect.ANSWERED, Status.IN_PROGRESS)


@pytest.mark.parametrize(
    "text", ["Akkoord", "Akkoord, bedankt!", "akkoord.", "Goedgekeurd", "OK, accepted",
             "\n\n  Accepted, thanks", "Oké hoor", "Approved"]
)  # fmt: skip
def test_approval_while_awaiting_acceptance_closes(text: str) -> None:
    result = outcome(Status.AWAITING_ACCEPTANCE, text)
    assert (result.effect, result.new_status) == (ReplyEffect.ACCEPTED, Status.CLOSED)


@pytest.mark.parametrize(
    "text", ["Niet akkoord", "niet akkoord, het werkt nog steeds niet", "Not accepted",
             "No, still broken", "Het werkt nog niet", "Geen akkoord", ""]
)  # fmt: skip
def test_negation_or_other_text_while_awaiting_acceptance_goes_back_to_in_progress(
    text: str,
) -> None:
    result = outcome(Status.AWAITING_ACCEPTANCE, text)
    assert (result.effect, result.new_status) == (ReplyEffect.NOT_ACCEPTED, Status.IN_PROGRESS)


def test_mail_to_closed_ticket_within_window_reopens() -> None:
    result = outcome(Status.CLOSED, closed_at=NOW - timedelta(days=13, hours=23))
    assert (result.effect, result.new_status) == (ReplyEffect.REOPENED, Status.IN_PROGRESS)


def test_mail_to_closed_ticket_after_window_makes_new_ticket() -> None:
    result = outcome(Status.CLOSED, closed_at=NOW - timedelta(days=14, seconds=1))
    assert (result.effect, result.new_status) == (ReplyEffect.NEW_TICKET, None)


@pytest.mark.parametrize(
    "status", [Status.OPEN, Status.IN_PROGRESS, Status.ON_HOLD, Status.SCHEDULED]
)
def test_other_statuses_keep_their_status(status: Status) -> None:
    result = outcome(status, "Akkoord")
    assert (result.effect, result.new_status) == (ReplyEffect.ADDED, None)


def test_approval_reads_only_the_first_line() -> None:
    assert is_approval("Akkoord\n\nOp 1 maart schreef u: niet akkoord?")
    assert not is_approval("Dank, maar\nakkoord ben ik niet")


@pytest.mark.parametrize(
    ("status", "template"),
    [
        (Status.AWAITING_CUSTOMER, "info_needed"),
        (Status.ON_HOLD, "on_hold"),
        (Status.SCHEDULED, "scheduled"),
        (Status.AWAITING_ACCEPTANCE, "awaiting_acceptance"),
        (Status.CLOSED, "closed"),
        (Status.OPEN, None),
        (Status.IN_PROGRESS, None),
    ],
)
def test_status_changes_announced_to_the_customer(status: Status, template: str | None) -> None:
    assert status_notice(status) == template
