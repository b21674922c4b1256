"""/healthz and /metrics over a real socket, READY after the first login: the numbers
follow what the daemon took in, and the health follows the database, the mailboxes and
the outbox."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from gateway.app import Gateway, build, run_forever
from gateway.observe.endpoint import build_endpoint
from gateway.observe.http import HttpEndpoint
from gateway.store.db import checkpointer_of
from gateway.store.models import OutboxMessage
from tests.conftest import GatewayFactory
from tests.support.databases import create_database, drop_database, migrate_to_head
from tests.support.dovecot import ImapAccount, free_port
from tests.support.http import HttpReply, get
from tests.support.mails import make_mail
from tests.support.settings import Clock, imap_mailbox, make_settings
from tests.support.sink import SmtpSink

HTTP = {"http": {"listen": "127.0.0.1:0"}}
REQUESTER = "jan@klant.example"


@contextlib.asynccontextmanager
async def daemon(gateway: Gateway) -> AsyncIterator[asyncio.Event]:
    """run_forever until the block ends; entered once the daemon is ready (READY=1)."""
    stop = asyncio.Event()
    task = asyncio.create_task(run_forever(gateway, stop))
    try:
        ready = asyncio.ensure_future(gateway.ready.wait())
        await asyncio.wait({ready, task}, timeout=30, return_when=asyncio.FIRST_COMPLETED)
        assert gateway.ready.is_set(), "the daemon did not get ready"
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def endpoint(gateway: Gateway) -> AsyncIterator[int]:
    """Only the HTTP endpoint of `gateway` (no daemon); yields its port."""
    server = build_endpoint(gateway, gateway.metrics)
    assert isinstance(server, HttpEndpoint)
    await server.start()
    try:
        yield server.port
    finally:
        await server.stop()


async def smtp_send(port: int, message: bytes, to: str = "business@vtm.example") -> str:
    _errors, reply = await aiosmtplib.send(
        message, sender=REQUESTER, recipients=[to], hostname="127.0.0.1", port=port
    )
    return reply


async def sent_rows(gateway: Gateway) -> int:
    async with gateway.sessions() as session:
        count = await session.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.state == "sent")
        )
    return int(count or 0)


@pytest.mark.imap
async def test_metrics_and_healthz_count_what_the_running_daemon_took_in(
    make_gateway: GatewayFactory, imap_account: ImapAccount, clock: Clock
) -> None:
    gateway = await make_gateway(
        mailboxes=[imap_mailbox(imap_account)],
        listeners=[{"kind": "smtp", "port": 0}],
        sections=HTTP,
    )
    async with daemon(gateway):
        assert gateway.mailboxes[0].connected  # READY came after the first login
        assert gateway.http is not None
        port, smtp = gateway.http.port, gateway.listeners[0].port
        before = (await get(port, "/metrics")).samples()
        assert before['ticket_gateway_messages_total{outcome="ticket"}'] == 0
        assert before["ticket_gateway_processing_seconds_count"] == 0

        first = make_mail(subject="Storing glasvezel Leiden")
        assert "ticket VTM-2026-000001" in await smtp_send(smtp, first)
        assert "ticket VTM-2026-000002" in await smtp_send(smtp, make_mail(subject="Tweede"))
        reply = make_mail(subject="Re: [VTM-2026-000001] Storing glasvezel Leiden")
        assert "article VTM-2026-000001" in await smtp_send(smtp, reply)
        away = make_mail(subject="Afwezig", headers={"Auto-Submitted": "auto-replied"})
        assert "ignored" in await smtp_send(smtp, away)
        assert "duplicate" in await smtp_send(smtp, first)
        assert "quarantined" in await smtp_send(smtp, b"Subject: kapot\r\n\r\ngeen afzender\r\n")

        scrape = await get(port, "/metrics")
        assert scrape.status == 200
        assert scrape.headers["content-type"].startswith("text/plain")
        samples = scrape.samples()
        for outcome, n in {"ticket": 2, "article": 1, "ignored": 1, "duplicate": 1}.items():
            assert samples[f'ticket_gateway_messages_total{{outcome="{outcome}"}}'] == n, outcome
        assert samples['ticket_gateway_messages_total{outcome="quarantined"}'] == 1
        assert samples["ticket_gateway_tickets_created_total"] == 2
        assert samples["ticket_gateway_processing_seconds_count"] == 6
        assert samples["ticket_gateway_quarantine_held"] == 1
        assert samples['ticket_gateway_imap_reconnects_total{mailbox="desk"}'] == 0
        assert samples["ticket_gateway_database_up"] == 1
        assert samples['ticket_gateway_sla_breaches{kind="first_response"}'] == 0
        assert samples['ticket_gateway_outbox_depth{state="failed"}'] == 0
        assert 0 <= samples['ticket_gateway_notifications_total{state="sent"}'] <= 3

        health = await get(port, "/healthz")
        assert health.status == 200
        body = health.json()
        assert body["status"] == "ok" and body["problems"] == []
        assert body["database"]["reachable"] is True
        assert body["database"]["latency_ms"] >= 0
        assert body["mailboxes"] == {"desk": {"connected": True, "failures": 0, "standby": False}}
        assert set(body["outbox"]) == {"depth", "oldest_age_seconds"}

        # Three days on, nobody has answered the two new tickets: both breach their
        # first-response target (no contract: one working day; no resolution target).
        clock.advance(days=3)
        samples = (await get(port, "/metrics")).samples()
        assert samples['ticket_gateway_sla_breaches{kind="first_response"}'] == 2
        assert samples['ticket_gateway_sla_breaches{kind="resolution"}'] == 0

    # Stopped: the relay sent what was due; its totals are what the outbox says.
    final, _content_type = await gateway.metrics.render()
    samples = HttpReply(200, {}, final).samples()
    assert samples['ticket_gateway_notifications_total{state="sent"}'] == await sent_rows(gateway)
    assert samples['ticket_gateway_notifications_total{state="sent"}'] >= 3


@pytest.mark.imap
async def test_ready_waits_for_the_first_login_but_not_for_a_mailbox_that_is_down(
    make_gateway: GatewayFactory, imap_account: ImapAccount
) -> None:
    gone = {"name": "gone", "host": "127.0.0.1", "port": free_port(), "security": "none",
            "username": "x", "password": "y"}  # fmt: skip
    gateway = await make_gateway(mailboxes=[imap_mailbox(imap_account), gone], sections=HTTP)
    async with daemon(gateway):
        desk, down = gateway.mailboxes
        assert desk.connected
        assert not down.connected and down.health.failures >= 1
        assert gateway.http is not None
        health = await get(gateway.http.port, "/healthz")
        assert health.status == 503
        body = health.json()
        assert body["status"] == "degraded"
        assert body["mailboxes"]["desk"]["connected"] is True
        assert body["mailboxes"]["gone"]["connected"] is False
        assert body["mailboxes"]["gone"]["failures"] >= 1
        assert [p.split(":")[0] for p in body["problems"]] == ["mailbox gone"]
        samples = (await get(gateway.http.port, "/metrics")).samples()
        assert samples['ticket_gateway_imap_reconnects_total{mailbox="gone"}'] >= 1


async def test_a_notification_overdue_makes_healthz_degraded_until_it_is_sent(
    make_gateway: GatewayFactory, clock: Clock, sink: SmtpSink
) -> None:
    gateway = await make_gateway(sections={"http": {"outbox_max_age_seconds": 600}})
    async with endpoint(gateway) as port:
        await gateway.pipeline.ingest(make_mail(), "test")
        assert (await get(port, "/healthz")).json()["outbox"] == {
            "depth": 1,
            "oldest_age_seconds": 0.0,
        }
        clock.advance(minutes=20)  # the relay is not running: the notice waits
        health = await get(port, "/healthz")
        assert health.status == 503
        body = health.json()
        assert body["status"] == "degraded"
        assert body["outbox"] == {"depth": 1, "oldest_age_seconds": 1200.0}
        assert body["problems"] == ["outbox: a notification has been due for 1200 s (limit 600 s)"]
        samples = (await get(port, "/metrics")).samples()
        assert samples['ticket_gateway_outbox_depth{state="pending"}'] == 1
        assert samples["ticket_gateway_outbox_oldest_age_seconds"] == 1200

        await gateway.relay.send_due()
        await sink.wait_for(1)
        health = await get(port, "/healthz")
        assert (health.status, health.json()["outbox"]) == (
            200,
            {"depth": 0, "oldest_age_seconds": 0.0},
        )
        samples = (await get(port, "/metrics")).samples()
        assert samples['ticket_gateway_outbox_depth{state="pending"}'] == 0
        assert samples['ticket_gateway_notifications_total{state="sent"}'] == 1


async def test_suppressed_notifications_are_counted(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(sections={"limits": {"per_ticket_10_minutes": 1}})
    async with endpoint(gateway) as port:
        await gateway.pipeline.ingest(make_mail(), "test")
        for n in range(2):  # each asks for an automatic answer: over the limit
            follow_up = make_mail(subject=f"Re: [VTM-2026-000001] aanvulling {n}")
            await gateway.pipeline.ingest(follow_up, "test")
        samples = (await get(port, "/metrics")).samples()
    suppressed = samples['ticket_gateway_notifications_total{state="suppressed"}']
    assert suppressed == samples['ticket_gateway_outbox_depth{state="suppressed"}'] >= 1


async def test_healthz_fails_when_the_database_is_gone(
    db_url: str, sink: SmtpSink, clock: Clock
) -> None:
    """SQLite: the file removed (open connections would go on writing into nothing).
    PostgreSQL: the database dropped, on a database of this test's own."""
    postgresql = db_url.startswith("postgresql")
    url = await create_database("gw_health") if postgresql else db_url
    try:
        if postgresql:
            await migrate_to_head(url)
        gateway = build(make_settings(url, sink_port=sink.port, sections=HTTP), clock=clock)
        try:
            async with endpoint(gateway) as port:
                assert (await get(port, "/healthz")).status == 200
                if postgresql:
                    await drop_database(url)
                else:
                    await asyncio.to_thread(Path(str(make_url(url).database)).unlink)
                health = await get(port, "/healthz")
                assert health.status == 503
                body = health.json()
                assert body["status"] == "failing"
                assert body["database"]["reachable"] is False
                assert body["outbox"] == {"depth": None, "oldest_age_seconds": None}
                assert body["problems"][0].startswith("database: ")
                if not postgresql:
                    assert "is gone" in body["database"]["error"]
                scrape = await get(port, "/metrics")  # still answers, without the figures
                assert scrape.status == 200
                samples = scrape.samples()
                assert samples["ticket_gateway_database_up"] == 0
                assert "ticket_gateway_quarantine_held" not in samples
                assert samples['ticket_gateway_messages_total{outcome="ticket"}'] == 0
        finally:
            await gateway.close()
    finally:
        if postgresql:
            await drop_database(url)


async def test_a_taken_http_port_is_logged_and_the_daemon_runs_on(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    taken = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = taken.sockets[0].getsockname()[1]
    try:
        gateway = await make_gateway(
            listeners=[{"kind": "smtp", "port": 0}],
            sections={"http": {"listen": f"127.0.0.1:{port}"}},
        )
        with caplog.at_level(logging.INFO, logger="gateway.app"):
            async with daemon(gateway):
                assert gateway.http is None
                assert "ticket VTM-2026-000001" in await smtp_send(
                    gateway.listeners[0].port, make_mail()
                )
    finally:
        taken.close()
        await taken.wait_closed()
    (line,) = [m for m in caplog.messages if m.startswith("http: ")]
    assert line.startswith(f"http: cannot listen on 127.0.0.1:{port}: ")
    assert line.endswith("; /healthz and /metrics are off")


async def test_sqlite_checkpoints_are_counted_exactly_on_sqlite(
    make_gateway: GatewayFactory, db_url: str
) -> None:
    gateway = await make_gateway()
    checkpointer = checkpointer_of(gateway.engine)
    async with endpoint(gateway) as port:
        await gateway.pipeline.ingest(make_mail(), "test")
        if checkpointer is not None:  # the thread checkpoints soon after the first commit
            assert await asyncio.to_thread(checkpointer.checkpointed.wait, 10)
        samples = (await get(port, "/metrics")).samples()
    passive = samples.get('ticket_gateway_sqlite_checkpoints_total{result="passive"}')
    if db_url.startswith("sqlite"):
        assert passive is not None and passive >= 1
        assert samples['ticket_gateway_sqlite_checkpoints_total{result="failed"}'] == 0
    else:
        assert passive is None
