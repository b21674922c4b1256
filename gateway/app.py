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

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.config import Settings
from gateway.intake.imap import RECOVERABLE, ImapMailbox
from gateway.intake.smtp import SmtpListener
from gateway.notify.render import Renderer
from gateway.outbox import Relay, Transport
from gateway.pipeline import Clock, Pipeline, utc_now
from gateway.service import Desk
from gateway.service.timers import fire_due
from gateway.store import migrate
from gateway.store.db import create_engine, session_factory
from gateway.store.models import Timer

log = logging.getLogger(__name__)


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
        mailboxes=[ImapMailbox(m, sessions, pipeline, engine) for m in settings.mailboxes],
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
    timers: int = 0
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
        name = mailbox.settings.name
        try:
            if not await mailbox.lock.acquire():
                log.warning("mailbox %s: read by a running daemon; skipped", name)
                summary.errors.append(f"mailbox {name}: read by a running daemon")
                return
            summary.messages += await mailbox.drain()
        except RECOVERABLE as exc:
            log.error("mailbox %s: %s", name, exc)
            summary.errors.append(f"mailbox {name}: {exc}")
        finally:
            await mailbox.close()
            await mailbox.lock.release()

    try:
        await asyncio.gather(*(drain(m) for m in gateway.mailboxes))
        summary.timers = await fire_timers(gateway)
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
    """Send notifications as they are queued and when retries fall due, until stopped."""
    failing = False
    while not stop.is_set():
        gateway.outbox_wake.clear()
        timeout = gateway.settings.outbound.poll_seconds
        try:
            await gateway.relay.send_due(stop=stop)
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


async def fire_timers(gateway: Gateway) -> int:
    """Fire every timer that is due; the relay is woken for what they queued."""
    fired = 0
    while batch := await fire_due(gateway.sessions, gateway.desk, gateway.relay.clock()):
        fired += batch
        gateway.outbox_wake.set()
    return fired


async def next_timer(gateway: Gateway) -> datetime | None:
    async with gateway.sessions() as session:
        return await session.scalar(select(func.min(Timer.due_at)).where(Timer.fired_at.is_(None)))


async def _timer_loop(gateway: Gateway, stop: asyncio.Event) -> None:
    """Fire timers as they fall due (looked for every `timers.poll_seconds`, sooner when
    the next one is known), until stopped. Nothing is kept in memory between rounds."""
    failing = False
    while not stop.is_set():
        timeout = gateway.settings.timers.poll_seconds
        try:
            await fire_timers(gateway)
            due = await next_timer(gateway)
            if due is not None:
                timeout = min(timeout, max(0.05, (due - gateway.relay.clock()).total_seconds()))
            failing = False
        except Exception as exc:  # timers must outlive a database hiccup
            if not failing:
                log.exception("timers: %s; retrying", exc)
            failing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout)


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


STATUS_SECONDS = 10.0


def status_line(gateway: Gateway) -> str:
    """What the daemon did since it started, for `systemctl status`."""
    counts = gateway.pipeline.counts
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))
    totals = gateway.relay.totals
    taken = f"taken in {sum(counts.values())}" + (f" ({kinds})" if kinds else "")
    return f"{taken}; notifications sent {totals.sent}, failed {totals.failed}"


def watchdog_interval() -> float | None:
    """Half the watchdog time systemd gave us (WatchdogSec=), or None without one."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 2_000_000


async def _systemd_loop(gateway: Gateway, stop: asyncio.Event) -> None:
    """WATCHDOG=1 from the event loop itself (a blocked loop stops it, and systemd
    restarts the daemon) and a STATUS= line with the counts, until stopped."""
    watchdog = watchdog_interval()
    interval = STATUS_SECONDS if watchdog is None else min(watchdog, STATUS_SECONDS)
    last_status = ""
    while not stop.is_set():
        status = status_line(gateway)
        if watchdog is not None:
            sd_notify("WATCHDOG=1")
        if status != last_status:
            sd_notify(f"STATUS={status}")
            last_status = status
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def run_forever(gateway: Gateway, stop: asyncio.Event) -> None:
    """The daemon: listeners, mailbox readers and the relay until `stop` is set.

    On stop: listeners stop accepting and answer the message in hand, mailboxes finish
    the message in hand, the relay sends what is due until `daemon.shutdown_seconds`
    have passed; only then is anything still running cancelled (its transaction rolls
    back, so no half-written ticket is left).
    """
    for listener in gateway.listeners:
        await listener.start()
    readers = [
        asyncio.create_task(m.run(stop), name=f"mailbox:{m.settings.name}")
        for m in gateway.mailboxes
    ]
    relay = asyncio.create_task(_relay_loop(gateway, stop), name="relay")
    timers = asyncio.create_task(_timer_loop(gateway, stop), name="timers")
    sd_notify("READY=1")
    systemd = asyncio.create_task(_systemd_loop(gateway, stop), name="systemd")
    log.info(
        "ticket-gateway running: %d mailbox(es), %d listener(s), outbound %s",
        len(gateway.mailboxes),
        len(gateway.listeners),
        gateway.settings.outbound.transport,
    )
    await stop.wait()
    sd_notify("STOPPING=1")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + gateway.settings.daemon.shutdown_seconds
    log.info("stopping: finishing the message in hand")

    async def wind_down() -> None:
        await asyncio.gather(*(listener.stop() for listener in gateway.listeners))
        await asyncio.gather(*readers, relay, timers, systemd)
        # Flush: notifications the last messages queued, as far as time allows.
        stats = await gateway.relay.send_due(until=deadline)
        left = await gateway.relay.pending_count()
        log.info("stopped: %d notification(s) sent while stopping, %d left", stats.sent, left)

    winding = asyncio.create_task(wind_down())
    try:
        await asyncio.wait_for(asyncio.shield(winding), timeout=max(0.1, deadline - loop.time()))
    except TimeoutError:
        log.warning("stopping: shutdown time is up; cancelling what is still running")
        winding.cancel()
        for task in (*readers, relay, timers, systemd):
            task.cancel()
        await asyncio.gather(winding, *readers, relay, timers, systemd, return_exceptions=True)
        gateway.relay.abort()  # no QUIT on a connection that may be mid-transaction
    await gateway.relay.close()


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
