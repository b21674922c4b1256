"""Delivery status notifications: the samples in tests/data/bounces/, and hostile input."""

from __future__ import annotations

import base64
import email
import json
import re
import time
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.mail.bounce import Bounce, FailedRecipient, parse_bounce
from tests.support.mutations import mutated_mail

BOUNCES = Path(__file__).resolve().parent.parent / "data" / "bounces"
CASES = sorted(p.stem for p in BOUNCES.glob("*.eml"))
REQUIRED = {
    "format",
    "recipients",
    "original_message_id",
    "envelope_id",
    "permanent",
    "delayed_only",
}
FORMATS = {"rfc3464", "exchange", "postfix", "exim", "gmail", "qmail", "heuristic"}
ACTIONS = {"failed", "delayed", "delivered", "relayed", "expanded"}
STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _raw(name: str) -> bytes:
    return (BOUNCES / f"{name}.eml").read_bytes()


def _message(name: str) -> Message:
    return email.message_from_bytes(_raw(name))


def _expected(name: str) -> dict[str, Any] | None:
    data = json.loads((BOUNCES / f"{name}.expected.json").read_text(encoding="utf-8"))
    return None if data is None or data.get("bounce") is False else data


def _actual(bounce: Bounce, expected: dict[str, Any]) -> dict[str, Any]:
    """The bounce's values under the keys the expected values use."""
    keys = {key for recipient in expected["recipients"] for key in recipient}
    recipients = [{key: getattr(r, key) for key in keys} for r in bounce.recipients]
    values = {
        "bounce": True,
        "format": bounce.format,
        "recipients": recipients,
        "original_message_id": bounce.original_message_id,
        "original_ids": list(bounce.original_ids),
        "envelope_id": bounce.envelope_id,
        "reporting_mta": bounce.reporting_mta,
        "permanent": bounce.permanent,
        "delayed_only": bounce.delayed_only,
    }
    return {key: values[key] for key in expected}


def _without_delivery_status(message: Message) -> Message:
    """The message with its machine-readable report parts taken out."""
    parts = message.get_payload()
    assert isinstance(parts, list)
    kept = [p for p in parts if not isinstance(p, Message) or not _is_delivery_status(p)]
    message.set_payload(kept)
    return message


def _is_delivery_status(part: Message) -> bool:
    return part.get_content_type() == "message/delivery-status"


def _assert_well_formed(bounce: Bounce) -> None:
    assert bounce.format in FORMATS
    for recipient in bounce.recipients:
        assert recipient.address == recipient.address.lower()
        assert "@" in recipient.address and len(recipient.address) <= 254
        assert recipient.status is None or STATUS.fullmatch(recipient.status)
        assert recipient.action in ACTIONS
        assert len(recipient.diagnostic) <= 500
        assert not CONTROL.search(recipient.diagnostic)
    ids = bounce.original_ids
    assert len(set(ids)) == len(ids)
    assert all(i and not re.search(r"[<>\s]", i) and not CONTROL.search(i) for i in ids)
    assert bounce.original_message_id == (ids[0] if ids else None)
    for value in (bounce.envelope_id, bounce.reporting_mta):
        assert value is None or not CONTROL.search(value)


# --- the samples ---------------------------------------------------------------------


def test_every_sample_has_its_expected_values() -> None:
    for name in CASES:
        expected = _expected(name)
        assert expected is None or expected.keys() >= REQUIRED, name


@pytest.mark.parametrize("name", CASES)
def test_sample_is_read_as_expected(name: str) -> None:
    expected = _expected(name)
    bounce = parse_bounce(_message(name))
    if expected is None:
        assert bounce is None
        return
    assert bounce is not None
    assert _actual(bounce, expected) == expected
    _assert_well_formed(bounce)


def test_the_samples_cover_every_format_and_the_mail_that_is_no_bounce() -> None:
    expected = [_expected(name) for name in CASES]
    assert len(CASES) >= 12
    assert FORMATS - {"heuristic"} <= {e["format"] for e in expected if e is not None}
    assert sum(e is None for e in expected) >= 3


# --- what the values mean ------------------------------------------------------------


def test_delayed_warning_is_delayed_only_and_not_permanent() -> None:
    bounce = parse_bounce(_message("postfix_delayed_warning"))
    assert bounce is not None
    assert bounce.delayed_only
    assert not bounce.permanent
    assert [r.permanent for r in bounce.recipients] == [False]


def test_one_failed_and_one_delayed_recipient_is_permanent_but_not_delayed_only() -> None:
    bounce = parse_bounce(_message("dsn_failed_and_delayed"))
    assert bounce is not None
    assert [(r.action, r.permanent) for r in bounce.recipients] == [
        ("failed", True),
        ("delayed", False),
    ]
    assert bounce.permanent
    assert not bounce.delayed_only


@pytest.mark.parametrize(
    ("action", "status", "permanent"),
    [
        ("failed", "5.1.1", True),
        ("failed", None, True),
        ("failed", "4.4.7", False),
        ("delayed", "4.4.1", False),
        ("delayed", "5.1.1", False),
        ("delivered", "2.0.0", False),
    ],
)
def test_recipient_is_permanent_only_when_failed_with_class_5_or_no_status(
    action: str, status: str | None, permanent: bool
) -> None:
    assert FailedRecipient("a@b.example", status, action, "").permanent is permanent


def test_report_without_recipients_is_neither_permanent_nor_delayed_only() -> None:
    bounce = Bounce("rfc3464", (), None, (), None, None)
    assert not bounce.permanent
    assert not bounce.delayed_only


# --- where the values come from ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "format_"),
    [
        ("postfix_hard_bounce", "postfix"),
        ("exchange_o365_en", "exchange"),
        ("gmail_address_not_found", "gmail"),
        ("sendmail_rfc822_headers", "heuristic"),  # Sendmail is known by its DSN only
    ],
)
def test_report_text_alone_names_the_recipients_its_delivery_status_names(
    name: str, format_: str
) -> None:
    full = parse_bounce(_message(name))
    text_only = parse_bounce(_without_delivery_status(_message(name)))
    assert full is not None and text_only is not None
    assert text_only.format == format_
    assert [(r.address, r.status, r.action) for r in text_only.recipients] == [
        (r.address, r.status, r.action) for r in full.recipients
    ]
    assert text_only.original_message_id == full.original_message_id


def test_original_ids_are_the_original_then_in_reply_to_then_references_nearest_first() -> None:
    message = _message("sendmail_rfc822_headers")
    message["In-Reply-To"] = "<parent@vtm.example>"
    message["References"] = "<root@klant.example> <middle@vtm.example> <parent@vtm.example>"
    bounce = parse_bounce(message)
    assert bounce is not None
    assert bounce.original_ids == (
        "VTM-2026-000110.1a2b3c4d5e6f7081.92a3b4c5d6e7f8091a2b@vtm.example",
        "parent@vtm.example",
        "middle@vtm.example",
        "root@klant.example",
    )


def test_without_a_copy_of_the_original_its_id_comes_from_in_reply_to() -> None:
    message = _message("truncated_report")
    message["In-Reply-To"] = "<VTM-2026-000125.4e5f60718293a4b5.c6d7e8f9a0b1c2d3e4f5@vtm.example>"
    bounce = parse_bounce(message)
    assert bounce is not None
    assert bounce.original_message_id == (
        "VTM-2026-000125.4e5f60718293a4b5.c6d7e8f9a0b1c2d3e4f5@vtm.example"
    )


def test_unknown_mail_system_from_mailer_daemon_is_read_by_the_heuristic() -> None:
    raw = (
        b"From: MAILER-DAEMON <>\n"
        b"To: servicedesk@vtm.example\n"
        b"Subject: Mail delivery failed\n\n"
        b"This is the DragonFly Mail Agent v0.13 at mail.klant.example.\n\n"
        b"There was an error delivering your mail to <jan@klant.example>.\n\n"
        b"mx.klant.example [198.51.100.25] did not like our RCPT TO:\n"
        b"550 5.1.1 <jan@klant.example>: Recipient address rejected\n\n"
        b"Message headers follow.\n\n"
        b"Message-Id: <VTM-2026-000042.3f2a9c1b0d4e5f60.7182a9b3c4d5e6f70812@vtm.example>\n"
        b"From: VTM Servicedesk <servicedesk@vtm.example>\n"
    )
    bounce = parse_bounce(email.message_from_bytes(raw))
    assert bounce is not None
    assert bounce.format == "heuristic"
    assert [(r.address, r.status, r.action) for r in bounce.recipients] == [
        ("jan@klant.example", "5.1.1", "failed")
    ]
    assert bounce.original_message_id == (
        "VTM-2026-000042.3f2a9c1b0d4e5f60.7182a9b3c4d5e6f70812@vtm.example"
    )


def test_postmaster_mail_that_speaks_of_no_failure_is_not_a_bounce() -> None:
    raw = (
        b"From: Postmaster <postmaster@klant.example>\n"
        b"To: servicedesk@vtm.example\n"
        b"Subject: Nieuw adres voor storingen\n\n"
        b"Vanaf 1 april bereikt u onze storingsdienst op\n\n"
        b"storingen@klant.example\n\n"
        b"Met vriendelijke groet\n"
    )
    assert parse_bounce(email.message_from_bytes(raw)) is None


@pytest.mark.parametrize("subject", ["Fwd: Undelivered Mail", "RE: Undelivered Mail", "Doorst: x"])
def test_reply_or_forward_even_from_a_mail_system_is_not_a_bounce(subject: str) -> None:
    message = _message("postfix_hard_bounce")
    message.replace_header("Subject", subject)
    assert parse_bounce(message) is None


# --- hostile input -------------------------------------------------------------------


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_mail([_raw(name) for name in CASES], most=6))
def test_damaged_samples_never_raise_and_give_well_formed_values(raw: bytes) -> None:
    bounce = parse_bounce(email.message_from_bytes(raw))
    if bounce is not None:
        _assert_well_formed(bounce)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2_000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    bounce = parse_bounce(email.message_from_bytes(b"From: MAILER-DAEMON@x.example\n" + raw))
    if bounce is not None:
        _assert_well_formed(bounce)


def test_hostile_charset_on_an_8bit_report_does_not_lose_the_bounce() -> None:
    # Message.get_payload() without decode=True applies the charset; punycode raises
    raw = (
        b"From: MAILER-DAEMON@mail.klant.example\n"
        b"Subject: Undelivered Mail Returned to Sender\n"
        b"Content-Type: text/plain; charset=punycode\n"
        b"Content-Transfer-Encoding: 8bit\n\n"
        b"<jan@klant.example>: host said: 550 5.1.1 unknown \xff\xfe\n"
    )
    bounce = parse_bounce(email.message_from_bytes(raw))
    assert bounce is not None
    assert [(r.address, r.status) for r in bounce.recipients] == [("jan@klant.example", "5.1.1")]


def test_base64_encoded_delivery_status_part_is_read() -> None:
    fields = b"Final-Recipient: rfc822; jan@klant.example\nAction: failed\nStatus: 5.1.1\n"
    raw = (
        b"From: MAILER-DAEMON@mail.klant.example\n"
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=B\n\n"
        b"--B\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n"
        + base64.encodebytes(b"Reporting-MTA: dns; mail.klant.example\n\n" + fields)
        + b"--B--\n"
    )
    bounce = parse_bounce(email.message_from_bytes(raw))
    assert bounce is not None
    assert [(r.address, r.status, r.action) for r in bounce.recipients] == [
        ("jan@klant.example", "5.1.1", "failed")
    ]
    assert bounce.reporting_mta == "mail.klant.example"


def test_message_that_breaks_the_email_api_gives_none() -> None:
    class Broken(Message):
        def get_payload(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("broken part")

    message = Broken()
    message["From"] = "MAILER-DAEMON@mail.klant.example"
    assert parse_bounce(message) is None


def test_huge_hostile_body_is_read_in_bounded_time() -> None:
    local_part_run = b"a" * 1_000_000  # no "@": every start of an address fails late
    lines = b"<jan@klant.example>: 550 5.1.1 x\n" * 20_000
    raw = b"From: MAILER-DAEMON@x.example\nSubject: failure\n\n" + local_part_run + lines
    started = time.perf_counter()
    parse_bounce(email.message_from_bytes(raw))
    assert time.perf_counter() - started < 5
