"""The outbox relay against a real SMTP sink: sent, retried, failed, never doubled."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from gateway.store.models import OutboxMessage
from tests.conftest import GatewayFactory
from tests.integration.helpers import outbox_rows
from tests.support.dovecot import free_port
from tests.support.mails import make_mail
from tests.support.settings import Clock
from tests.support.sink import SmtpSink


async def test_permanent_refusal_fails_at_once_with_the_servers_reply(
    make_gateway: GatewayFactory, sink: SmtpSink
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    sink.reply = "550 5.1.1 No such user"
    stats = await gateway.relay.send_due()
    (row,) = await outbox_rows(gateway)
    assert (stats.failed, row.state, row.attempts) == (1, "failed", 1)
    assert row.last_error is not None and "550" in row.last_error


async def test_temporary_refusal_is_retried_after_backoff_then_sent_once(
    make_gateway: GatewayFactory, sink: SmtpSink, clock: Clock
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    sink.reply = "451 4.3.0 Try again later"
    first = await gateway.relay.send_due()
    (row,) = await outbox_rows(gateway)
    assert (first.retried, row.state, row.attempts) == (1, "pending", 1)
    assert row.next_attempt_at == clock() + timedelta(seconds=30)

    sink.reply = None
    not_yet = await gateway.relay.send_due()
    assert not_yet.sent == 0  # not due before the backoff has passed
    clock.advance(seconds=31)
    later = await gateway.relay.send_due()
    (row,) = await outbox_rows(gateway)
    assert (later.sent, row.state, row.attempts, row.last_error) == (1, "sent", 2, None)
    assert len(sink.messages) == 1
    assert (await gateway.relay.send_due()).sent == 0


async def test_552_mailbox_full_is_temporary(make_gateway: GatewayFactory, sink: SmtpSink) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    sink.reply = "552 5.2.2 Mailbox full"
    await gateway.relay.send_due()
    (row,) = await outbox_rows(gateway)
    assert row.state == "pending"


async def test_unreachable_server_keeps_every_row_pending(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway(sink_port=free_port())
    for i in range(3):
        await gateway.pipeline.ingest(make_mail(subject=f"Melding {i}"), "t")
    stats = await gateway.relay.send_due()
    rows = await outbox_rows(gateway)
    assert stats.retried == 3
    assert {r.state for r in rows} == {"pending"}
    assert all("Connect" in (r.last_error or "") or "refused" in (r.last_error or "") for r in rows)


async def test_rows_fail_when_the_retry_deadline_has_passed(
    make_gateway: GatewayFactory, sink: SmtpSink, clock: Clock
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    sink.reply = "421 4.7.0 Busy"
    await gateway.relay.send_due()
    clock.advance(hours=49)
    await gateway.relay.send_due()
    (row,) = await outbox_rows(gateway)
    assert row.state == "failed"
    assert row.last_error is not None and "421" in row.last_error


async def test_row_left_sending_by_a_crash_is_sent_when_its_lease_ends(
    make_gateway: GatewayFactory, sink: SmtpSink, clock: Clock
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    async with gateway.sessions() as session, session.begin():
        await session.execute(
            update(OutboxMessage).values(
                state="sending", attempts=1, next_attempt_at=clock().replace(year=2030)
            )
        )
    assert (await gateway.relay.send_due()).sent == 0
    clock.now = clock.now.replace(year=2030)
    assert (await gateway.relay.send_due()).sent == 1
    assert len(sink.messages) == 1
