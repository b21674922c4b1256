"""Attachments of incoming mail: the parts that are not the text of the message.

`mail_attachment` turns one MIME part (as `email.message_from_bytes` gives it) into a
`MailAttachment`: its content decoded once from the transfer encoding, a file name safe
to show and to save (no path, no control or direction characters, at most 255
characters; made up from the type when the sender gave none), the type, the disposition
and the Content-ID of inline images. A forwarded mail (message/rfc822) is one attachment
holding the embedded message as bytes.

`part_payload` is the decoding the parser uses for text parts too. Broken base64 keeps
what decodes; nothing here raises on bad input. Pure: no I/O (no `mimetypes`, which
reads system files).
"""

from __future__ import annotations

import binascii
import io
import re
import unicodedata
from dataclasses import dataclass, field
from email import policy
from email.generator import BytesGenerator
from email.message import Message

MAX_FILENAME_CHARS = 255
MESSAGE_TYPES = frozenset({"message/rfc822", "message/global"})

# Extensions for made-up names; anything else gets ".bin".
_EXTENSIONS = {
    "application/pdf": ".pdf",
    "application/zip": ".zip",
    "application/gzip": ".gz",
    "application/json": ".json",
    "application/xml": ".xml",
    "application/msword": ".doc",
    "application/vnd.ms-excel": ".xls",
    "application/vnd.ms-outlook": ".msg",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
    "application/ms-tnef": ".dat",
    "application/vnd.ms-tnef": ".dat",
    "application/pkcs7-signature": ".p7s",
    "application/x-pkcs7-signature": ".p7s",
    "application/pgp-signature": ".asc",
    "application/ics": ".ics",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/bmp": ".bmp",
    "image/tiff": ".tif",
    "image/svg+xml": ".svg",
    "audio/mpeg": ".mp3",
    "video/mp4": ".mp4",
    "text/plain": ".txt",
    "text/html": ".html",
    "text/csv": ".csv",
    "text/calendar": ".ics",
    "text/xml": ".xml",
    "text/rfc822-headers": ".txt",
    "message/rfc822": ".eml",
    "message/global": ".eml",
    "message/delivery-status": ".txt",
    "message/disposition-notification": ".txt",
}

_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/=]+")
_PATH_SEPARATORS = re.compile(r"[/\\]")
# C0/C1 controls and the characters that reorder or hide text ("fdp.exe" shown as
# "exe.pdf"): they have no place in a file name.
_UNSAFE_CHARS = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
_WHITESPACE = re.compile(r"\s+")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}\Z")
# Written back with CRLF and without refolding: as close to the original as the
# parsed tree allows.
_EMBEDDED_POLICY = policy.compat32.clone(linesep="\r\n", max_line_length=0)


@dataclass(frozen=True)
class MailAttachment:
    """One attachment, decoded; the caller decides whether and where to keep it."""

    filename: str  # decoded and made safe; made up from the type when missing
    content_type: str  # lower-case type/subtype
    data: bytes = field(repr=False)  # the decoded content; for a forwarded mail, the mail
    disposition: str  # "attachment" | "inline"
    content_id: str | None  # without <>, for inline images
    is_message: bool  # a forwarded mail (message/rfc822) kept as such

    @property
    def size(self) -> int:
        return len(self.data)


def decode_base64(data: bytes) -> bytes:
    """Base64 decoded leniently: junk characters skipped, what decodes kept."""
    end = data.find(b"=")
    if end == -1 or not data[end:].strip(b"=\r\n\t "):  # padding, if any, only at the end
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            pass
    decoded = []
    # Each run between padding is a base64 text of its own (concatenated encoders).
    for chunk in _NOT_BASE64.sub(b"", data).split(b"="):
        usable = len(chunk) - (1 if len(chunk) % 4 == 1 else 0)  # one char is no byte
        chunk = chunk[:usable] + b"=" * (-usable % 4)
        if chunk:
            decoded.append(binascii.a2b_base64(chunk))
    return b"".join(decoded)


def transfer_encoding(part: Message) -> str:
    """The Content-Transfer-Encoding, lower-case and trimmed ("" when absent)."""
    return str(part.get("content-transfer-encoding", "")).strip().lower()


def _embedded_bytes(part: Message) -> bytes:
    """A message/* part's content as bytes: the email package parsed it into messages,
    which are written back."""
    out = io.BytesIO()
    generator = BytesGenerator(out, mangle_from_=False, policy=_EMBEDDED_POLICY)
    for embedded in part.get_payload():
        if not isinstance(embedded, Message):
            continue
        try:
            generator.flatten(embedded)
        except Exception:  # a tree the generator cannot write: keep what it wrote
            break
    data = out.getvalue()
    encoding = transfer_encoding(part)  # not allowed on message/*, yet some clients do
    if encoding == "base64":
        return decode_base64(data)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    return data


def part_payload(part: Message) -> bytes:
    """The content of a part, decoded from its transfer encoding; never raises."""
    if part.is_multipart():
        return _embedded_bytes(part)
    encoding = transfer_encoding(part)
    try:
        if encoding == "base64":
            text = part.get_payload()
            return decode_base64(text.encode("ascii", "ignore") if isinstance(text, str) else b"")
        data = part.get_payload(decode=True)
    except Exception:  # uuencode and other oddities the email package gives up on
        return b""
    if not isinstance(data, bytes):
        return b""
    if encoding == "quoted-printable" and str(part.get("content-transfer-encoding")) != encoding:
        data = binascii.a2b_qp(data)  # " quoted-printable ": the email package left it
    return data


def safe_filename(name: str | None, content_type: str, number: int) -> str:
    """A file name without path parts, control characters or leading dots, at most 255
    characters with its extension kept; `attachment-N.ext` when nothing is left."""
    name = unicodedata.normalize("NFC", _UNSAFE_CHARS.sub("", name or ""))
    name = _PATH_SEPARATORS.split(name)[-1]
    name = _WHITESPACE.sub(" ", name).strip(" .")
    if not name:
        return f"attachment-{number}{_EXTENSIONS.get(content_type, '.bin')}"
    if len(name) > MAX_FILENAME_CHARS:
        extension = _EXTENSION.search(name)
        suffix = extension[0] if extension else ""
        name = name[: MAX_FILENAME_CHARS - len(suffix)].rstrip(" .") + suffix
    return name


def _content_id(part: Message) -> str | None:
    value = part.get("content-id")
    if value is None:
        return None
    cid = _UNSAFE_CHARS.sub("", _WHITESPACE.sub(" ", str(value))).strip().strip("<>").strip()
    return cid[:MAX_FILENAME_CHARS] or None


def mail_attachment(part: Message, *, number: int, name: str | None) -> MailAttachment:
    """The attachment a part holds; `name` is its decoded file name (or None) and
    `number` its place among the attachments, for a made-up name."""
    content_type = part.get_content_type()
    content_id = _content_id(part)
    disposition = part.get_content_disposition()
    inline = disposition == "inline" or (disposition is None and content_id is not None)
    return MailAttachment(
        filename=safe_filename(name, content_type, number),
        content_type=content_type,
        data=part_payload(part),
        disposition="inline" if inline else "attachment",
        content_id=content_id,
        is_message=content_type in MESSAGE_TYPES,
    )
