"""The new part of a reply: without the quoted earlier mail, the signature and the
disclaimers. mail-parser-reply does the work (Dutch, English and German patterns);
a few patterns it misses are added here: Gmail's and Apple Mail's Dutch "Op ...
schreef ...:" / "... het volgende geschreven:", quoted lines without a header, and
"Verstuurd vanaf mijn iPhone". Non-destructive: the caller keeps the whole text, and
when splitting would leave nothing, the whole text is the new part.

HTML replies carry the quote in markup: `quote_marker` recognises the elements Outlook,
Gmail, Apple Mail, Thunderbird and Yahoo put around (or on top of) the quoted mail, and
`starts_with_reply_header` confirms Outlook's divider, a plain bordered <div>, by the
"Van:/From: ... Verzonden:/Sent:" header that follows it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

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
        message = EmailMessage(text=head, languages=list(LANGUAGES), keep_hyphen_lists=True).read()
        body = message.replies[0].body if message.replies else head
    except Exception:  # a pattern the library chokes on: keep what we have
        body = head
    body = _TRAILING_QUOTE.sub("", "\n" + body)
    body = _SENT_FROM_DEVICE.sub("", body).strip()
    return body or whole


# Element ids and classes that start the quoted earlier mail in HTML replies.
_QUOTE_IDS = frozenset(
    {
        "divrplyfwdmsg",  # Outlook on the web, new Outlook
        "mail-editor-reference-message-container",  # Outlook for Mac
        "olk_src_body_section",  # older Outlook for Mac
    }
)
_QUOTE_CLASSES = frozenset({"gmail_quote", "moz-cite-prefix", "yahoo_quoted"})
# Outlook desktop's divider: <div style="border:none;border-top:solid #E1E1E1 1.0pt;...">.
_BORDER_TOP = re.compile(r"border-top\s*:\s*solid", re.IGNORECASE)
# The header of the quoted mail under that divider: From/Van, then Sent/Verzonden.
_REPLY_HEADER = re.compile(
    r"\A\s*(?:From|Van|Von|De|Da|Fra|Från)\s*:[^\n]*\n(?:[^\n]*\n){0,3}?"
    r"\s*(?:Sent|Verzonden|Gesendet|Envoyé|Inviato|Enviado|Date|Datum|Dato)\s*:",
    re.IGNORECASE,
)


def quote_marker(tag: str, attrs: Mapping[str, str | None]) -> Literal["quote", "header"] | None:
    """ "quote" when an HTML element starts the quoted earlier mail; "header" when it
    does if a reply header follows (Outlook's bordered divider); else None."""
    element_id = (attrs.get("id") or "").lower()
    if element_id in _QUOTE_IDS or element_id.startswith("yahoo_quoted"):
        return "quote"
    if tag == "hr" and element_id == "stopspelling":  # Outlook on the web, Hotmail
        return "quote"
    if _QUOTE_CLASSES.intersection((attrs.get("class") or "").lower().split()):
        return "quote"
    if tag == "blockquote" and (attrs.get("type") or "").lower() == "cite":  # Apple, Thunderbird
        return "quote"
    if tag == "div" and _BORDER_TOP.search(attrs.get("style") or ""):
        return "header"
    return None


def starts_with_reply_header(text: str) -> bool:
    """Whether text starts with the From/Sent header Outlook writes above a quote."""
    return _REPLY_HEADER.match(text) is not None
