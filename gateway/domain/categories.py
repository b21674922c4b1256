"""The category a customer names at the start of a new ticket's subject or first line.

"Incident: glasvezel ligt eruit" is an incident about "glasvezel ligt eruit". The words
are the provider's (PROCESS.md) in Dutch and English; a word only counts as the first
word, followed by a colon or a dash, after reply prefixes and ticket tags. Pure.
"""

from __future__ import annotations

import re

from gateway.domain.model import Category

WORDS: dict[Category, tuple[str, ...]] = {
    Category.INCIDENT: ("incident", "storing", "outage", "melding storing"),
    Category.SERVICE_REQUEST: (
        "service request", "servicerequest", "vraag", "verzoek", "aanvraag", "question",
        "request",
    ),
    Category.CHANGE: ("change", "wijziging", "wijzigingsverzoek", "change request"),
}  # fmt: skip

_BY_WORD = {word: category for category, words in WORDS.items() for word in words}
_LEAD = re.compile(
    r"^\s*(?P<word>" + "|".join(sorted(map(re.escape, _BY_WORD), key=len, reverse=True)) + r")"
    # A dash only separates with a space after it: "Storing - router", not "Incident-nummer".
    r"(?:\s*:|\s*[-–](?=\s|$))\s*(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)


def named_category(text: str) -> tuple[Category | None, str]:
    """The category named at the start of `text`, and the text without it."""
    found = _LEAD.match(text)
    if found is None:
        return None, text
    category = _BY_WORD[" ".join(found["word"].lower().split())]
    return category, found["rest"].strip()


def category_from_mail(subject: str, first_line: str) -> tuple[Category | None, str]:
    """The category the customer named (subject first, then the first line of the
    text) and the subject without the naming word."""
    category, rest = named_category(subject)
    if category is not None:
        return category, rest
    category, _ = named_category(first_line)
    return category, subject
