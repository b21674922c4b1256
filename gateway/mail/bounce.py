"""Delivery status notifications (bounces): recognised, and what they are about.

`parse_bounce` takes a message as `email.message_from_bytes` gives it and returns a
`Bounce`: which recipients failed or are delayed, how, and which of our messages the
report concerns. Anything else is None: ordinary mail, auto-replies, read receipts, list
mail, a person forwarding or quoting a bounce.

Where the recipients come from, most reliable first:

1. a message/delivery-status part (RFC 3464), one group of fields per recipient; the
   text of the report only fills in a status or diagnostic the group lacks;
2. the text mail servers write for people, in the shapes Postfix, Exim, qmail,
   Exchange/Office 365, Gmail and Sendmail use: `<addr>: reason`, an address alone on a
   line with its reason on the lines below, "Your message wasn't delivered to addr";
   plus X-Failed-Recipients;
3. the same reading when no server is recognised ("heuristic"), only when the text
   also speaks of a failed delivery.

Only mail that a mail system sent counts: a multipart/report holding a delivery-status
part, or mail from mailer-daemon@ or postmaster@ (any domain), or with
X-Failed-Recipients or X-MS-Exchange-Message-Is-Ndr. A subject that starts like a reply
or forward ("Re:", "Fwd:", "Doorst:") is a person's mail. The text is read from the
report's own parts only: an attached message is the bounced mail, opened for its
Message-ID and nothing else.

`format` names the mail server when its wording or fields are recognised (a Postfix
DSN is "postfix", not "rfc3464"); "rfc3464" is a standard report from another server,
"heuristic" the fallback. A recipient's address is the one we sent to: the DSN's
Original-Recipient when it holds an address, else Final-Recipient; Postfix text's
"(expanded from <addr>)" likewise.

Pure: no I/O. `parse_bounce` never raises; broken input gives None or what could be
read of it. Sizes are bounded (parts, text, recipients, identifiers) so that a hostile
message costs little.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses

from gateway.mail.html import html_to_text

_MAX_PARTS = 64
_MAX_TEXT = 100_000  # characters of report text read; real bounces are a few thousand
_MAX_LINE = 2_000  # longer lines are no recipient lines
_MAX_DIAGNOSTIC_LINES = 8
_MAX_RECIPIENTS = 100
_MAX_IDS = 20
_MAX_ID = 250
_MAX_FIELD = 255  # envelope id, reporting MTA
_MAX_DIAGNOSTIC = 500
_MAX_ADDRESS = 254  # RFC 5321 path limit

# RFC 3464 Actions by the stem servers spell them with ("failure", "delay", "Delivered").
_ACTION_STEMS = (
    ("fail", "failed"),
    ("delay", "delayed"),
    ("deliver", "delivered"),
    ("relay", "relayed"),
    ("expand", "expanded"),
)
_ACTION_BY_STATUS_CLASS = {"5": "failed", "4": "delayed", "2": "delivered"}
_MAIL_SYSTEM_LOCALPARTS = frozenset({"mailer-daemon", "mailer_daemon", "postmaster"})
_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})
_HEADERS_TYPES = frozenset({"text/rfc822-headers", "message/global-headers"})
_RECIPIENT_FIELDS = frozenset({"final-recipient", "original-recipient"})
# The bounce's own sender and recipient (we, who sent the original): never the one that
# failed, though Sendmail transcripts name them ("<servicedesk@vtm.example>... Sender ok").
_OWN_ADDRESS_HEADERS = ("from", "sender", "to", "delivered-to")
# Codecs a hostile charset parameter must not pick: quadratic or not meant for bodies.
_REFUSED_CODECS = frozenset({"punycode", "idna"})

# ASCII addresses (IDN domains in their xn-- form): text in other scripts written
# against an address ("jan@klant.example您好") is not part of it.
_LOCAL_CHARS = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDRESS_TEXT = _LOCAL_CHARS + r"{1,64}@(?:" + _LABEL + r"\.){1,10}[A-Za-z][A-Za-z0-9-]{0,62}"
_ADDRESS = re.compile(r"(?<!" + _LOCAL_CHARS + r")" + _ADDRESS_TEXT + r"(?![A-Za-z0-9-])")
_ADDRESS_EXACT = re.compile(_ADDRESS_TEXT)
# An enhanced status code (RFC 3463), not part of an IP address or version number.
_STATUS = re.compile(r"(?<![\w.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
# A basic SMTP reply code (RFC 5321): 4yz or 5yz followed by its text.
_REPLY_CODE = re.compile(r"(?<![\w.:/+-])([45])[0-5]\d(?=[ -]\S)")

_FIELD = re.compile(r"([A-Za-z][A-Za-z0-9-]{0,76})[ \t]*:[ \t]*(.*)")
_FOLDED = re.compile(r"\r?\n[ \t]+")
_BLANK_LINE = re.compile(r"\r?\n[ \t]*\r?\n")
_TYPED_VALUE = re.compile(r"[ \t]*[A-Za-z][\w.-]{0,30}[ \t]*;[ \t]*")  # "rfc822; ", "smtp; "
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_WHITESPACE = re.compile(r"\s+")
_NEWLINE = re.compile(r"\r\n?")
_ID = r"[^<>\s\x00-\x1f\x7f-\x9f]{1," + str(_MAX_ID) + "}"
_MESSAGE_ID = re.compile(r"<(" + _ID + r")>")
_INLINE_MESSAGE_ID = re.compile(
    r"^[ \t>]*Message-ID[ \t]*:[ \t]*(?:\r?\n[ \t]+)?<(" + _ID + r")>", re.IGNORECASE | re.MULTILINE
)
_REPLY_OR_FORWARD = re.compile(
    r"^\s*(?:re|aw|antw|sv|fwd?|fw|doorst|wg|tr|rv)\s*(?:\[\d+\])?\s*:", re.IGNORECASE
)

# Where the text stops being the report and becomes a copy of the bounced mail.
_COPY_MARKER = re.compile(
    r"^[ \t]*(?:-{2,}[ \t]*(?:This is a copy of (?:the|your)|Below this line is a copy"
    r"|Enclosed (?:are|is) the original|Original message|Unsent message|Returned message"
    r"|The body of the message|The following is a copy|The header of the original message)"
    r"|Original message follows|Message headers follow|Original message headers:?[ \t]*$"
    r"|Oorspronkelijke berichtkoppen:|En-t.tes de message d'origine"
    r"|Urspr.ngliche Nachrichtenkopfzeilen:)",
    re.IGNORECASE | re.MULTILINE,
)

# Lines that name a recipient, read with fullmatch. Each has `addr`, `rest` (the start
# of the reason) and some `code` (an SMTP reply before the address) or `orig` (the
# address we sent to, before an alias expanded it).
_RECIPIENT_LINES = (
    # A line that starts with the address, bare, <quoted> or "quoted", maybe as a list
    # item: Postfix and qmail "<addr>: reason", Sendmail "<addr>... reason" and
    # "550 5.1.1 <addr>... reason", Exim and Gmail's address alone, Exchange's
    # "addr<mailto:addr>" and "addr on <date>"
    re.compile(
        r"[ \t]*(?:(?:>>>|[*\u2022-])[ \t]*)?"
        r"(?P<code>[45]\d\d(?:[ -][245]\.\d{1,3}\.\d{1,3})?[ \t]+)?"
        r"[\"']?<?(?P<addr>" + _ADDRESS_TEXT + r")>?[\"']?(?:[ \t]*<mailto:[^<>\s]*>)?"
        r"(?:[ \t]*\((?:expanded|generated) from[ \t]*<?(?P<orig>" + _ADDRESS_TEXT + r")>?\))?"
        r"(?P<rest>(?:[^\w@.-].*)?)"
    ),
    re.compile(
        r"[ \t]*(?:Recipient(?: address)?|Unknown user|User unknown|No such user|Invalid recipient"
        r"|Failed recipient|Ontvanger|Empf.nger|Destinataire)[ \t]*:"
        r"[ \t]*<?(?P<addr>" + _ADDRESS_TEXT + r")>?(?P<rest>.*)",
        re.IGNORECASE,
    ),
)
# Sentences that name a recipient, read with search (Gmail, Office 365, Dutch Exchange).
_RECIPIENT_SENTENCES = (
    re.compile(
        r"deliver(?:ed|ing)?(?: your)?(?: mail| message)?[ \t]+to:?[ \t]+"
        r"<?(?P<addr>" + _ADDRESS_TEXT + r")>?(?P<rest>.*)",
        re.IGNORECASE,
    ),
    re.compile(
        r"(?:message to|bericht aan)[ \t]+<?(?P<addr>" + _ADDRESS_TEXT + r")>?[ \t]+"
        r"(?P<rest>(?:couldn't|could not|can't|cannot|kan niet|kon niet).*)",
        re.IGNORECASE,
    ),
)

_SENT_BY = re.compile(r"\bsent by:?[ \t]*$", re.IGNORECASE)
_GENERATED_FROM = re.compile(
    r"[ \t]*\((?:ultimately )?generated from[ \t]+<?(?P<addr>" + _ADDRESS_TEXT + r")>?\)[ \t]*",
    re.IGNORECASE,
)

# Recognised mail servers, tried in order against `_signature` (subject, sender, start
# of the report text, delivery-status fields, telling headers).
_SERVERS = (
    ("qmail", re.compile(r"qmail-send program", re.IGNORECASE)),
    (
        "exim",
        re.compile(
            r"created automatically by mail delivery software|^x-exim-diagnostic:"
            r"|^subject: (?:mail delivery failed: returning|warning: message \S+ delayed)",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
    (
        "postfix",
        re.compile(
            r"this is the (?:mail system|postfix program) at host|^x-postfix-queue-id:"
            r"|^subject: undelivered mail returned to sender"
            r"|^subject: delayed mail \(still being retried\)",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
    ("gmail", re.compile(r"^from: mailer-daemon@(?:googlemail|google)\.com$", re.I | re.M)),
    (
        "exchange",
        re.compile(
            r"^x-ms-exchange-message-is-ndr:"
            r"|^subject: (?:undeliverable|onbestelbaar|niet[- ]bezorgbaar|unzustellbar|non remis"
            r"|non recapitabile|no se puede entregar|delivery delayed|vertraagd):"
            r"|delivery has failed to these recipients|delivery is delayed to these recipients"
            r"|diagnostic information for administrators|diagnostische gegevens voor beheerders"
            r"|de bezorging is mislukt|did not reach the following recipient",
            re.IGNORECASE | re.MULTILINE,
        ),
    ),
)
# A report that only warns: the server is still trying.
_WARNING = re.compile(
    r"warning only|still being retried|has not yet been delivered|still undelivered"
    r"|will (?:continue to )?(?:retry|be retried)|attempts will continue"
    r"|\(delay\)|delivery (?:is )?(?:incomplete|delayed)|temporary problem delivering"
    r"|has been delayed|vertraagd|^subject: warning: message",
    re.IGNORECASE | re.MULTILINE,
)
# Words every failure report uses, for the heuristic: without them a postmaster's own
# mail that names an address is not a bounce.
_FAILURE_WORDS = re.compile(
    r"deliver|fail|bounce|reject|return|unknown|error|unable|onbestelbaar|bezorg|zustell"
    r"|recapit|remis",
    re.IGNORECASE,
)
_REPORTING_HOST = re.compile(
    r"(?:this is the (?:mail system|postfix program|qmail-send program) at(?: host)?"
    r"|generating server:|genererende server:)[ \t]*([\w-]{1,63}(?:\.[\w-]{1,63}){0,10})\.?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient a delivery report is about."""

    address: str  # lower-case addr-spec
    status: str | None  # enhanced status code such as "5.1.1", when known
    action: str  # RFC 3464 Action; "failed" when only the text says so
    diagnostic: str  # one line, at most 500 characters, "" when none

    @property
    def permanent(self) -> bool:
        """Failed for good: a 5.x.x status, or no status on a report that gave up."""
        return self.action == "failed" and (self.status is None or self.status.startswith("5"))


@dataclass(frozen=True)
class Bounce:
    """A delivery report: who it is about and which of our messages it concerns."""

    format: str  # "rfc3464" | "exchange" | "postfix" | "exim" | "gmail" | "qmail" | "heuristic"
    recipients: tuple[FailedRecipient, ...]
    original_message_id: str | None
    original_ids: tuple[str, ...]  # the original's Message-ID first, then In-Reply-To, References
    envelope_id: str | None
    reporting_mta: str | None

    @property
    def permanent(self) -> bool:
        """Some recipient failed for good."""
        return any(r.permanent for r in self.recipients)

    @property
    def delayed_only(self) -> bool:
        """Only warnings that delivery is delayed: nothing has failed yet."""
        return bool(self.recipients) and all(r.action == "delayed" for r in self.recipients)


def parse_bounce(message: Message) -> Bounce | None:
    """The delivery report `message` is, or None when it is none; never raises."""
    try:
        return _parse(message)
    except Exception:  # hostile input must not stop the pipeline: it is no report then
        return None


# --- the report and its parts --------------------------------------------------------


_Fields = list[tuple[str, str]]  # (lower-case name, value on one line), in order


@dataclass
class _Report:
    """What the report's own parts hold (attached messages are not opened)."""

    plain: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    dsn_blocks: list[_Fields] = field(default_factory=list)
    has_dsn_part: bool = False
    originals: list[Message] = field(default_factory=list)  # the bounced mail, or its headers

    @property
    def text(self) -> str:
        parts = self.plain or [html_to_text(h) for h in self.html]
        return "\n\n".join(parts)[:_MAX_TEXT]


def _parse(message: Message) -> Bounce | None:
    if _REPLY_OR_FORWARD.match(_subject(message)):
        return None
    report = _read_report(message)
    from_mail_system = _sent_by_mail_system(message)
    is_report = message.get_content_type() == "multipart/report"
    if not (from_mail_system or (is_report and report.has_dsn_part)):
        return None
    text = report.text
    own_text, copy_text = _split_at_copy(text)
    blocks = report.dsn_blocks or (_embedded_dsn(text) if from_mail_system else [])
    found = _format_and_recipients(message, report.has_dsn_part, blocks, own_text)
    if found is None:
        return None
    format_, recipients = found
    original, ids = _original_ids(message, report, blocks, copy_text or text)
    return Bounce(
        format=format_,
        recipients=tuple(recipients[:_MAX_RECIPIENTS]),
        original_message_id=original,
        original_ids=ids,
        envelope_id=_field_value(blocks, "original-envelope-id"),
        reporting_mta=_field_value(blocks, "reporting-mta") or _reporting_host(own_text),
    )


def _format_and_recipients(
    message: Message, has_dsn_part: bool, blocks: list[_Fields], text: str
) -> tuple[str, list[FailedRecipient]] | None:
    """From the delivery-status fields when they name anyone, else from the report
    text, which must name someone and, from an unknown server, speak of a failure.
    None: no bounce. A delivery-status part that names no one is still a report."""
    server = _server(message, text, blocks)
    from_text = _recipients_in_text(message, text)
    from_dsn = _with_text_details(_dsn_recipients(blocks), from_text)
    if has_dsn_part or from_dsn:
        return server or "rfc3464", from_dsn or from_text
    if not from_text:
        return None
    if server is None and not _FAILURE_WORDS.search(f"{_subject(message)}\n{text}"):
        return None
    return server or "heuristic", from_text


def _report_parts(message: Message) -> Iterator[Message]:
    """The report's leaf parts in order; an attached message is one leaf, not opened."""
    pending = [message]
    seen = 0
    while pending and seen < _MAX_PARTS:
        part = pending.pop()
        seen += 1
        if part.get_content_maintype() == "multipart" and part.is_multipart():
            pending.extend(reversed(_subparts(part)))
        else:
            yield part


def _subparts(part: Message) -> list[Message]:
    """What a multipart or message/* part holds; [] for any other. Only these are asked
    for get_payload() without decode=True: on text it applies the declared charset, and
    a hostile one (punycode) raises."""
    payload = part.get_payload() if part.is_multipart() else None
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def _read_report(message: Message) -> _Report:
    report = _Report()
    for part in _report_parts(message):
        content_type = part.get_content_type()
        if content_type in _DSN_TYPES:
            report.has_dsn_part = True
            report.dsn_blocks.extend(_dsn_blocks(part))
        elif content_type in _MESSAGE_TYPES:
            report.originals.extend(_attached_message(part))
        elif content_type in _HEADERS_TYPES:
            report.originals.append(HeaderParser().parsestr(_decoded_text(part)))
        elif content_type == "text/html":
            report.html.append(_decoded_text(part))
        elif content_type == "text/plain" or part.get_content_maintype() == "multipart":
            # a multipart leaf is one whose boundary is broken: its body read as text
            report.plain.append(_decoded_text(part))
    return report


def _attached_message(part: Message) -> list[Message]:
    if part.is_multipart():
        return _subparts(part)[:1]
    return [HeaderParser().parsestr(_decoded_text(part))]  # message/global comes as text


def _sent_by_mail_system(message: Message) -> bool:
    """From mailer-daemon@ or postmaster@ (any domain), or with a header only a mail
    system adds to the reports it writes."""
    if "x-failed-recipients" in message or "x-ms-exchange-message-is-ndr" in message:
        return True
    for name, address in getaddresses([_header(message, "from") or ""]):
        # "MAILER-DAEMON <>" and "<MAILER-DAEMON>" have no domain, the first no address
        local = (address.split("@", 1)[0] or name).strip().lower()
        if local in _MAIL_SYSTEM_LOCALPARTS or local.startswith("microsoftexchange"):
            return True
    return False


def _server(message: Message, text: str, blocks: list[_Fields]) -> str | None:
    """The mail server whose wording or fields the report shows, when recognised."""
    signature = _signature(message, text, blocks)
    return next((name for name, pattern in _SERVERS if pattern.search(signature)), None)


def _signature(message: Message, text: str, blocks: list[_Fields]) -> str:
    senders = [a.lower() for _n, a in getaddresses([_header(message, "from") or ""])]
    lines = [f"subject: {_subject(message)}"]
    lines += [f"from: {address}" for address in senders]
    lines += [f"{name}: {value}" for block in blocks for name, value in block]
    if "x-ms-exchange-message-is-ndr" in message:
        lines.append("x-ms-exchange-message-is-ndr:")
    lines.append(text[:5_000])
    return "\n".join(lines)


# --- RFC 3464 delivery-status fields -------------------------------------------------


def _dsn_blocks(part: Message) -> list[_Fields]:
    """The field blocks of a delivery-status part. The email package hands them over as
    one Message per block; what it could not read as fields (an encoded part, fields
    after a stray line) is left in a block's body and read here."""
    if not part.is_multipart():
        return _blocks_in_text(_decoded_text(part))
    blocks: list[_Fields] = []
    for block in _subparts(part):
        blocks.append([(str(n).lower(), _one_line(_header_text(v))) for n, v in block.items()])
        rest = _decoded_text(block)
        if rest.strip():
            blocks.extend(_blocks_in_text(_undo_transfer_encoding(rest, part)))
    return blocks


def _blocks_in_text(text: str) -> list[_Fields]:
    blocks: list[_Fields] = []
    for chunk in _BLANK_LINE.split(text[:_MAX_TEXT]):
        fields: _Fields = []
        for line in _FOLDED.sub(" ", chunk).splitlines():
            found = _FIELD.fullmatch(line.strip())
            if found is not None:
                fields.append((found[1].lower(), _one_line(found[2])))
        if fields:
            blocks.append(fields)
    return blocks


def _embedded_dsn(text: str) -> list[_Fields]:
    """Delivery-status fields in the text of a report whose MIME structure is broken."""
    blocks = _blocks_in_text(text)
    if any(name in _RECIPIENT_FIELDS for block in blocks for name, _v in block):
        return blocks
    return []


def _dsn_recipients(blocks: list[_Fields]) -> list[FailedRecipient]:
    recipients: dict[str, FailedRecipient] = {}
    for group in _recipient_groups(blocks):
        recipient = _dsn_recipient(group)
        if recipient is not None:
            recipients.setdefault(recipient.address, recipient)
    return list(recipients.values())


def _recipient_groups(blocks: list[_Fields]) -> list[dict[str, str]]:
    """One dict of fields per recipient: a block that names a recipient, split again
    where it names a second one (servers that leave out the blank lines). A block that
    names none continues the group before it (fields after a line the email package
    could not read), or holds per-message fields."""
    groups: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for block in blocks:
        if any(name in _RECIPIENT_FIELDS for name, _v in block):
            current = {}
            groups.append(current)
        if current is None:
            continue
        for name, value in block:
            if name in _RECIPIENT_FIELDS and name in current:
                current = {}
                groups.append(current)
            current.setdefault(name, value)
    return groups


def _dsn_recipient(group: dict[str, str]) -> FailedRecipient | None:
    address = _typed_address(group.get("original-recipient", "")) or _typed_address(
        group.get("final-recipient", "")
    )
    if address is None:
        return None
    diagnostic = _untyped(group.get("diagnostic-code", ""))
    status = _status_in(group.get("status", "")) or _status_in(diagnostic)
    return FailedRecipient(
        address=address,
        status=status,
        action=_action(group.get("action", ""), status),
        diagnostic=_one_line(diagnostic)[:_MAX_DIAGNOSTIC],
    )


def _action(value: str, status: str | None) -> str:
    """The RFC 3464 Action; from the status class when it is missing or unknown."""
    word = value.strip().lower()
    for stem, action in _ACTION_STEMS:
        if word.startswith(stem):
            return action
    return _ACTION_BY_STATUS_CLASS.get((status or "5")[0], "failed")


def _with_text_details(
    recipients: list[FailedRecipient], from_text: list[FailedRecipient]
) -> list[FailedRecipient]:
    """DSN recipients with a status or diagnostic they lack taken from the report text."""
    by_address = {r.address: r for r in from_text}
    completed = []
    for recipient in recipients:
        known = by_address.get(recipient.address)
        if known is not None and (recipient.status is None or not recipient.diagnostic):
            recipient = FailedRecipient(
                address=recipient.address,
                status=recipient.status or known.status,
                action=recipient.action,
                diagnostic=recipient.diagnostic or known.diagnostic,
            )
        completed.append(recipient)
    return completed


def _field_value(blocks: list[_Fields], name: str) -> str | None:
    """A per-message field ("Reporting-MTA: dns; host" gives "host"), or None."""
    for block in blocks:
        for field_name, value in block:
            if field_name == name:
                value = _untyped(value) if name == "reporting-mta" else value
                value = value.strip()[:_MAX_FIELD]
                if value:
                    return value
    return None


# --- the text written for people -------------------------------------------------------


@dataclass
class _Found:
    address: str
    diagnostic: str
    status: str | None
    weight: int  # 2: an SMTP reply with an enhanced code, 1: one of those, 0: neither
    named_as: str  # the address on the line: `address` but for an alias target


def _recipients_in_text(message: Message, text: str) -> list[FailedRecipient]:
    """Recipients the report text names, with status and reason, plus X-Failed-Recipients."""
    found = _named_in_lines(text.splitlines(), _own_addresses(message))
    named = {f.named_as for f in found.values()}  # an alias target is no recipient of ours
    for address in _failed_recipients_header(message):
        if address not in named:
            found.setdefault(address, _Found(address, "", None, 0, address))
    if len(found) == 1:
        _status_from_whole_text(next(iter(found.values())), text)
    warning = _WARNING.search(f"subject: {_subject(message)}\n{text[:5_000]}")
    return [
        FailedRecipient(
            address=f.address,
            status=f.status,
            action="delayed" if warning and not (f.status or "").startswith("5") else "failed",
            diagnostic=f.diagnostic[:_MAX_DIAGNOSTIC],
        )
        for f in list(found.values())[:_MAX_RECIPIENTS]
    ]


def _named_in_lines(lines: list[str], own: frozenset[str]) -> dict[str, _Found]:
    """Each recipient line's address with the reason below it; an address named twice
    keeps the reason that says most (Exchange: the explanation, then the SMTP reply)."""
    found: dict[str, _Found] = {}
    index = 0
    while index < len(lines):
        hit = _recipient_on_line(lines[index])
        if hit is None or hit[0] in own or _follows_sent_by(lines, index):
            index += 1
            continue
        address, rest = hit
        reason = _reason_lines(lines, index)
        index += 1 + len(reason)
        alias_of = _generated_from(reason)
        if alias_of is not None:
            reason = reason[1:]
        candidate = _found(alias_of or address, " ".join([rest, *reason]))
        candidate.named_as = address
        known = found.get(candidate.address)
        if known is None or candidate.weight > known.weight:
            found[candidate.address] = candidate
    return found


def _follows_sent_by(lines: list[str], index: int) -> bool:
    """Exim names the sender the way it names recipients: "A message sent by\n\n  <addr>"."""
    before = [line for line in lines[max(0, index - 2) : index] if line.strip()]
    return bool(before) and _SENT_BY.search(before[-1]) is not None


def _generated_from(reason: list[str]) -> str | None:
    """The address we sent to when Exim's next line says an alias led to this one."""
    generated = _GENERATED_FROM.fullmatch(reason[0]) if reason else None
    return None if generated is None else _clean_address(generated["addr"])


def _recipient_on_line(line: str) -> tuple[str, str] | None:
    """(address, start of the reason) when the line names a recipient."""
    if len(line) > _MAX_LINE or "@" not in line:
        return None
    for pattern in _RECIPIENT_LINES:
        found = pattern.fullmatch(line)
        if found is not None:
            groups = found.groupdict()
            address = _clean_address(groups.get("orig") or "") or _clean_address(groups["addr"])
            if address is not None:
                rest = (groups.get("rest") or "").strip()
                if rest.startswith("(") and rest.endswith(")"):  # Sendmail: "<addr>  (reason)"
                    rest = rest[1:-1]
                rest = rest.lstrip(":. \t")
                if rest.startswith("on "):  # Exchange 2003: "addr on <date>", no reason
                    rest = ""
                return address, f"{groups.get('code') or ''}{rest}"
    for pattern in _RECIPIENT_SENTENCES:
        found = pattern.search(line)
        if found is not None:
            address = _clean_address(found["addr"])
            if address is not None:
                return address, found["rest"].strip()
    return None


def _reason_lines(lines: list[str], index: int) -> list[str]:
    """The lines after recipient line `index` that give its reason: up to a blank line,
    the next recipient (indented no deeper: Postfix wraps a reason onto indented lines
    that may start with the address again) or a few lines."""
    indent = _indent(lines[index])
    reason: list[str] = []
    for line in lines[index + 1 : index + 1 + _MAX_DIAGNOSTIC_LINES]:
        if not line.strip():
            break
        if _indent(line) <= indent and _recipient_on_line(line) is not None:
            break
        reason.append(line)
    return reason


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _found(address: str, reason: str) -> _Found:
    diagnostic = _one_line(reason)
    status = _status_in(diagnostic)
    reply = _REPLY_CODE.search(diagnostic)
    if status is None and reply is not None:
        status = f"{reply[1]}.0.0"  # RFC 3463: x.0.0 is the class without detail
    weight = (_STATUS.search(diagnostic) is not None) + (reply is not None)
    return _Found(address, diagnostic, status, weight, address)


def _status_from_whole_text(found: _Found, text: str) -> None:
    """The only recipient of a report takes the first status in the text when the lines
    at its address had none (Gmail: "The response was:" further down)."""
    if found.status is not None:
        return
    for line in text.splitlines():
        candidate = _found(found.address, line)
        if candidate.status is not None:
            found.status, found.weight = candidate.status, candidate.weight
            found.diagnostic = found.diagnostic or candidate.diagnostic
            return


def _failed_recipients_header(message: Message) -> list[str]:
    values = [_header_text(v) for v in message.get_all("x-failed-recipients", [])]
    addresses = (_clean_address(a) for _n, a in getaddresses(values))
    return [a for a in addresses if a is not None]


def _own_addresses(message: Message) -> frozenset[str]:
    values = [_header_text(v) for name in _OWN_ADDRESS_HEADERS for v in message.get_all(name, [])]
    return frozenset(a.lower() for _n, a in getaddresses(values) if a)


def _split_at_copy(text: str) -> tuple[str, str]:
    """The report's own text, and the copy of the bounced mail after it ("" if none)."""
    marker = _COPY_MARKER.search(text)
    if marker is None:
        return text, ""
    return text[: marker.start()], text[marker.start() :]


def _reporting_host(text: str) -> str | None:
    found = _REPORTING_HOST.search(text)
    return found[1][:_MAX_FIELD] if found is not None else None


# --- the original message ------------------------------------------------------------


def _original_ids(
    message: Message, report: _Report, blocks: list[_Fields], copy_text: str
) -> tuple[str | None, tuple[str, ...]]:
    """The bounced mail's Message-ID, and every id that may name it (that one first,
    then the bounce's In-Reply-To, then its References nearest first)."""
    found = [
        mid
        for original in report.originals
        for mid in _message_ids(_header(original, "message-id"))
    ]
    found = found or list(_message_ids(_field_value(blocks, "x-original-message-id")))
    found = found or _INLINE_MESSAGE_ID.findall(copy_text[:_MAX_TEXT])[:1]
    thread = [
        *_message_ids(_header(message, "in-reply-to")),
        *reversed(_message_ids(_header(message, "references"))),
    ]
    ids = tuple(dict.fromkeys([*found, *thread]))[:_MAX_IDS]
    return (ids[0] if ids else None), ids


def _message_ids(value: str | None) -> tuple[str, ...]:
    """Message-IDs in a header value, without angle brackets."""
    if not value:
        return ()
    value = _CONTROL.sub(" ", value)
    found = _MESSAGE_ID.findall(value)
    bare = value.strip().strip("<>")
    if not found and bare and len(bare) <= _MAX_ID and not _WHITESPACE.search(bare):
        found = [bare]
    return tuple(found)


# --- small helpers ---------------------------------------------------------------------


def _header(message: Message, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else _header_text(value)


def _subject(message: Message) -> str:
    return _one_line((_header(message, "subject") or "")[:_MAX_LINE])


def _header_text(value: object) -> str:
    """A header value as text: 8-bit bytes (Header objects, surrogates) read as UTF-8."""
    text = str(value)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _one_line(value: str) -> str:
    """No CR, LF or other control characters; runs of whitespace as one space."""
    return _WHITESPACE.sub(" ", _CONTROL.sub(" ", value)).strip()


def _clean_address(value: str) -> str | None:
    """A lower-case addr-spec, or None when `value` is not one."""
    candidate = value.strip().strip("<>\"' \t").rstrip(".:;,")
    if len(candidate) > _MAX_ADDRESS or _ADDRESS_EXACT.fullmatch(candidate) is None:
        return None
    return candidate.lower()


def _typed_address(value: str) -> str | None:
    """The address in a recipient field such as "rfc822; <jan@klant.example>"."""
    value = _untyped(value)
    address = _clean_address(value)
    if address is None:
        found = _ADDRESS.search(value[:_MAX_LINE])
        address = None if found is None else _clean_address(found[0])
    return address


def _untyped(value: str) -> str:
    """A field value without its leading type: "smtp; 550 ..." gives "550 ..."."""
    typed = _TYPED_VALUE.match(value)
    return value if typed is None else value[typed.end() :]


def _status_in(text: str) -> str | None:
    found = _STATUS.search(text)
    if found is None:
        return None
    return ".".join(str(int(number)) for number in found.groups())


def _decoded_text(part: Message) -> str:
    """A leaf part's body as text: transfer encoding undone, its charset applied (else
    UTF-8, else Latin-1), LF line ends, at most _MAX_TEXT characters."""
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    text = _bytes_to_text(data[: _MAX_TEXT * 4], part.get_content_charset())[:_MAX_TEXT]
    return _NEWLINE.sub("\n", text)


def _bytes_to_text(data: bytes, charset: str | None) -> str:
    for name in (charset, "utf-8"):
        if not name:
            continue
        try:
            if codecs.lookup(name).name in _REFUSED_CODECS:
                continue
            return data.decode(name)
        except (LookupError, UnicodeError, ValueError):
            continue
    return data.decode("latin-1")


def _undo_transfer_encoding(text: str, part: Message) -> str:
    """Text a delivery-status part carried base64- or quoted-printable-encoded."""
    encoding = _header_text(part.get("content-transfer-encoding", "")).strip().lower()
    raw = text[: _MAX_TEXT * 2].encode("ascii", "replace")
    try:
        if encoding == "base64":
            return _bytes_to_text(base64.b64decode(raw), part.get_content_charset())
        if encoding == "quoted-printable":
            return _bytes_to_text(quopri.decodestring(raw), part.get_content_charset())
    except (binascii.Error, ValueError):
        return text
    return text
