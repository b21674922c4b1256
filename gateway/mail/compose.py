"""Outgoing notifications as RFC 5322 messages (text, or text + HTML alternative).

The message is written out here directly. It used to be built from `email.mime` objects
and flattened by the compat32 generator, which folds every header through `Header.encode`
and quoted-printable-encodes the bodies in Python: several times the cost of this, and
about a tenth of the daemon's CPU. A reader gets back what it got from that generator:

- header values are made one line (`one_line`) and written as they are when they are
  ASCII, folded before a space where a line would pass 78 characters (folding only puts
  CRLF before a space that is there, so unfolding gives the value back);
- other values become RFC 2047 encoded words (UTF-8, base64), as `Header` made them;
  so do ASCII values that the generator wrote as they were but readers would misread
  (text that looks like an encoded word) or that no folding keeps within 998 octets a
  line (a word that long);
- bodies are UTF-8 quoted-printable (`binascii.b2a_qp`, in C); any line end in the text
  (CRLF, LF or CR) is a CRLF line end, as the generator made it.

The output is ASCII with CRLF line ends only, ending in CRLF. It is not dot-stuffed: the
SMTP client does that.
"""

from __future__ import annotations

import re
import secrets
import sys
from binascii import b2a_base64, b2a_qp
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, formataddr

from gateway.mail.classify import LOOP_HEADER
from gateway.mail.text import one_line


@dataclass(frozen=True)
class OutgoingMail:
    sender: str
    sender_name: str
    to: str
    reply_to: str
    subject: str
    text: str
    html: str
    message_id: str
    date: datetime
    loop_token: str
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    auto_submitted: str = "auto-replied"


_FOLD_AT = 78  # RFC 5322: header lines should not be longer than this
_MAX_LINE = 998  # RFC 5322: no line may be longer than this (without its CRLF)
_EW_LINE = 76  # RFC 2047: a header line holding an encoded word
_EW_MAX = 75  # RFC 2047: one encoded word
_EW_FRAME = len("=?utf-8?b??=")


def _fits(name: str, value: str) -> bool:
    """Whether `value` folded at its spaces keeps every line of the field within 998."""
    room = _MAX_LINE - len(name) - 2
    return len(value) <= room or max(map(len, value.split(" "))) <= room


def _plain(name: str, value: str) -> bool:
    """Whether `value` can be written as it is: ASCII, with nothing a reader would decode
    as an encoded word, and no word too long for a line."""
    return value.isascii() and "=?" not in value and _fits(name, value)


def _fold(name: str, words: list[str], width: int) -> str:
    """The field `name: words…` with CRLF, a new line before a word that would take a
    line past `width`. The first word stays on the name's line; a word longer than a
    line gets a line of its own."""
    lines = []
    line = f"{name}: {words[0]}"
    for word in words[1:]:
        if len(line) + 1 + len(word) > width:
            lines.append(line)
            line = " " + word
        else:
            line = f"{line} {word}"
    lines.append(line)
    return "\r\n".join(lines) + "\r\n"


def _plain_field(name: str, value: str) -> str:
    """The field with a value that can be written as it is (see `_plain`)."""
    if len(name) + 2 + len(value) <= _FOLD_AT:
        return f"{name}: {value}\r\n"
    return _fold(name, value.split(" "), _FOLD_AT)


def _encoded_words(value: str, room: int) -> list[str]:
    """`value` as encoded words: the first at most `room` characters long (what is left
    of the field's first line), the others at most 75. A word never ends inside the UTF-8
    bytes of a character (RFC 2047 6.3), and ends after a space where one is in its
    second half, so that a reader that wrongly keeps the white space between encoded
    words (Python before 3.14 does in display names, CPython gh-128110) shows at worst
    a doubled space rather than a broken word."""
    data = value.encode()
    words = []
    start = 0
    while start < len(data):
        size = (max(room, 24) - _EW_FRAME) // 4 * 3  # bytes; 24 leaves room for any character
        end = start + size
        if end < len(data):
            space = data.rfind(b" ", start + size // 2, end)
            if space >= 0:
                end = space + 1
            else:
                while data[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte
                    end -= 1
        words.append(f"=?utf-8?b?{b2a_base64(data[start:end], newline=False).decode()}?=")
        start = end
        room = _EW_MAX
    return words


def _field(name: str, value: str) -> str:
    """The header field with CRLF, for a value of any text. The value is made one line
    but not cut: References may be longer than a line, and fold."""
    value = one_line(value, sys.maxsize)
    if _plain(name, value):
        return _plain_field(name, value)
    return _fold(name, _encoded_words(value, _EW_LINE - len(name) - 2), _EW_LINE)


def _address(name: str, addr: str, display_name: str = "") -> str:
    """An address field: `formataddr` (display name quoted where it needs it), with the
    display name as encoded words where it cannot be written as it is."""
    addr, display_name = one_line(addr, sys.maxsize), one_line(display_name)
    if not display_name or (display_name.isascii() and "=?" not in display_name):
        value = formataddr((display_name, addr))  # refuses a non-ASCII address
        if not display_name or _fits(name, value):
            return _plain_field(name, value)
    addr.encode("ascii")  # as formataddr: an address must be ASCII
    words = _encoded_words(display_name, _EW_LINE - len(name) - 2)
    return _fold(name, [*words, f"<{addr}>"], _EW_LINE)


# b2a_qp writes white space before a line end as it goes and encodes it at the line end,
# without a soft break, so such a line can be 77 or 78 characters long: break it before
# that last escape (a line of 75 characters and "=" stays within 76). The pattern starts
# with a newline (one is put before the body) because a literal start is searched fast.
_QP_OVERLONG = re.compile(rb"\n(.{74,75})(=(?:20|09))(?=\n)")


def _quoted_printable(text: str) -> bytes:
    """`text` as UTF-8 quoted-printable, lines of at most 76 characters, CRLF line ends.

    b2a_qp encodes "=" (so "=_" never occurs), control characters, trailing white space
    and a "." alone on a line; "From " at a line start is left as it is (the generator
    did not mangle it either)."""
    data = text.replace("\r\n", "\n").replace("\r", "\n").encode()
    body = b2a_qp(data, quotetabs=False, istext=True, header=False)
    if b" \n" in data or b"\t\n" in data:
        body = _QP_OVERLONG.sub(rb"\n\1=\n\2", b"\n" + body)[1:]
    return body.replace(b"\n", b"\r\n")


_PART_HEADERS = (
    'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
)
_TEXT_PART = _PART_HEADERS.format("plain").encode()
_HTML_PART = _PART_HEADERS.format("html").encode()


def build_message(mail: OutgoingMail) -> bytes:
    """The message to send, as bytes with CRLF line ends, ready for SMTP or a maildir."""
    head = [
        _address("From", mail.sender, mail.sender_name),
        _address("To", mail.to),
        _address("Reply-To", mail.reply_to, mail.sender_name),
        _field("Subject", one_line(mail.subject)),
        _field("Date", format_datetime(mail.date)),
        _field("Message-ID", f"<{mail.message_id}>"),
    ]
    if mail.in_reply_to:
        head.append(_field("In-Reply-To", f"<{mail.in_reply_to}>"))
    if mail.references:
        head.append(_field("References", " ".join(f"<{mid}>" for mid in mail.references)))
    head += [
        _field("Auto-Submitted", mail.auto_submitted),
        "X-Auto-Response-Suppress: All\r\n",
        _field(LOOP_HEADER, mail.loop_token),
        "MIME-Version: 1.0\r\n",
    ]
    if not mail.html:
        body = _quoted_printable(mail.text)
        if body and not body.endswith(b"\r\n"):
            body += b"=\r\n"  # a soft line break: the message ends in CRLF, the text does not
        return "".join(head).encode("ascii") + _TEXT_PART + body
    # Our own boundary: "=_" cannot occur in quoted-printable, so it is never in the parts.
    boundary = f"=_{secrets.token_hex(16)}"
    head.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n')
    head.append(f"--{boundary}\r\n")
    return b"".join(
        (
            "".join(head).encode("ascii"),
            _TEXT_PART,
            _quoted_printable(mail.text),
            f"\r\n--{boundary}\r\n".encode(),
            _HTML_PART,
            _quoted_printable(mail.html),
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )
