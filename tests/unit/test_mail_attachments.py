"""Attachments: every part that is not the text, decoded once, with a safe file name
(tests/data/attachments/: NAME.eml + NAME.expected.json with sha256 of the content)."""

import base64
import hashlib
import json
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from gateway.mail.attachments import MailAttachment, decode_base64, safe_filename
from gateway.mail.parse import parse_mail
from tests.support.mails import make_mail

ATTACHMENTS = Path(__file__).resolve().parent.parent / "data" / "attachments"
CASES = sorted(p.stem for p in ATTACHMENTS.glob("*.eml"))


def described(attachment: MailAttachment) -> dict[str, object]:
    return {
        "filename": attachment.filename,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "disposition": attachment.disposition,
        "content_id": attachment.content_id,
        "is_message": attachment.is_message,
        "sha256": hashlib.sha256(attachment.data).hexdigest(),
    }


@pytest.mark.parametrize("name", CASES)
def test_fixture_attachments_are_extracted_with_safe_names(name: str) -> None:
    expected = json.loads((ATTACHMENTS / f"{name}.expected.json").read_text(encoding="utf-8"))
    mail = parse_mail((ATTACHMENTS / f"{name}.eml").read_bytes())
    assert [described(a) for a in mail.attachments] == expected["attachments"]
    assert mail.text == expected["text"]


def test_the_cases_cover_the_attachment_shapes_we_promise() -> None:
    assert len(CASES) >= 8


def test_plain_mail_has_no_attachments() -> None:
    assert parse_mail(make_mail(html="<p>x</p>")).attachments == ()


def test_forwarded_mail_is_one_attachment_and_its_text_is_not_the_body() -> None:
    mail = parse_mail((ATTACHMENTS / "forwarded_message_rfc822.eml").read_bytes())
    (forwarded,) = mail.attachments
    assert "Interface ge-0/0/1" not in mail.text
    inner = parse_mail(forwarded.data)
    assert (inner.subject, inner.sender) == ("Link down LD-00421", "alerts@klant.example")
    assert [a.filename for a in inner.attachments] == ["grafiek.pdf"]


def test_forwarded_mail_without_subject_gets_a_made_up_name() -> None:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "jan@klant.example"
    msg.set_content("Zie doorgestuurd.\n")
    inner = EmailMessage(policy=SMTP)
    inner["From"] = "x@klant.example"
    inner.set_content("zonder onderwerp\n")
    msg.add_attachment(inner)
    (forwarded,) = parse_mail(msg.as_bytes()).attachments
    assert (forwarded.filename, forwarded.is_message) == ("attachment-1.eml", True)


def test_attachment_holding_base64_text_is_decoded_once() -> None:
    text = base64.b64encode(b"dit is al base64").decode()
    msg = EmailMessage(policy=SMTP)
    msg["From"] = "jan@klant.example"
    msg.set_content("Zie bijlage.\n")
    msg.add_attachment(text.encode(), maintype="application", subtype="octet-stream", filename="b")
    (attachment,) = parse_mail(msg.as_bytes()).attachments
    assert attachment.data == text.encode()


def test_named_inline_text_is_shown_as_text_and_kept_as_a_file() -> None:
    raw = (
        b"From: jan@klant.example\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\nContent-Disposition: inline; filename=log.txt\r\n"
        b"\r\nlink down 09:00\r\n--b--\r\n"
    )
    mail = parse_mail(raw)
    assert mail.text == "link down 09:00"
    assert [(a.filename, a.disposition, a.data) for a in mail.attachments] == [
        ("log.txt", "inline", b"link down 09:00")
    ]


def test_html_alternative_and_its_inline_image_are_body_and_attachment() -> None:
    mail = parse_mail((ATTACHMENTS / "inline_image_related.eml").read_bytes())
    (image,) = mail.attachments
    assert (image.disposition, image.content_id) == ("inline", "image001.png@01DCAB12")
    assert mail.text.startswith("Zie de schermafdruk")


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("..\\..\\evil.exe", "evil.exe"),
        ("/etc/passwd", "passwd"),
        ("C:\\Users\\jan\\Desktop\\offerte.pdf", "offerte.pdf"),
        ("rapport\u202efdp.exe", "rapportfdp.exe"),
        ("naam\x00met\ncontrol\x07.txt", "naammetcontrol.txt"),
        ("  .verborgen  ", "verborgen"),
        ("..", "attachment-3.pdf"),
        ("", "attachment-3.pdf"),
        (None, "attachment-3.pdf"),
        ("Zoe\u0308.pdf", "Zoë.pdf"),
    ],
)
def test_file_names_lose_paths_and_control_characters(name: str | None, safe: str) -> None:
    assert safe_filename(name, "application/pdf", 3) == safe


def test_overlong_file_name_is_cut_to_255_characters_keeping_its_extension() -> None:
    name = safe_filename("a" * 400 + ".xlsx", "application/octet-stream", 1)
    assert (len(name), name[-5:]) == (255, ".xlsx")


def test_made_up_names_take_their_extension_from_the_type() -> None:
    assert safe_filename(None, "image/jpeg", 2) == "attachment-2.jpg"
    assert safe_filename(None, "application/x-whatever", 5) == "attachment-5.bin"


@pytest.mark.parametrize(
    ("encoded", "data"),
    [
        (b"aGFsbG8=", b"hallo"),
        (b"aGFs\r\nbG8=\r\n", b"hallo"),
        (b"aGFsbG8", b"hallo"),  # padding missing
        (b"aGF!!sbG8=", b"hallo"),  # junk characters
        (b"aGFsbG8=aGFsbG8=", b"hallohallo"),  # two encodings run together
        (b"aGFsbG8gd", b"hallo "),  # one character short of a byte
        (b"", b""),
        (b"====", b""),
    ],
)
def test_broken_base64_keeps_what_decodes(encoded: bytes, data: bytes) -> None:
    assert decode_base64(encoded) == data


def test_attachment_size_is_the_size_of_its_content() -> None:
    part = MailAttachment("a.bin", "application/octet-stream", b"123", "attachment", None, False)
    assert part.size == 3
    assert "123" not in repr(part)  # content is never dumped into logs by repr
