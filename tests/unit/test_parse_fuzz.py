"""Hostile input: mutated and truncated mail never breaks the parser in an unexpected way."""

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mail.parse import ParsedMail, parse_mail
from gateway.mail.text import UnparseableMail
from tests.support.mails import make_mail
from tests.support.mutations import mutated_mail

DATA = Path(__file__).resolve().parent.parent / "data"
FIXTURES = [
    DATA / "attachments" / "forwarded_message_rfc822.eml",
    DATA / "attachments" / "inline_image_related.eml",
    DATA / "attachments" / "broken_base64.eml",
    DATA / "attachments" / "pdf_rfc2231_dutch_filename.eml",
    DATA / "replies" / "outlook_html_nl.eml",
    DATA / "replies" / "gmail_html_nl.eml",
    DATA / "charsets" / "iso_2022_jp.eml",
    DATA / "charsets" / "rfc2047_subject_and_name.eml",
    DATA / "charsets" / "raw_8bit_latin1_headers.eml",
]
SAMPLES = [
    make_mail(),
    make_mail(html="<p>Zie <a href='https://x.example'>dit</a></p>", cc="a@b.example"),
    make_mail(sender="=?utf-8?b?SsO2cmc=?= <j@k.example>", subject="=?iso-8859-1?q?caf=E9?="),
    *(path.read_bytes() for path in FIXTURES),
]
ADDRESS_CHARS = st.sampled_from(
    [*'ab@.<>"(),;:\\ \t=?', "\r\n ", "=?utf-8?q?x=2C?=", "é", "\x00", "@[1.2.3.4]"]
)


def assert_sane(mail: ParsedMail) -> None:
    assert "\n" not in mail.subject and "\r" not in mail.subject
    assert "@" in mail.sender and mail.sender == mail.sender.strip()
    assert "\n" not in mail.sender_name
    assert mail.new_text or not mail.text
    for attachment in mail.attachments:
        assert attachment.filename and "/" not in attachment.filename
        assert "\\" not in attachment.filename and len(attachment.filename) <= 255
        assert attachment.disposition in ("attachment", "inline")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_mail(SAMPLES, most=8))
def test_mutated_mail_parses_or_is_refused_as_unparseable(raw: bytes) -> None:
    try:
        mail = parse_mail(raw)
    except UnparseableMail:
        return
    assert_sane(mail)


@settings(max_examples=300, deadline=None)
@given(st.lists(ADDRESS_CHARS, max_size=30).map("".join), st.lists(ADDRESS_CHARS, max_size=30))
def test_any_address_header_gives_a_valid_sender_or_unparseable(sender: str, to: list[str]) -> None:
    raw = f"From: {sender}\r\nTo: {''.join(to)}\r\nSubject: x\r\n\r\nbody\r\n"
    try:
        mail = parse_mail(raw.encode("utf-8", "surrogateescape"))
    except UnparseableMail:
        return
    assert_sane(mail)
    assert all("@" in address for address in mail.to)
