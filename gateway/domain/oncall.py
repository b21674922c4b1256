"""The 24/7 line: which new tickets page the on-call service (storingsdienst).

Only customers whose contract is an SLA with 24/7 support may use it (PROCESS.md), and
only outside office hours (inside them the team is there). A ticket pages when it is an
urgent incident: priority 1 or 2 once known; before an agent has set one, the mail
itself says so (Importance: high, X-Priority 1 or 2, Priority: urgent, or a word such as
"spoed", "urgent", "prio 1", "P1" in the subject). Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from gateway.domain.customers import Contract
from gateway.domain.model import Category

URGENT_PRIORITIES = frozenset({1, 2})
DEFAULT_URGENT_WORDS = ("spoed", "urgent", "dringend", "prio 1", "prio 2", "p1", "p2", "storing")


def _word_pattern(words: Iterable[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(w.strip()).replace(r"\ ", r"\s*") for w in words if w.strip())
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)


def mail_says_urgent(
    subject: str, headers: Mapping[str, str], words: Iterable[str] = DEFAULT_URGENT_WORDS
) -> bool:
    """The sender marked the mail urgent: a header or a word in the subject."""
    if headers.get("importance", "").strip().lower() == "high":
        return True
    if headers.get("priority", "").strip().lower() == "urgent":
        return True
    level = headers.get("x-priority", "").strip()[:1]
    if level in ("1", "2"):
        return True
    return bool(list(words)) and _word_pattern(words).search(subject) is not None


def should_page(
    contract: Contract | str,
    *,
    desk_open: bool,
    category: Category | str | None,
    priority: int | None,
    urgent_mail: bool,
) -> bool:
    """Whether a ticket pages the on-call service now."""
    if Contract(contract) is not Contract.SLA_24X7 or desk_open:
        return False
    if category not in (None, "", Category.INCIDENT):
        return False  # a question or a change waits for office hours
    if priority is not None:
        return priority in URGENT_PRIORITIES
    return urgent_mail
