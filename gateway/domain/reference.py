"""Ticket reference numbers: `<PREFIX>-<year>-<6 digits>`, shown as a `[tag]` in subjects."""

from __future__ import annotations

import re
from functools import cache

SEQUENCE_DIGITS = 6


def format_reference(prefix: str, year: int, sequence: int) -> str:
    """The reference for the sequence-th ticket of a year, e.g. VTM-2026-000042."""
    return f"{prefix}-{year:04d}-{sequence:0{SEQUENCE_DIGITS}d}"


def subject_tag(reference: str) -> str:
    return f"[{reference}]"


@cache
def _reference_pattern(prefix: str) -> re.Pattern[str]:
    # The tag may be mangled by mail clients: brackets dropped or replaced, case changed,
    # spaces around the dashes. The digits are what identify the ticket.
    sep = r"\s*[-_ ]\s*"
    return re.compile(
        rf"(?<![A-Za-z0-9]){re.escape(prefix)}{sep}(\d{{4}}){sep}(\d{{{SEQUENCE_DIGITS}}})(?!\d)",
        re.IGNORECASE,
    )


def find_reference(text: str, prefix: str) -> str | None:
    """The first reference in a subject (or any text), normalised; None if there is none.

    Reply prefixes (Re, AW, Antw, SV, Fwd, Doorst, ...) and words around the tag do not
    matter: only the `<prefix>-<year>-<digits>` sequence is looked for.
    """
    match = _reference_pattern(prefix).search(text)
    if match is None:
        return None
    return format_reference(prefix.upper(), int(match.group(1)), int(match.group(2)))


_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|antw|antwoord|sv|vs|fw|fwd|doorst|wg|tr|r)\s*(?:\[\d+\])?\s*:\s*)+",
    re.IGNORECASE,
)


def strip_reply_prefixes(subject: str) -> str:
    """The subject without leading Re:/AW:/Fwd:/Doorst: and similar prefixes."""
    return _REPLY_PREFIX.sub("", subject).strip()
