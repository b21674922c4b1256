from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default

from gateway.mail.compose import OutgoingMail, build_message


def outgoing(**extra: object) -> OutgoingMail:
    values: dict[str, object] = {
        "sender": "servicedesk@vtm.example",
        "sender_name": "VTM Servicedesk",
        "to": "jan@klant.example",
        "reply_to": "noc@vtm.example",
        "subject": "[VTM-2026-000042] Uw melding is ontvangen: Storing",
        "text": "Tekst\n",
        "html": "<p>Tekst</p>",
        "message_id": "VTM-2026-000042.abc@vtm.example",
        "date": datetime(2026, 3, 2, 9, 0, tzinfo=UTC),
        "loop_token": "servicedesk@vtm.example",
        "in_reply_to": "m1@klant.example",
        "references": ("root@klant.example", "m1@klant.example"),
    }
    values.update(extra)
    return OutgoingMail(**values)  # type: ignore[arg-type]


def test_notification_carries_threading_loop_and_auto_submitted_headers() -> None:
    msg = message_from_bytes(build_message(outgoing()), policy=default)
    assert msg["Message-ID"] == "<VTM-2026-000042.abc@vtm.example>"
    assert msg["In-Reply-To"] == "<m1@klant.example>"
    assert msg["References"] == "<root@klant.example> <m1@klant.example>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["X-Ticket-Gateway-Loop"] == "servicedesk@vtm.example"
    assert msg["Reply-To"].addresses[0].addr_spec == "noc@vtm.example"
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_subject_from_mail_cannot_inject_headers() -> None:
    raw = build_message(outgoing(subject="Hallo\r\nBcc: evil@x.example"))
    msg = message_from_bytes(raw, policy=default)
    assert msg["Bcc"] is None
    assert msg["Subject"] == "Hallo Bcc: evil@x.example"


def test_non_ascii_subject_and_names_are_encoded_words_and_decode_back() -> None:
    raw = build_message(
        outgoing(
            subject="[VTM-2026-000042] Één storing in Zoetermeer", sender_name="VTM Servicedésk"
        )
    )
    assert raw.isascii()
    msg = message_from_bytes(raw, policy=default)
    assert msg["Subject"] == "[VTM-2026-000042] Één storing in Zoetermeer"
    assert msg["From"].addresses[0].display_name == "VTM Servicedésk"
    assert b"\r\n" in raw and b"\n\n" not in raw.replace(b"\r\n", b"")


def test_text_only_notification_is_a_single_part() -> None:
    msg = message_from_bytes(build_message(outgoing(html="")), policy=default)
    assert msg.get_content_type() == "text/plain"
    assert msg.get_content().replace("\r\n", "\n") == "Tekst\n"
