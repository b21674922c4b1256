"""Raw RFC 5322 bytes -> ParsedMail, the values the pipeline works with."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses
from functools import cached_property

import mailparser

from gateway.mail.html import html_to_text
from gateway.mail.quotes import new_part

_MSGID = re.compile(r"<([^<>\s]+)>")
_WHITESPACE = re.compile(r"\s+")
# Control characters no database column should hold (PostgreSQL refuses NUL in text).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_HEADER_CHARS = 998  # RFC 5322 line limit; also the size of the subject columns
MAX_ADDRESS_CHARS = 254  # RFC 5321 path limit


class UnparseableMail(Exception):
    """The bytes are not a message the desk can act on (the reason says why)."""


@dataclass(frozen=True)
class ParsedMail:
    message_id: str | None
    subject: str
    sender: str
    sender_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    delivered_to: tuple[str, ...]
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    text: str
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/plain"
    # Every Authentication-Results header, topmost (added last, nearest to us) first.
    authentication_results: tuple[str, ...] = ()

    @cached_property
    def new_text(self) -> str:
        """What the sender wrote in this message: `text` without quotes and signature."""
        return new_part(self.text)

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Message-IDs this mail answers, nearest first (In-Reply-To, then References)."""
        seen: dict[str, None] = {}
        for mid in (*self.in_reply_to, *reversed(self.references)):
            seen.setdefault(mid, None)
        return tuple(seen)


def message_ids(value: str | None) -> tuple[str, ...]:
    """The Message-IDs in a header value, without angle brackets."""
    if not value:
        return ()
    value = _CONTROL.sub("", value)
    found = _MSGID.findall(value)
    if not found and value.strip() and " " not in value.strip():
        found = [value.strip().strip("<>")]
    return tuple(found)


def one_line(value: str, limit: int = MAX_HEADER_CHARS) -> str:
    """A header value folded to one line: CR, LF and runs of whitespace become one space,
    control characters go, and at most `limit` characters are kept."""
    return _WHITESPACE.sub(" ", _CONTROL.sub("", value)).strip()[:limit]


def addresses(values: list[tuple[str, str]] | None) -> tuple[str, ...]:
    """Bare, lower-case addresses, in order, without duplicates or empty entries."""
    out: dict[str, None] = {}
    for _name, addr in values or []:
        addr = addr.strip().lower()
        if "@" in addr:
            out.setdefault(addr, None)
    return tuple(out)


# Headers the classifier reads; kept lower-case and on one line.
_KEPT_HEADERS = (
    "auto-submitted",
    "precedence",
    "x-autoreply",
    "x-autorespond",
    "x-auto-response-suppress",
    "x-ms-exchange-inbox-rules-loop",
    "x-loop",
    "x-failed-recipients",
    "list-id",
    "list-unsubscribe",
    "list-post",
    "return-path",
    "x-ticket-gateway-loop",
)


def _text(value: object) -> str:
    """A header value as text: 8-bit bytes (Header objects, surrogates) decoded as UTF-8,
    with replacement characters where that fails."""
    text = str(value)
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")


def _header_values(message: Message, name: str) -> list[str]:
    return [_text(v) for v in message.get_all(name, [])]


def _header(message: Message, name: str) -> str | None:
    values = _header_values(message, name)
    return values[0] if values else None


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse raw bytes into a ParsedMail; raise UnparseableMail when it is not a message."""
    if not raw.strip():
        raise UnparseableMail("empty message")
    try:
        mail = mailparser.parse_from_bytes(raw)
    except Exception as exc:  # mail-parser raises many kinds on broken input
        raise UnparseableMail(f"mail-parser failed: {exc}") from exc
    message: Message = mail.message

    senders = addresses(mail.from_) or addresses(getaddresses(_header_values(message, "sender")))
    if not senders:
        raise UnparseableMail("no sender address (From/Sender missing or empty)")
    if len(senders[0]) > MAX_ADDRESS_CHARS:
        raise UnparseableMail(f"sender address longer than {MAX_ADDRESS_CHARS} characters")
    sender_name = next((one_line(n) for n, a in mail.from_ or [] if a.lower() == senders[0]), "")

    text = "\n".join(part for part in mail.text_plain if part.strip())
    if not text.strip() and mail.text_html:
        text = "\n\n".join(html_to_text(part) for part in mail.text_html)
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    subject = mail.subject or ""
    if isinstance(subject, list):  # more than one Subject header: the first counts
        subject = str(subject[0]) if subject else ""
    message_id = next(iter(message_ids(_header(message, "message-id"))), None)
    if message_id is not None and len(message_id) > MAX_HEADER_CHARS:
        message_id = None  # not a usable key; the content hash still dedupes

    headers = {}
    for name in _KEPT_HEADERS:
        values = _header_values(message, name)
        if values:
            headers[name] = one_line(values[0])

    delivered = getaddresses(
        _header_values(message, "delivered-to") + _header_values(message, "x-original-to")
    )
    return ParsedMail(
        message_id=message_id,
        subject=one_line(subject),
        sender=senders[0],
        sender_name=sender_name,
        to=addresses(mail.to),
        cc=addresses(mail.cc),
        delivered_to=addresses(delivered),
        in_reply_to=message_ids(_header(message, "in-reply-to")),
        references=message_ids(" ".join(_header_values(message, "references"))),
        text=text,
        headers=headers,
        content_type=message.get_content_type(),
        authentication_results=tuple(
            one_line(v, 4096) for v in _header_values(message, "authentication-results")[:20]
        ),
    )
