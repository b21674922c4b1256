import pytest

from gateway.mail.classify import classify
from gateway.mail.html import html_to_text
from gateway.mail.parse import ParsedMail, parse_mail
from gateway.mail.text import UnparseableMail, message_ids
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


def reason_of(mail: ParsedMail) -> str | None:
    return classify(mail, desk_addresses=DESK, loop_token="servicedesk@vtm.example").reason


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
    assert reason_of(mail) == reason


def test_mail_from_a_desk_address_and_bounces_are_ignored() -> None:
    own = parse_mail(make_mail(sender="noc@vtm.example"))
    assert reason_of(own) == "from_desk_address"
    bounce = parse_mail(make_mail(sender="MAILER-DAEMON@mx.klant.example"))
    assert reason_of(bounce) == "bounce"


def test_ordinary_mail_and_auto_submitted_no_are_not_ignored() -> None:
    mail = parse_mail(make_mail(headers={"Auto-Submitted": "no"}))
    assert reason_of(mail) is None


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


def with_headers(*lines: str) -> bytes:
    """A minimal message with exactly these header lines (From included or not)."""
    return ("\r\n".join(lines) + "\r\nSubject: Storing\r\n\r\nbody\r\n").encode()


@pytest.mark.parametrize(
    ("sender", "problem"),
    [
        ("foo@", "'foo@': missing domain"),
        ('"a"@b@c', "more than one @"),
        ("a@b@c.example", "more than one @"),
        ("<script>@x", "misplaced angle brackets"),
        ("Jan <jan@klant.example", "unbalanced angle brackets"),
        ("Jan <jan@klant.example> en meer", "misplaced angle brackets"),
        ("<>", "empty address"),
        ("jan@klant.example (Jan", "unbalanced parentheses"),
        ("jan de vries@klant.example", "spaces in the address"),
        ("@klant.example", "missing local part"),
        ("jan", "missing @ and domain"),
        ("jan@-klant.example", "invalid domain '-klant.example'"),
        ("jan@klant..example", "invalid domain 'klant..example'"),
        ("Jan <jan@klant.example>, foo@", "'foo@': missing domain"),
    ],
)
def test_invalid_sender_address_is_unparseable_naming_the_problem(
    sender: str, problem: str
) -> None:
    with pytest.raises(UnparseableMail, match="invalid sender address") as refused:
        parse_mail(with_headers(f"From: {sender}"))
    assert problem in str(refused.value)


@pytest.mark.parametrize(
    ("sender", "address", "name"),
    [
        ('"evil@x.example" <a@b.example>', "a@b.example", "evil@x.example"),
        ("evil@x.example, Jan <a@b.example>", "a@b.example", "evil@x.example, Jan"),
        ("Bakker, Jan <jan@klant.example>", "jan@klant.example", "Bakker, Jan"),
        ("=?utf-8?q?evil@x.example=2C?= <a@b.example>", "a@b.example", "evil@x.example,"),
        ("jan@klant.example <jan@klant.example>", "jan@klant.example", "jan@klant.example"),
        ('"Vries, Jan de" <Jan@Klant.Example>', "jan@klant.example", "Vries, Jan de"),
        ("jan@klant.example (Jan de Vries)", "jan@klant.example", "Jan de Vries"),
        ('"jan de vries"@klant.example', '"jan de vries"@klant.example', ""),
        ("Jan <jan@[192.0.2.1]>", "jan@[192.0.2.1]", "Jan"),
    ],
)
def test_the_address_in_angle_brackets_is_the_sender_whatever_the_name_says(
    sender: str, address: str, name: str
) -> None:
    mail = parse_mail(with_headers(f"From: {sender}"))
    assert (mail.sender, mail.sender_name) == (address, name)


def test_raw_utf8_sender_address_is_accepted() -> None:
    mail = parse_mail(with_headers("From: Jörg <jörg@bäcker.example>"))  # UTF-8 bytes
    assert (mail.sender, mail.sender_name) == ("jörg@bäcker.example", "Jörg")


def test_from_with_two_addresses_and_no_sender_is_unparseable() -> None:
    with pytest.raises(UnparseableMail, match="From holds 2 addresses and no Sender"):
        parse_mail(with_headers("From: a@klant.example, b@klant.example"))


def test_from_with_two_addresses_is_sent_by_the_sender_header() -> None:
    raw = with_headers(
        "From: a@klant.example, b@klant.example", "Sender: Secretariaat <sec@klant.example>"
    )
    assert parse_mail(raw).sender == "sec@klant.example"


def test_empty_from_falls_back_to_the_sender_header() -> None:
    raw = with_headers("From: ", "Sender: Secretariaat <sec@klant.example>")
    mail = parse_mail(raw)
    assert (mail.sender, mail.sender_name) == ("sec@klant.example", "Secretariaat")


def test_invalid_sender_header_is_unparseable_when_it_is_needed() -> None:
    with pytest.raises(UnparseableMail, match="invalid sender address 'sec@'"):
        parse_mail(with_headers("Sender: sec@"))


def test_group_syntax_without_members_is_no_sender() -> None:
    with pytest.raises(UnparseableMail, match="no sender address"):
        parse_mail(with_headers("From: undisclosed-recipients:;"))


def test_invalid_recipients_are_dropped_and_the_valid_ones_kept() -> None:
    raw = with_headers(
        "From: jan@klant.example",
        "To: foo@, Jan <Jan@Klant.example>, <script>@x, a@b@c, noc@vtm.example",
        "Cc: team: piet@klant.example, kees@;, undisclosed-recipients:;",
    )
    mail = parse_mail(raw)
    assert mail.to == ("jan@klant.example", "noc@vtm.example")
    assert mail.cc == ("piet@klant.example",)


def test_recipients_with_quoted_commas_and_encoded_names_are_read_whole() -> None:
    raw = with_headers(
        "From: jan@klant.example",
        'To: "Vries, Jan de" <jan@klant.example>, =?utf-8?q?Zo=C3=AB?= <zoe@klant.example>',
        "To: second@klant.example",
    )
    assert parse_mail(raw).to == ("jan@klant.example", "zoe@klant.example", "second@klant.example")


def test_delivered_to_and_x_original_to_are_read_as_addresses() -> None:
    raw = with_headers(
        "From: jan@klant.example",
        "Delivered-To: noc@vtm.example",
        "X-Original-To: <NOC@vtm.example>",
    )
    assert parse_mail(raw).delivered_to == ("noc@vtm.example",)


def test_display_name_with_a_company_in_parentheses_is_kept_whole() -> None:
    mail = parse_mail(with_headers("From: Jan de Vries (Klant BV) <jan@klant.example>"))
    assert (mail.sender, mail.sender_name) == ("jan@klant.example", "Jan de Vries (Klant BV)")


def test_overlong_unusual_sender_is_unparseable_without_reading_it_all() -> None:
    with pytest.raises(UnparseableMail, match="longer than 400 characters"):
        parse_mail(with_headers("From: " + '"' * 20_000))


def test_a_flood_of_unusual_recipients_is_read_only_in_part() -> None:
    odd = ", ".join(f"u{i}@klant.example (u{i})" for i in range(200))
    mail = parse_mail(with_headers("From: jan@klant.example", f"To: {odd}"))
    assert 0 < len(mail.to) < 200
    assert mail.to[0] == "u0@klant.example"


def test_authentication_results_come_from_the_topmost_hop_only() -> None:
    raw = (
        b"Authentication-Results: mx.vtm.example; spf=pass smtp.mailfrom=klant.example\r\n"
        b"Authentication-Results: mx.vtm.example; dkim=pass header.d=klant.example\r\n"
        b"Received: from mail.klant.example by mx.vtm.example; Mon, 2 Mar 2026 09:00 +0100\r\n"
        b"Authentication-Results: mx.vtm.example; dmarc=pass header.from=bank.example\r\n"
        b"From: jan@klant.example\r\nSubject: x\r\n\r\nbody\r\n"
    )
    results = parse_mail(raw).authentication_results
    assert [r.split(";")[1].split("=")[0].strip() for r in results] == ["spf", "dkim"]
