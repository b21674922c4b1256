"""Text from mail bytes: charsets, RFC 2047 encoded words, one-line header values.

Text is decoded so that it never raises and never turns into mojibake where a right
reading exists (`decode_text`): a label is trusted except where senders are known to
lie (ISO-8859-1 or US-ASCII over windows-1252 or UTF-8 bytes), labels are read
leniently ("utf8", "cp-850", `UTF-8"`), and text without a usable label is UTF-8 where
it is valid and windows-1252 byte by byte where it is not. Replacement characters mark
what no reading can give. Headers get the same treatment for raw 8-bit bytes and for
RFC 2047 encoded words.
"""

from __future__ import annotations

import binascii
import codecs
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from gateway.mail.attachments import decode_base64

_MSGID = re.compile(r"<([^<>\s]+)>")
_WHITESPACE = re.compile(r"\s+")
# Control characters no database column should hold (PostgreSQL refuses NUL in text).
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_HEADER_CHARS = 998  # RFC 5322 line limit; also the size of the subject columns


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


def unraw(value: str) -> str:
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
    return unicodedata.normalize("NFC", decode_words(unraw(value)))


# --- single values ----------------------------------------------------------------------


class UnparseableMail(Exception):
    """The bytes are not a message the desk can act on (the reason says why)."""


def message_ids(value: str | None) -> tuple[str, ...]:
    """The Message-IDs in a header value, without angle brackets."""
    if not value:
        return ()
    value = CONTROL.sub("", value)
    found = _MSGID.findall(value)
    if not found and value.strip() and " " not in value.strip():
        found = [value.strip().strip("<>")]
    return tuple(found)


def one_line(value: str, limit: int = MAX_HEADER_CHARS) -> str:
    """A header value folded to one line: CR, LF and runs of whitespace become one space,
    control characters go, and at most `limit` characters are kept."""
    return _WHITESPACE.sub(" ", CONTROL.sub("", value)).strip()[:limit]
