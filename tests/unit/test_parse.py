import pytest

from gateway.mail.classify import ignore_reason
from gateway.mail.html import html_to_text
from gateway.mail.parse import UnparseableMail, message_ids, parse_mail
from tests.support.mails import make_mail

DESK = {"servicedesk@vtm.example", "noc@vtm.example"}


def test_parse_reads_addresses_threading_and_text() -> None:
    raw = make_mail(
        sender="=?utf-8?q?J=C3=B6rg_Bakker?= <Jorg@Klant.Example>",
        to="noc@vtm.example, collega@klant.example",
        cc="Piet <piet@klant.example>",
        subject="RE: AW: [VTM-2026-000042] Storing",
        message_id="abc@klant.example",
        in_reply_to="VTM-2026-000042.x@vtm.example",
        references="<root@klant.example> <VTM-2026-000042.x@vtm.example>",
        body="Nog steeds kapot.\n",
    )
    mail = parse_mail(raw)
    assert mail.sender == "jorg@klant.example"
    assert mail.sender_name == "Jörg Bakker"
    assert mail.to == ("noc@vtm.example", "collega@klant.example")
    assert mail.cc == ("piet@klant.example",)
    assert mail.message_id == "abc@klant.example"
    assert mail.thread_ids == ("VTM-2026-000042.x@vtm.example", "root@klant.example")
    assert mail.text == "Nog steeds kapot."


def test_html_only_mail_becomes_text_with_links() -> None:
    html = '<p>Zie <a href="https://status.klant.example/x">de status</a>.</p><p>Groet</p>'
    assert html_to_text(html) == "Zie de status (https://status.klant.example/x).\n\nGroet"


def test_subject_with_encoded_newline_is_folded_to_one_line() -> None:
    raw = (
        b"From: a@klant.example\r\nTo: noc@vtm.example\r\n"
        b"Subject: =?utf-8?q?Hallo=0D=0ABcc:_evil@x.example?=\r\n\r\nbody\r\n"
    )
    assert parse_mail(raw).subject == "Hallo Bcc: evil@x.example"


@pytest.mark.parametrize(
    "raw",
    [b"", b"   \r\n", b"Subject: no sender\r\n\r\nbody\r\n", b"\x00\xff\xfe garbage"],
)
def test_messages_without_a_sender_are_unparseable(raw: bytes) -> None:
    with pytest.raises(UnparseableMail):
        parse_mail(raw)


def test_message_ids_are_read_without_brackets() -> None:
    assert message_ids("<a@b> <c@d>") == ("a@b", "c@d")
    assert message_ids("bare@id") == ("bare@id",)
    assert message_ids(None) == ()


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({"Auto-Submitted": "auto-replied"}, "auto_submitted"),
        ({"Precedence": "bulk"}, "bulk_precedence"),
        ({"X-Autoreply": "yes"}, "auto_reply_header"),
        ({"X-Ticket-Gateway-Loop": "servicedesk@vtm.example"}, "own_loop"),
        ({"Return-Path": "<>"}, "empty_return_path"),
    ],
)
def test_auto_replies_and_our_own_mail_are_ignored(headers: dict[str, str], reason: str) -> None:
    mail = parse_mail(make_mail(headers=headers))
    assert ignore_reason(mail, DESK, "servicedesk@vtm.example") == reason


def test_mail_from_a_desk_address_and_bounces_are_ignored() -> None:
    own = parse_mail(make_mail(sender="noc@vtm.example"))
    assert ignore_reason(own, DESK, "servicedesk@vtm.example") == "from_desk_address"
    bounce = parse_mail(make_mail(sender="MAILER-DAEMON@mx.klant.example"))
    assert ignore_reason(bounce, DESK, "servicedesk@vtm.example") == "bounce"


def test_ordinary_mail_and_auto_submitted_no_are_not_ignored() -> None:
    mail = parse_mail(make_mail(headers={"Auto-Submitted": "no"}))
    assert ignore_reason(mail, DESK, "servicedesk@vtm.example") is None


def test_eight_bit_bytes_in_headers_are_decoded_not_fatal() -> None:
    raw = make_mail(message_id="m8@klant.example").replace(
        b"Message-ID: <m8", b"Message-ID:\x80<m8"
    )
    raw = raw.replace(b"Subject: Storing", b"Subject: Caf\xc3\xa9 \xe9 Storing")
    mail = parse_mail(raw)
    assert mail.message_id == "m8@klant.example"
    assert mail.subject.startswith("Caf")
    assert "Storing" in mail.subject


def test_second_subject_header_is_ignored_not_fatal() -> None:
    raw = make_mail(subject="Tweede").replace(b"Subject:", b"Subject: Eerste\r\nSubject:", 1)
    assert parse_mail(raw).subject == "Eerste"


def test_control_characters_are_dropped_from_subject_and_text() -> None:
    mail = parse_mail(make_mail(subject="Sto\x00ring\x07", body="regel\x00 een\n"))
    assert (mail.subject, mail.text) == ("Storing", "regel een")


def test_overlong_values_are_bounded_to_what_the_store_keeps() -> None:
    mail = parse_mail(make_mail(subject="x" * 1200, message_id="m" * 1000 + "@klant.example"))
    assert len(mail.subject) == 998
    assert mail.message_id is None  # not usable as a key; the content hash still dedupes


def test_sender_address_beyond_the_smtp_limit_is_unparseable() -> None:
    with pytest.raises(UnparseableMail, match="longer than 254"):
        parse_mail(make_mail(sender="a" * 300 + "@klant.example"))
