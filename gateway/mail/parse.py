"""Raw RFC 5322 bytes -> ParsedMail, the values the pipeline works with.

The message is read with the standard library (`email.message_from_bytes`, compat32:
the fast parser) and walked here: the text/plain parts (else the text/html parts,
converted) are the text, every other part is an attachment, decoded once.

Text is decoded so that it never raises and never turns into mojibake where a right
reading exists (`decode_text`): a label is trusted except where senders are known to
lie (ISO-8859-1 or US-ASCII over windows-1252 or UTF-8 bytes), labels are read
leniently ("utf8", "cp-850", `UTF-8"`), and text without a usable label is UTF-8 where
it is valid and windows-1252 byte by byte where it is not. Replacement characters mark
what no reading can give. Headers get the same treatment for raw 8-bit bytes and for
RFC 2047 encoded words.

Addresses are read by RFC 5322 (`email._header_value_parser`, what `email.policy.default`
uses), with a fast path for the shapes nearly all mail has. A From (or Sender) that is
not one valid mailbox makes the message `UnparseableMail`; invalid To/Cc entries are
dropped. Display names are read leniently (encoded words in quotes, an unquoted comma),
the address itself strictly.
"""

from __future__ import annotations

import binascii
import codecs
import email
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from email import _header_value_parser as rfc5322
from email.message import Message
from functools import cached_property, lru_cache

from gateway.mail.attachments import (
    MESSAGE_TYPES,
    MailAttachment,
    decode_base64,
    mail_attachment,
    part_payload,
)
from gateway.mail.html import html_reply
from gateway.mail.quotes import new_part

_MSGID = re.compile(r"<([^<>\s]+)>")
_WHITESPACE = re.compile(r"\s+")
# Control characters no database column should hold (PostgreSQL refuses NUL in text).
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_HEADER_CHARS = 998  # RFC 5322 line limit; also the size of the subject columns
MAX_ADDRESS_CHARS = 254  # RFC 5321 path limit
_MAX_DEPTH = 30  # MIME nesting we walk; deeper parts are left out
# The RFC 5322 parser is slow (milliseconds on a few hundred odd characters): what it
# reads is bounded per entry and per message. The common shapes never reach it.
_MAX_ENTRY = 400  # characters of one address list entry
_MAX_PARSED_ENTRIES = 32  # address list entries per message

# --- charsets ---------------------------------------------------------------------------

_FALLBACK = "ticket-gateway-cp1252"  # codec error handler: undecodable bytes as windows-1252
_LABEL = re.compile(r"[a-z0-9_.:+-]+")
# Labels the email world uses for what Python calls otherwise, and the supersets that
# the sending software really writes under the label of the subset.
_LABEL_ALIASES = {
    "iso-8859-8-i": "iso8859-8",
    "iso-8859-6-i": "iso8859-6",
    "windows-874": "cp874",
    "x-mac-roman": "mac-roman",
    "x-sjis": "cp932",
    "x-gbk": "gb18030",
}
_SUPERSETS = {
    "shift_jis": "cp932",
    "euc_kr": "cp949",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "iso2022_jp": "iso2022_jp_ext",
}
# Where the label is a lie about as often as not: the bytes are windows-1252 or UTF-8.
_WESTERN = frozenset({"ascii", "iso8859-1", "cp1252", "iso8859-15"})
_C1_BYTES = re.compile(rb"[\x80-\x9f]")
# Codecs a hostile label must not pick: quadratic, or not text at all.
_REFUSED_CODECS = frozenset(
    {"punycode", "idna", "unicode-escape", "raw-unicode-escape", "undefined", "charmap"}
)
_SHIFTING_CODECS = ("iso2022", "hz", "utf-7")
_ASCII_PROBE = b"AZaz09 @.,:;<>=?!'\"()[]{}_-+/\\\r\n\t"
_META_CHARSET = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)


def _cp1252_fallback(error: UnicodeError) -> tuple[str, int]:
    if not isinstance(error, UnicodeDecodeError):
        raise error
    return error.object[error.start : error.end].decode("cp1252", "replace"), error.end


codecs.register_error(_FALLBACK, _cp1252_fallback)


@dataclass(frozen=True)
class _Codec:
    name: str
    ascii_compatible: bool  # ASCII bytes mean ASCII text (not UTF-16, ISO-2022, EBCDIC)


@lru_cache(maxsize=256)
def _codec(label: str | None) -> _Codec | None:
    """The codec a charset label means, or None when it names none we should use."""
    found = _LABEL.match((label or "").strip().strip("\"'").strip().lower())
    if found is None:
        return None
    name = _LABEL_ALIASES.get(found[0], found[0])
    for candidate in (name, name.replace("-", "").replace("_", "")):
        try:
            codec = codecs.lookup(candidate).name
        except LookupError:
            continue
        if codec in _REFUSED_CODECS:
            return None
        try:
            probe = _ASCII_PROBE.decode(codec)  # refuses bytes-to-bytes codecs (base64)
        except (LookupError, UnicodeError, ValueError):
            return None
        codec = _SUPERSETS.get(codec, codec)
        shifting = codec.startswith(_SHIFTING_CODECS)  # ASCII bytes switch to other sets
        return _Codec(codec, probe == _ASCII_PROBE.decode("ascii") and not shifting)
    return None


def _decode_unlabelled(data: bytes) -> str:
    return data.decode("utf-8", _FALLBACK)


def _decode_western(data: bytes, codec: str) -> str:
    try:
        return data.decode("utf-8")  # not ASCII, so it has multibyte sequences: UTF-8
    except UnicodeDecodeError:
        pass
    if codec == "iso8859-15" and _C1_BYTES.search(data) is None:
        return data.decode(codec)
    return data.decode("cp1252", "replace")  # C1 controls in ISO-8859-1 are never meant


def decode_text(data: bytes, label: str | None) -> str:
    """Bytes as text by their charset label, corrected where labels are known to lie;
    never raises, replacement characters where no reading exists."""
    codec = _codec(label)
    if codec is None:
        return data.decode("ascii") if data.isascii() else _decode_unlabelled(data)
    if codec.ascii_compatible and data.isascii():
        return data.decode("ascii")
    if codec.name == "utf-8":
        return data.decode("utf-8", "replace")
    if codec.name in _WESTERN:
        return _decode_western(data, codec.name)
    try:
        return data.decode(codec.name)
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(codec.name, "replace")


def _unraw(value: str) -> str:
    """A value from the byte parser with its raw 8-bit bytes (held as surrogates) read
    as UTF-8, or windows-1252 where they are not UTF-8."""
    if value.isascii():
        return value
    try:
        return value.encode("utf-8", "surrogateescape").decode("utf-8", _FALLBACK)
    except UnicodeEncodeError:  # a surrogate no byte parser makes
        return value.encode("utf-8", "replace").decode("utf-8")


# --- RFC 2047 encoded words -------------------------------------------------------------

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([QqBb])\?([^?]*)\?=")


def _word_bytes(encoding: str, text: str) -> bytes:
    data = text.encode("utf-8", "surrogateescape")
    if encoding in "Bb":
        return decode_base64(data)
    return binascii.a2b_qp(data, header=True)  # Q: "_" is a space


def decode_words(text: str) -> str:
    """RFC 2047 encoded words decoded; the space between two of them dropped, and
    adjacent words in one charset decoded together (a character may span them)."""
    if "=?" not in text:
        return text
    out: list[str] = []
    label: str | None = None  # the charset of `data`, encoded bytes not decoded yet
    data = b""
    after_word = False
    position = 0
    for word in _ENCODED_WORD.finditer(text):
        gap = text[position : word.start()]
        charset = word[1].partition("*")[0]  # without an RFC 2231 language suffix
        if label is not None and (gap.strip() or charset.lower() != label.lower()):
            out.append(decode_text(data, label))
            label, data = None, b""
        if gap.strip() or not after_word:
            out.append(gap)
        label = label or charset
        data += _word_bytes(word[2], word[3])
        after_word, position = True, word.end()
    if label is not None:
        out.append(decode_text(data, label))
    out.append(text[position:])
    return "".join(out)


def header_text(value: str) -> str:
    """A raw header value as text: 8-bit bytes and encoded words decoded, NFC."""
    return unicodedata.normalize("NFC", decode_words(_unraw(value)))


# --- single values ----------------------------------------------------------------------


class UnparseableMail(Exception):
    """The bytes are not a message the desk can act on (the reason says why)."""


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


# --- addresses --------------------------------------------------------------------------

_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_UTF8_ATEXT = r"[\w!#$%&'*+/=?^`{|}~-]"  # RFC 6532: letters of any script too
_ASCII_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_UTF8_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_PLAIN_ADDRESS = rf"{_ATEXT}+(?:\.{_ATEXT}+)*@{_ASCII_LABEL}(?:\.{_ASCII_LABEL})*"
_QUOTED = r'"(?:[^"\\]|\\[\s\S])*"'
# Display name words; parentheses too, as in "Jan de Vries (Klant BV)".
_PHRASE = r"[\w.!#$%&'*+/=?^`{|}~()-]+(?:\s+[\w.!#$%&'*+/=?^`{|}~()-]+)*"
# One mailbox in the shapes nearly all mail has: an address, or a display name (words
# or one quoted string) and an address in angle brackets. Anything else is left to the
# RFC 5322 parser.
_SIMPLE_MAILBOX = re.compile(
    rf"\s*(?:(?P<bare>{_PLAIN_ADDRESS})|(?:(?P<name>{_PHRASE}|{_QUOTED})\s*)?"
    rf"<(?P<angle>{_PLAIN_ADDRESS})>)\s*"
)
# Text and then one address in angle brackets: the text is the display name even when
# it holds an unquoted comma or an address ("Bakker, Jan <jan@x>", "a@b <c@d>").
_NAME_THEN_ANGLE = re.compile(r"(?P<name>[^<>]*)<(?P<angle>[^<>]*)>\s*")
# A host name (letters of any script) or a domain literal such as [192.0.2.1].
_HOST = re.compile(rf"{_UTF8_LABEL}(?:\.{_UTF8_LABEL})*|\[[^\[\]\\\s]+\]")
_QUOTED_STRING = re.compile(_QUOTED)
# A dot-atom or a quoted string without control characters (line breaks included).
_LOCAL_PART = re.compile(
    rf'{_UTF8_ATEXT}+(?:\.{_UTF8_ATEXT}+)*|"(?:[^"\\\x00-\x1f]|\\[^\x00-\x1f])*"'
)
_FOLDING = re.compile(r"\r?\n(?=[ \t])")
_UNKNOWN_PROBLEM = "not a valid address"
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)


@dataclass(frozen=True)
class _Mailbox:
    name: str
    address: str  # lower-case


@dataclass(frozen=True)
class _Invalid:
    text: str
    defect: str = ""  # what the RFC 5322 parser found wrong, if it said
    problem: str = ""  # what we know is wrong, before looking at the text


_Entry = _Mailbox | _Invalid


@dataclass
class _Budget:
    """How many more address entries the RFC 5322 parser may read for this message."""

    left: int = _MAX_PARSED_ENTRIES

    def take(self) -> bool:
        self.left -= 1
        return self.left >= 0


def _display_name(raw: str) -> str:
    name = raw.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = _QUOTED_PAIR.sub(r"\1", name[1:-1])
    return one_line(unicodedata.normalize("NFC", decode_words(name)))


def _simple_mailboxes(value: str) -> list[_Mailbox] | None:
    """The mailboxes of a list in the common shapes, or None when it is not that simple."""
    found: list[_Mailbox] = []
    position = 0
    while True:
        match = _SIMPLE_MAILBOX.match(value, position)
        if match is None:
            return None
        address = match["bare"] or match["angle"]
        found.append(_Mailbox(_display_name(match["name"] or ""), address.lower()))
        position = match.end()
        if position == len(value):
            return found
        if value[position] != ",":
            return None
        position += 1


def _valid_domain(domain: str) -> bool:
    return len(domain) <= 253 and _HOST.fullmatch(domain) is not None


def _valid_address(address: str) -> bool:
    """Whether an addr-spec as the RFC 5322 parser writes it back is one we can use
    (the parser lets a few odd local parts through, such as a bare line break)."""
    local, _, domain = address.rpartition("@")
    return _LOCAL_PART.fullmatch(local) is not None and _valid_domain(domain)


def _unfolded(value: str) -> str:
    """A raw address header value unfolded (RFC 5322 2.2.3) and its 8-bit bytes read."""
    return _FOLDING.sub("", _unraw(value))


def _comma_separated(value: str) -> list[_Entry]:
    """The entries between commas, for when the RFC 5322 parser gives up."""
    found: list[_Entry] = []
    for piece in value.split(","):
        if piece.strip():
            found.extend(_simple_mailboxes(piece) or [_Invalid(one_line(piece))])
    return found


def _parsed_entries(value: str) -> list[_Entry]:
    """The entries of an address list as the RFC 5322 parser reads them."""
    try:
        parsed, rest = rfc5322.get_address_list(value)
        tokens = list(parsed.all_mailboxes)
    except Exception:  # the parser raises IndexError and others on some broken input
        return _comma_separated(value)
    found: list[_Entry] = []
    for token in tokens:
        valid = token.token_type == "mailbox" and token.local_part and token.domain
        if valid and _valid_address(token.addr_spec):
            # "jan@klant.example (Jan de Vries)": the comment is the only name there is.
            name = token.display_name or " ".join(token.comments)
            name = unicodedata.normalize("NFC", one_line(_unraw(name)))
            found.append(_Mailbox(name, token.addr_spec.lower()))
        else:
            defects = [str(d) for d in token.all_defects]
            found.append(_Invalid(one_line(_unraw(str(token))), defects[0] if defects else ""))
    if rest.strip():
        found.append(_Invalid(one_line(rest)))
    if len(found) == 1 and isinstance(found[0], _Invalid):  # show it as it was written
        found[0] = _Invalid(one_line(value), found[0].defect)
    return found


def _top_level_pieces(value: str) -> list[str]:
    """The value split at the commas outside quoted strings, comments and angle brackets."""
    pieces: list[str] = []
    start = depth = 0
    quoted = escaped = angle = False
    for index, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\" and (quoted or depth):
            escaped = True
        elif quoted:
            quoted = char != '"'
        elif char == "(":
            depth += 1
        elif depth:
            depth -= char == ")"
        elif char in '"<>':
            quoted, angle = char == '"', char == "<" or (angle and char != ">")
        elif char == "," and not angle:
            pieces.append(value[start:index])
            start = index + 1
    pieces.append(value[start:])
    return pieces


def _entries(value: str, budget: _Budget) -> list[_Entry]:
    """Every entry of an address list: the common shapes by the fast path, the rest by
    the RFC 5322 parser, one entry at a time when the list is long."""
    simple = _simple_mailboxes(value)
    if simple is not None:
        return [*simple]
    pieces = [value] if len(value) <= _MAX_ENTRY else _top_level_pieces(value)
    found: list[_Entry] = []
    for piece in pieces:
        simple = _simple_mailboxes(piece) if len(pieces) > 1 else None
        if simple is not None:
            found.extend(simple)
        elif not piece.strip():
            continue
        elif len(piece) > _MAX_ENTRY:
            found.append(_Invalid(piece[:200], problem=f"longer than {_MAX_ENTRY} characters"))
        elif not budget.take():
            found.append(_Invalid(piece[:200], problem="too many unusual addresses to read"))
        else:
            found.extend(_parsed_entries(piece))
    return found


def _address_problem(entry: _Invalid) -> str:
    """What is wrong with an address, in words."""
    if entry.problem:
        return entry.problem
    found = _spec_problem(entry.text)
    if found == _UNKNOWN_PROBLEM and entry.defect:
        return entry.defect
    return found


def _spec_problem(text: str) -> str:
    spec = text.strip()
    if spec.count("<") != spec.count(">"):
        return "unbalanced angle brackets"
    if spec.count("(") != spec.count(")"):
        return "unbalanced parentheses"
    if "<" in spec:
        angle = _NAME_THEN_ANGLE.fullmatch(spec)
        if angle is None:
            return "misplaced angle brackets"
        spec = angle["angle"].strip()
    if not spec:
        return "empty address"
    unquoted = _QUOTED_STRING.sub('""', spec)
    if "@" not in unquoted:
        return "missing @ and domain"
    if unquoted.count("@") > 1:
        return "more than one @"
    local, _, domain = unquoted.rpartition("@")
    if not local.strip():
        return "missing local part"
    if not domain.strip():
        return "missing domain"
    if _WHITESPACE.search(unquoted):
        return "spaces in the address"
    if not _valid_domain(domain):
        return f"invalid domain {domain[:100]!r}"
    return _UNKNOWN_PROBLEM


def _sender_mailboxes(value: str, budget: _Budget) -> list[_Mailbox]:
    """The valid mailboxes of a From or Sender value; UnparseableMail naming the first
    invalid entry. Text before a last address in angle brackets is its display name."""
    trailing = _NAME_THEN_ANGLE.fullmatch(value)
    if trailing is not None and len(value) <= _MAX_ENTRY:
        angle = _simple_mailboxes(f"<{trailing['angle'].strip()}>")
        if angle:
            return [_Mailbox(_display_name(trailing["name"]), angle[0].address)]
    mailboxes: list[_Mailbox] = []
    for entry in _entries(value, budget):
        if isinstance(entry, _Invalid):
            shown = one_line(entry.text, 200)
            raise UnparseableMail(f"invalid sender address {shown!r}: {_address_problem(entry)}")
        mailboxes.append(entry)
    return mailboxes


def _sender(headers: dict[str, list[str]], budget: _Budget) -> _Mailbox:
    """Who sent the message: the one mailbox in From; the Sender when From holds none
    or several (RFC 5322 3.6.2)."""
    authors = [_unfolded(v) for v in headers.get("from", [])[:1] if v.strip()]
    found = _sender_mailboxes(authors[0], budget) if authors else []
    if len(found) != 1:
        agents = [_unfolded(v) for v in headers.get("sender", [])[:1] if v.strip()]
        on_behalf = _sender_mailboxes(agents[0], budget) if agents else []
        if len(on_behalf) == 1:
            return on_behalf[0]
        if len(found) > 1:
            raise UnparseableMail(
                f"From holds {len(found)} addresses and no Sender says which one sent it"
            )
        raise UnparseableMail("no sender address (From/Sender missing or empty)")
    return found[0]


def _addresses(values: Iterable[str], budget: _Budget) -> tuple[str, ...]:
    """The valid addresses of address headers, lower-case, in order, without duplicates;
    invalid entries are left out."""
    out: dict[str, None] = {}
    for raw in values:
        value = _unfolded(raw)
        for entry in _entries(value, budget) if value.strip() else []:
            if isinstance(entry, _Mailbox) and len(entry.address) <= MAX_ADDRESS_CHARS:
                out.setdefault(entry.address, None)
    return tuple(out)


# --- the message ------------------------------------------------------------------------


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
        found = _FILENAME_PARAM.search(_unraw(raws[0])) if raws else None
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
    return _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()


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
    return _unraw(values[0]) if values else None


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
    budget = _Budget()
    sender = _sender(headers, budget)
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
    kept = {name: one_line(_unraw(headers[name][0])) for name in _KEPT_HEADERS if name in headers}
    delivered = headers.get("delivered-to", []) + headers.get("x-original-to", [])
    return ParsedMail(
        message_id=message_id,
        subject=one_line(header_text(_first(headers, "subject") or "")),
        sender=sender.address,
        sender_name=sender.name,
        to=_addresses(headers.get("to", []), budget),
        cc=_addresses(headers.get("cc", []), budget),
        delivered_to=_addresses(delivered, budget),
        in_reply_to=message_ids(_first(headers, "in-reply-to")),
        references=message_ids(" ".join(_unraw(v) for v in headers.get("references", []))),
        text=text,
        headers=kept,
        content_type=message.get_content_type(),
        authentication_results=tuple(
            one_line(_unraw(v), 4096) for v in headers.get("authentication-results", [])[:20]
        ),
        attachments=tuple(found.attachments),
        text_before_quote=before_quote,
    )
