"""Bounces of our notifications: tied to the notification and ticket, never a ticket."""

from __future__ import annotations

from tests.conftest import GatewayFactory
from tests.integration.helpers import counts, detail, outbox_rows
from tests.support.mails import make_mail

REF = "VTM-2026-000001"


def dsn(original_message_id: str, recipient: str, status: str = "5.1.1") -> bytes:
    """A Postfix-style RFC 3464 report about one of our messages."""
    action = "failed" if status.startswith("5") else "delayed"
    return (
        "From: MAILER-DAEMON@mx.klant.example (Mail Delivery System)\r\n"
        "To: servicedesk@vtm.example\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-" + status + "@mx.klant.example>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n"
        "--B\r\n"
        "Content-Type: text/plain\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n"
        "--B\r\n"
        "Content-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.klant.example\r\n"
        "\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\n"
        f"Action: {action}\r\n"
        f"Status: {status}\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n"
        "--B\r\n"
        "Content-Type: text/rfc822-headers\r\n\r\n"
        "From: VTM Servicedesk <servicedesk@vtm.example>\r\n"
        f"To: {recipient}\r\n"
        f"Message-ID: <{original_message_id}>\r\n"
        "--B--\r\n"
    ).encode()


async def test_a_bounce_marks_the_notification_and_the_recipient_on_the_ticket(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "test")
    (notice,) = await outbox_rows(gateway)
    outcome = await gateway.pipeline.ingest(dsn(notice.message_id, "jan@klant.example"), "test")
    assert (outcome.kind, outcome.reason, outcome.reference) == ("ignored", "bounce", REF)
    assert (await counts(gateway))["tickets"] == 1
    ticket = await detail(gateway, REF)
    (bounce,) = ticket["bounces"]
    assert bounce["recipient"] == "jan@klant.example"
    assert (bounce["status"], bounce["permanent"], bounce["notification_id"]) == (
        "5.1.1",
        True,
        notice.id,
    )
    assert ticket["bouncing"] == ["jan@klant.example"]
    assert ticket["history"][-1]["field"] == "bounce"
    (row,) = await outbox_rows(gateway)
    assert row.last_error is not None and row.last_error.startswith("bounced:")


async def test_a_delay_warning_is_recorded_but_does_not_mark_the_recipient(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "test")
    (notice,) = await outbox_rows(gateway)
    await gateway.pipeline.ingest(dsn(notice.message_id, "jan@klant.example", "4.4.1"), "test")
    ticket = await detail(gateway, REF)
    assert [b["action"] for b in ticket["bounces"]] == ["delayed"]
    assert ticket["bouncing"] == []


async def test_mail_from_the_recipient_after_a_bounce_clears_the_mark(
    make_gateway: GatewayFactory, clock: object
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "test")
    (notice,) = await outbox_rows(gateway)
    await gateway.pipeline.ingest(dsn(notice.message_id, "jan@klant.example"), "test")
    clock.advance(minutes=5)  # type: ignore[attr-defined]
    await gateway.pipeline.ingest(make_mail(subject=f"Re: [{REF}] weer bereikbaar"), "test")
    assert (await detail(gateway, REF))["bouncing"] == []


async def test_a_bounce_about_mail_we_never_sent_opens_nothing(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    outcome = await gateway.pipeline.ingest(dsn("unknown@elsewhere.example", "x@y.example"), "t")
    assert (outcome.kind, outcome.reason, outcome.reference) == ("ignored", "bounce", None)
    assert (await counts(gateway))["tickets"] == 0
