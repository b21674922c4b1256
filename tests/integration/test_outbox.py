"""The outbox relay against a real SMTP sink: sent, retried, failed, never doubled."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from gateway.outbox import NotRetryable, RelayStats, retry_notification
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


async def _set_all(gateway, **values):  # type: ignore[no-untyped-def]
    async with gateway.sessions() as session, session.begin():
        await session.execute(update(OutboxMessage).values(**values))


async def test_batch_claimed_by_a_relay_that_died_is_sent_when_the_claim_lease_ends(
    make_gateway: GatewayFactory, sink: SmtpSink, clock: Clock
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    lease_end = clock() + timedelta(seconds=60)
    await _set_all(gateway, state="claimed", claim_token="dead", next_attempt_at=lease_end)
    assert (await gateway.relay.send_due()).sent == 0
    clock.now = lease_end
    assert (await gateway.relay.send_due()).sent == 1
    (row,) = await outbox_rows(gateway)
    assert (row.state, row.attempts) == ("sent", 1)
    assert len(sink.messages) == 1


async def test_row_a_relay_died_delivering_is_in_doubt_and_not_resent(
    make_gateway: GatewayFactory, sink: SmtpSink, clock: Clock
) -> None:
    """At most once: the server may have accepted it before the relay could record it."""
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    lease_end = clock() + timedelta(minutes=5)
    await _set_all(gateway, state="sending", attempts=1, claim_token="dead",
                   next_attempt_at=lease_end)  # fmt: skip
    assert (await gateway.relay.send_due()).sent == 0
    (row,) = await outbox_rows(gateway)
    assert row.state == "sending"  # its relay may still be at it
    clock.now = lease_end
    assert (await gateway.relay.send_due()).sent == 0
    (row,) = await outbox_rows(gateway)
    assert row.state == "unknown"
    assert row.last_error is not None and "may have been delivered" in row.last_error
    assert sink.messages == []
    assert await gateway.relay.pending_count() == 0


async def test_row_taken_over_by_another_relay_is_not_sent_by_the_first(
    make_gateway: GatewayFactory, sink: SmtpSink, clock: Clock
) -> None:
    """A relay whose claim lease ran out finds its row re-claimed and skips it."""
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    token, rows = await gateway.relay._claim()
    assert [r.state for r in rows] == ["claimed"]
    await _set_all(gateway, claim_token="other-relay")
    stats = RelayStats()
    await gateway.relay._send_batch(token, rows, stats, None)
    (row,) = await outbox_rows(gateway)
    assert (stats.sent, row.state, row.claim_token) == (0, "claimed", "other-relay")
    assert sink.messages == []


async def test_retry_queues_a_failed_or_doubtful_row_and_refuses_a_sent_one(
    make_gateway: GatewayFactory, sink: SmtpSink, clock: Clock
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    await _set_all(gateway, state="unknown", attempts=1)
    (row,) = await outbox_rows(gateway)
    async with gateway.sessions() as session, session.begin():
        await retry_notification(session, row.id, clock())
    assert (await gateway.relay.send_due()).sent == 1
    async with gateway.sessions() as session, session.begin():
        with pytest.raises(NotRetryable, match="is sent"):
            await retry_notification(session, row.id, clock())
        with pytest.raises(NotRetryable, match="no notification"):
            await retry_notification(session, row.id + 100, clock())
    assert len(sink.messages) == 1


async def test_stop_deadline_leaves_unstarted_rows_queued_not_claimed(
    make_gateway: GatewayFactory, sink: SmtpSink
) -> None:
    gateway = await make_gateway()
    for i in range(3):
        await gateway.pipeline.ingest(make_mail(subject=f"Melding {i}"), "t")
    stats = await gateway.relay.send_due(until=asyncio.get_running_loop().time())
    rows = await outbox_rows(gateway)
    assert stats.sent == 0
    assert {r.state for r in rows} == {"pending"}
    assert (await gateway.relay.send_due()).sent == 3


async def test_connection_lost_after_the_message_was_handed_over_is_in_doubt_not_resent(
    make_gateway: GatewayFactory, sink: SmtpSink, clock: Clock
) -> None:
    """The server has the message but we never heard its 250: sending again could double it."""
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    sink.drop_after_data = True
    stats = await gateway.relay.send_due()
    (row,) = await outbox_rows(gateway)
    assert (stats.sent, row.state, row.attempts) == (0, "unknown", 1)
    assert row.last_error is not None and "during DATA" in row.last_error
    sink.drop_after_data = False
    clock.advance(hours=1)
    assert (await gateway.relay.send_due()).sent == 0
    assert len(sink.messages) == 1


async def test_refused_recipient_fails_before_anything_is_handed_over(
    make_gateway: GatewayFactory, sink: SmtpSink
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    await gateway.pipeline.ingest(make_mail(subject="Tweede"), "t")
    sink.refuse_recipients = "550 5.1.1 No such user"
    stats = await gateway.relay.send_due()
    rows = await outbox_rows(gateway)
    assert (stats.failed, [r.state for r in rows], [r.attempts for r in rows]) == (
        2,
        ["failed", "failed"],
        [1, 1],
    )
    sink.refuse_recipients = None
    assert sink.messages == []


async def test_database_failure_at_the_handover_leaves_no_open_envelope_behind(
    make_gateway: GatewayFactory, sink: SmtpSink, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The next notification must not meet '503 nested MAIL command' on a reused connection."""
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    real_write = gateway.relay._write
    calls = 0

    async def failing_once(*args, **kwargs):  # type: ignore[no-untyped-def]
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OperationalError("UPDATE outbox", {}, Exception("database is locked"))
        return await real_write(*args, **kwargs)

    monkeypatch.setattr(gateway.relay, "_write", failing_once)
    with pytest.raises(OperationalError):
        await gateway.relay.send_due()
    (row,) = await outbox_rows(gateway)
    assert row.state == "claimed"  # nothing handed over; back in the queue after the claim
    clock.advance(seconds=61)
    assert (await gateway.relay.send_due()).sent == 1
    (row,) = await outbox_rows(gateway)
    assert (row.state, len(sink.messages)) == ("sent", 1)
