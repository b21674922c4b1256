"""Wiring: one place builds the daemon's parts from settings and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.config import Settings
from gateway.intake.imap import ImapError, ImapMailbox
from gateway.intake.smtp import SmtpListener
from gateway.notify.render import Renderer
from gateway.outbox import Relay, Transport
from gateway.pipeline import Clock, Pipeline, TemporaryFailure, utc_now
from gateway.service import Desk
from gateway.store import migrate
from gateway.store.db import create_engine, session_factory

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0


class NotMigrated(Exception):
    """The database schema is older than this version of the gateway."""


@dataclass
class Gateway:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    desk: Desk
    pipeline: Pipeline
    relay: Relay
    mailboxes: list[ImapMailbox]
    listeners: list[SmtpListener]
    outbox_wake: asyncio.Event = field(default_factory=asyncio.Event)

    async def close(self) -> None:
        for mailbox in self.mailboxes:
            await mailbox.close()
        await self.relay.close()
        await self.engine.dispose()


def build(
    settings: Settings,
    *,
    clock: Clock = utc_now,
    transport: Transport | None = None,
    engine: AsyncEngine | None = None,
) -> Gateway:
    """Every part of the daemon, wired from settings; nothing is started yet."""
    engine = engine or create_engine(settings.database.url)
    sessions = session_factory(engine)
    desk = Desk(
        settings=settings, renderer=Renderer(settings.desk.templates_path, settings.desk.language)
    )
    wake = asyncio.Event()
    pipeline = Pipeline(sessions, desk, clock=clock, on_commit=wake.set)
    relay = Relay(sessions, settings, transport=transport, clock=clock)
    return Gateway(
        settings=settings,
        engine=engine,
        sessions=sessions,
        desk=desk,
        pipeline=pipeline,
        relay=relay,
        mailboxes=[ImapMailbox(m, sessions, pipeline) for m in settings.mailboxes],
        listeners=[SmtpListener(ls, pipeline) for ls in settings.listeners],
        outbox_wake=wake,
    )


async def prepare_database(gateway: Gateway) -> None:
    """Migrate when configured to; otherwise refuse to run on an old schema."""
    if gateway.settings.database.auto_migrate:
        await migrate.upgrade(gateway.engine)
    elif not await migrate.is_up_to_date(gateway.engine):
        raise NotMigrated("the database schema is not up to date: run `ticket-gateway migrate`")


@dataclass
class BurstSummary:
    messages: int = 0
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    errors: list[str] = field(default_factory=list)


async def run_once(gateway: Gateway) -> BurstSummary:
    """Burst mode: take in what waits in every mailbox, send every due notification.

    The relay sends while the mailboxes are still being read (as in the daemon); when
    they are done, one last pass sends whatever is due.
    """
    summary = BurstSummary()
    done = asyncio.Event()
    relay = asyncio.create_task(_relay_loop(gateway, done))

    async def drain(mailbox: ImapMailbox) -> None:
        try:
            summary.messages += await mailbox.drain()
        except (ImapError, TemporaryFailure, OSError, TimeoutError) as exc:
            log.error("mailbox %s: %s", mailbox.settings.name, exc)
            summary.errors.append(f"mailbox {mailbox.settings.name}: {exc}")
        finally:
            await mailbox.close()

    try:
        await asyncio.gather(*(drain(m) for m in gateway.mailboxes))
    finally:
        done.set()
        await relay
    await gateway.relay.send_due()
    await gateway.relay.close()
    totals = gateway.relay.totals
    summary.sent, summary.failed = totals.sent, totals.failed
    summary.retrying = await gateway.relay.pending_count()
    return summary


async def _relay_loop(gateway: Gateway, stop: asyncio.Event) -> None:
    failing = False
    while not stop.is_set():
        gateway.outbox_wake.clear()
        timeout = gateway.settings.outbound.poll_seconds
        try:
            await gateway.relay.send_due()
            due: datetime | None = await gateway.relay.next_due()
            if due is not None:
                timeout = min(timeout, max(0.05, (due - gateway.relay.clock()).total_seconds()))
            failing = False
        except Exception as exc:  # the relay must outlive a database hiccup
            if not failing:
                log.exception("outbox relay: %s; retrying", exc)
            failing = True
            timeout = 5.0
        waiters = [
            asyncio.ensure_future(gateway.outbox_wake.wait()),
            asyncio.ensure_future(stop.wait()),
        ]
        _done, pending = await asyncio.wait(
            waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
    await gateway.relay.close()


def sd_notify(state: str) -> None:
    """Tell systemd (Type=notify) about our state; a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())


async def run_forever(gateway: Gateway, stop: asyncio.Event) -> None:
    """The daemon: listeners, mailbox pollers and the relay until `stop` is set."""
    for listener in gateway.listeners:
        await listener.start()
    tasks = [
        asyncio.create_task(m.run(stop), name=f"mailbox:{m.settings.name}")
        for m in gateway.mailboxes
    ]
    tasks.append(asyncio.create_task(_relay_loop(gateway, stop), name="relay"))
    sd_notify("READY=1")
    log.info(
        "ticket-gateway running: %d mailbox(es), %d listener(s), outbound %s",
        len(gateway.mailboxes),
        len(gateway.listeners),
        gateway.settings.outbound.transport,
    )
    await stop.wait()
    sd_notify("STOPPING=1")
    log.info("stopping: finishing the message in hand")
    for listener in gateway.listeners:
        await listener.stop()
    _done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
