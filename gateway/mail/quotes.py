"""The new part of a reply: without the quoted earlier mail, the signature and the
disclaimers. mail-parser-reply does the work (Dutch, English and German patterns);
a few patterns it misses are added here: Gmail's and Apple Mail's Dutch "Op ...
schreef ...:" / "... het volgende geschreven:", quoted lines without a header, and
"Verstuurd vanaf mijn iPhone". Non-destructive: the caller keeps the whole text, and
when splitting would leave nothing, the whole text is the new part."""

from __future__ import annotations

import re

from mailparser_reply import EmailMessage

LANGUAGES = ("nl", "en", "de")
# "Op ma 2 mrt 2026 om 09:31 schreef X <x@y>:", "On ... wrote:", "Am ... schrieb ...:",
# possibly wrapped over two lines, possibly itself quoted.
_WROTE = re.compile(
    r"^[ \t>]*(?:Op|On|Am)\s(?:[^\n]|\n(?!\s*\n)){4,240}?"
    r"(?:schreef|het volgende geschreven|wrote|schrieb)[^\n]*:[ \t]*$",
    re.MULTILINE | re.IGNORECASE,
)
# Quoted lines at the end without a recognised header line.
_TRAILING_QUOTE = re.compile(r"(?:\n[ \t]*>[^\n]*)+\s*\Z")
# The phone's own signature.
_SENT_FROM_DEVICE = re.compile(
    r"^[ \t]*(?:Verstuurd|Verzonden|Sent|Gesendet) (?:vanaf|met|from|von|with) "
    r"(?:mijn|my|meinem)\b[^\n]*$",
    re.MULTILINE | re.IGNORECASE,
)


def new_part(text: str) -> str:
    """The text a person wrote in this message, as agents and notifications show it."""
    whole = text.strip()
    if not whole:
        return whole
    head = whole
    wrote = _WROTE.search(head)
    if wrote is not None:
        head = head[: wrote.start()]
    try:
        message = EmailMessage(text=head, languages=list(LANGUAGES)).read()
        body = message.replies[0].body if message.replies else head
    except Exception:  # a pattern the library chokes on: keep what we have
        body = head
    body = _TRAILING_QUOTE.sub("", "\n" + body)
    body = _SENT_FROM_DEVICE.sub("", body).strip()
    return body or whole
