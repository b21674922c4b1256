"""Raw RFC 5322 bytes -> ParsedMail, the values the pipeline works with.

Charsets and encoded words are decoded in `gateway.mail.text`, addresses read in
`gateway.mail.addresses`.
"""

from __future__ import annotations

import email
import re
import unicodedata
from dataclasses import dataclass, field
from email.message import Message
from functools import cached_property

from gateway.mail.addresses import MAX_ADDRESS_CHARS, Budget, address_list, sender_mailbox
from gateway.mail.attachments import (
    MESSAGE_TYPES,
    MailAttachment,
    mail_attachment,
    part_payload,
)
from gateway.mail.html import html_reply
from gateway.mail.quotes import new_part
from gateway.mail.text import (
    CONTROL,
    MAX_HEADER_CHARS,
    UnparseableMail,
    decode_text,
    header_text,
    message_ids,
    one_line,
    unraw,
)

_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_MAX_DEPTH = 30  # MIME nesting we walk; deeper parts are left out


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
    # The Authentication-Results headers of the topmost hop that wrote any (up to the
    # next Received line), topmost first.
    authentication_results: tuple[str, ...] = ()
    # Every part that is not the text: files, inline images, forwarded mails.
    attachments: tuple[MailAttachment, ...] = ()
    # HTML-only mail whose markup shows where the quoted earlier mail starts (Outlook,
    # Gmail, Apple Mail, Thunderbird, Yahoo): the converted text before it.
    text_before_quote: str | None = None

    @cached_property
    def new_text(self) -> str:
        """What the sender wrote in this message: `text` without quotes and signature."""
        if self.text_before_quote is not None:
            return new_part(self.text_before_quote) or self.text
        return new_part(self.text)

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Message-IDs this mail answers, nearest first (In-Reply-To, then References)."""
        seen: dict[str, None] = {}
        for mid in (*self.in_reply_to, *reversed(self.references)):
            seen.setdefault(mid, None)
        return tuple(seen)


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
    "importance",
    "x-priority",
    "priority",
)
_BODY_TYPES = frozenset({"text/plain", "text/html"})


@dataclass
class _Walk:
    """What walking the MIME tree collects."""

    plain: list[str] = field(default_factory=list)
    html: list[Message] = field(default_factory=list)  # decoded only when there is no plain
    attachments: list[MailAttachment] = field(default_factory=list)


def _raw_headers(message: Message) -> dict[str, list[str]]:
    """Header values as the byte parser left them, by lower-case name, in order.

    Authentication-Results are kept from the topmost hop that wrote any: the run that
    ends at the next Received line. Below it they were written before the mail reached
    the hop that added them, by anyone.
    """
    index: dict[str, list[str]] = {}
    results: list[str] = []
    hop_done = False
    for name, value in message.raw_items():
        lower = name.lower()
        if lower == "authentication-results":
            if not hop_done:
                results.append(str(value))
            continue
        if lower == "received" and results:
            hop_done = True
        index.setdefault(lower, []).append(str(value))
    if results:
        index["authentication-results"] = results
    return index


_CHARSET_PARAM = re.compile(r';\s*charset\s*=\s*"?\s*([^";\s]+)', re.IGNORECASE)
_FILENAME_PARAM = re.compile(r"""(?:^|;)\s*(?:file)?name\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)""", re.I)


def _charset(part: Message, content_type: str, data: bytes) -> str | None:
    """The charset label of a text part; for HTML without one, its <meta> charset."""
    header = str(part.get("content-type", ""))
    found = _CHARSET_PARAM.search(header)
    label = found[1] if found else part.get_content_charset() if "charset" in header else None
    if label is None and content_type == "text/html" and not data.isascii():
        meta = _META_CHARSET.search(data, 0, 4096)
        label = meta[1].decode("ascii") if meta else None
    return label


def _part_text(part: Message, content_type: str) -> str:
    data = part_payload(part)
    return decode_text(data, _charset(part, content_type, data)).lstrip("\ufeff")


def _param_name(part: Message, param: str, header: str) -> str | None:
    """A file name parameter decoded (RFC 2231, RFC 2047, raw 8-bit)."""
    value = part.get_param(param, None, header)
    if isinstance(value, tuple):  # RFC 2231: (charset, language, text as latin-1)
        charset, _language, text = value
        return decode_text(text.encode("latin-1", "replace"), charset or "utf-8")
    if isinstance(value, str) and "\ufffd" in value:  # raw 8-bit the email package lost
        raws = [str(v) for k, v in part.raw_items() if k.lower() == header]
        found = _FILENAME_PARAM.search(unraw(raws[0])) if raws else None
        value = found[1].strip().strip('"') if found else value
    return header_text(value) if isinstance(value, str) else None


def _attachment_name(part: Message, content_type: str) -> str | None:
    name = _param_name(part, "filename", "content-disposition") or _param_name(
        part, "name", "content-type"
    )
    if name or content_type not in MESSAGE_TYPES:
        return name
    embedded = part.get_payload()
    first = embedded[0] if isinstance(embedded, list) and embedded else None
    subjects = first.get_all("subject", []) if isinstance(first, Message) else []
    subject = one_line(header_text(str(subjects[0])), 200) if subjects else ""
    return f"{subject}.eml" if subject else None


def _is_body(part: Message, content_type: str, *, root: bool) -> bool:
    """Whether a part is (part of) the text: text/plain or text/html not attached."""
    if content_type not in _BODY_TYPES:
        return root and content_type.startswith("multipart/")  # its boundary is lost
    disposition = part.get("content-disposition")
    return disposition is None or part.get_content_disposition() != "attachment"


def _is_named(part: Message) -> bool:
    """Whether a part carries a file name (Content-Disposition filename, Content-Type name)."""
    if part.get("content-disposition") is not None and part.get_param(
        "filename", None, "content-disposition"
    ):
        return True
    return "name" in str(part.get("content-type", "")).lower() and bool(part.get_param("name"))


def _walk(part: Message, found: _Walk, *, attached: bool, depth: int) -> None:
    """Collect the text parts and attachments under `part`. Text with a file name is
    both: shown as the mail client shows it (inline), and kept as the file."""
    content_type = part.get_content_type()
    if content_type.startswith("multipart/") and part.is_multipart():
        if depth >= _MAX_DEPTH:
            return
        attached = attached or part.get_content_disposition() == "attachment"
        for child in part.get_payload():
            if isinstance(child, Message):
                _walk(child, found, attached=attached, depth=depth + 1)
        return
    if not attached and _is_body(part, content_type, root=depth == 0):
        if content_type == "text/html":
            found.html.append(part)
        else:
            found.plain.append(_part_text(part, content_type))
        if not _is_named(part):
            return
    number = len(found.attachments) + 1
    name = _attachment_name(part, content_type)
    found.attachments.append(mail_attachment(part, number=number, name=name))


def _clean(text: str) -> str:
    return CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


def _body_text(found: _Walk) -> tuple[str, str | None]:
    """The text of the message, and the text before the quote when HTML marks it."""
    text = "\n".join(part for part in found.plain if part.strip())
    if text.strip() or not found.html:
        return unicodedata.normalize("NFC", _clean(text)), None
    converted = [html_reply(_part_text(part, "text/html")) for part in found.html]
    whole = "\n\n".join(reply.text for reply in converted)
    before: str | None = None
    for index, reply in enumerate(converted):
        if reply.before_quote is not None:
            parts = [r.text for r in converted[:index]] + [reply.before_quote]
            before = unicodedata.normalize("NFC", _clean("\n\n".join(parts)))
            break
    return unicodedata.normalize("NFC", _clean(whole)), before


def _first(headers: dict[str, list[str]], name: str) -> str | None:
    values = headers.get(name)
    return unraw(values[0]) if values else None


def parse_mail(raw: bytes) -> ParsedMail:
    """Parse raw bytes into a ParsedMail; raise UnparseableMail when it is not a message."""
    if not raw.strip():
        raise UnparseableMail("empty message")
    try:
        message = email.message_from_bytes(raw)
    except RecursionError as exc:
        raise UnparseableMail("MIME structure nested too deeply") from exc
    except Exception as exc:  # the parser is lenient; this is a safety net
        raise UnparseableMail(f"cannot read the message: {exc}") from exc
    headers = _raw_headers(message)
    budget = Budget()
    sender = sender_mailbox(headers, budget)
    if len(sender.address) > MAX_ADDRESS_CHARS:
        raise UnparseableMail(f"sender address longer than {MAX_ADDRESS_CHARS} characters")

    found = _Walk()
    try:
        _walk(message, found, attached=False, depth=0)
    except RecursionError as exc:
        raise UnparseableMail("MIME structure nested too deeply") from exc
    text, before_quote = _body_text(found)

    message_id = next(iter(message_ids(_first(headers, "message-id"))), None)
    if message_id is not None and len(message_id) > MAX_HEADER_CHARS:
        message_id = None  # not a usable key; the content hash still dedupes
    kept = {name: one_line(unraw(headers[name][0])) for name in _KEPT_HEADERS if name in headers}
    delivered = headers.get("delivered-to", []) + headers.get("x-original-to", [])
    return ParsedMail(
        message_id=message_id,
        subject=one_line(header_text(_first(headers, "subject") or "")),
        sender=sender.address,
        sender_name=sender.name,
        to=address_list(headers.get("to", []), budget),
        cc=address_list(headers.get("cc", []), budget),
        delivered_to=address_list(delivered, budget),
        in_reply_to=message_ids(_first(headers, "in-reply-to")),
        references=message_ids(" ".join(unraw(v) for v in headers.get("references", []))),
        text=text,
        headers=kept,
        content_type=message.get_content_type(),
        authentication_results=tuple(
            one_line(unraw(v), 4096) for v in headers.get("authentication-results", [])[:20]
        ),
        attachments=tuple(found.attachments),
        text_before_quote=before_quote,
    )
