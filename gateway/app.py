"""Wiring: one place builds the daemon's parts from settings and runs them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway import logs
from gateway.config import ConfigError, Settings, describe_errors, load_settings
from gateway.intake.imap import RECOVERABLE, ImapMailbox
from gateway.intake.smtp import SmtpListener
from gateway.notify.render import Renderer
from gateway.observe.endpoint import build_endpoint
from gateway.observe.http import HttpEndpoint
from gateway.observe.metrics import Metrics
from gateway.observe.probes import probe_database
from gateway.outbox import Relay, RelayStats, Transport, relay_rounds
from gateway.pipeline import Clock, Pipeline, utc_now
from gateway.relay_process import RelayProcess
from gateway.service import Desk
from gateway.service.timers import fire_due
from gateway.store import migrate
from gateway.store.db import create_engine, dispose, session_factory
from gateway.store.models import Timer
from gateway.waits import until

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
    metrics: Metrics = field(default_factory=Metrics)
    outbox_wake: asyncio.Event = field(default_factory=asyncio.Event)
    # The file the settings came from: SIGHUP reads it again (None: nothing to reload).
    config_path: Path | None = None
    reload_wanted: asyncio.Event = field(default_factory=asyncio.Event)  # set by SIGHUP
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set with READY=1
    http: HttpEndpoint | None = None  # while the daemon runs, when http.listen is set
    # The relay as a process of its own (outbound.relay_process); None: in this one.
    relay_process: RelayProcess | None = None

    @property
    def relay_totals(self) -> RelayStats:
        """What was sent since the daemon started, by whichever process sends."""
        return self.relay.totals if self.relay_process is None else self.relay_process.totals

    async def close(self) -> None:
        for mailbox in self.mailboxes:
            await mailbox.close()
        await self.relay.close()
        await dispose(self.engine)


def build(
    settings: Settings,
    *,
    clock: Clock = utc_now,
    transport: Transport | None = None,
    engine: AsyncEngine | None = None,
    config_path: Path | None = None,
) -> Gateway:
    """Every part of the daemon, wired from settings; nothing is started yet."""
    engine = engine or create_engine(settings.database.url, background_checkpoints=True)
    sessions = session_factory(engine)
    desk = Desk(
        settings=settings, renderer=Renderer(settings.desk.templates_path, settings.desk.language)
    )
    wake = asyncio.Event()
    pipeline = Pipeline(sessions, desk, clock=clock, on_commit=wake.set)
    relay = Relay(sessions, settings, transport=transport, clock=clock)
    gateway = Gateway(
        settings=settings,
        engine=engine,
        sessions=sessions,
        desk=desk,
        pipeline=pipeline,
        relay=relay,
        mailboxes=[ImapMailbox(m, sessions, pipeline, engine) for m in settings.mailboxes],
        listeners=[SmtpListener(ls, pipeline) for ls in settings.listeners],
        outbox_wake=wake,
        config_path=config_path,
    )
    if settings.outbound.relay_process and config_path is not None and transport is None:
        gateway.relay_process = RelayProcess(config_path)
    gateway.metrics.watch(gateway, clock())
    return gateway


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
    process = gateway.relay_process
    if process is not None:
        await process.start()
    relay = asyncio.create_task(_relay(gateway, done))

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
    if process is not None:
        await process.finish()  # end of its input: it sends what is due, then exits
    else:
        with logs.message_context():  # what the relay binds per notification ends here
            await gateway.relay.send_due()
    await gateway.relay.close()
    totals = gateway.relay_totals
    summary.sent, summary.failed = totals.sent, totals.failed
    summary.retrying = await gateway.relay.pending_count()
    return summary


def _relay(gateway: Gateway, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
    """The relay's loop: here, or the wake-ups for the relay process."""
    if gateway.relay_process is not None:
        return _wake_relay_process(gateway, gateway.relay_process, stop)
    return _relay_loop(gateway, stop)


async def _wake_relay_process(gateway: Gateway, process: RelayProcess, stop: asyncio.Event) -> None:
    """Pass every wake-up (a transaction queued notifications) on to the relay process."""
    while not stop.is_set():
        await until(stop, None, gateway.outbox_wake)
        gateway.outbox_wake.clear()
        process.wake()


async def _relay_loop(gateway: Gateway, stop: asyncio.Event) -> None:
    """Send notifications as they are queued and when retries fall due, until stopped."""
    await relay_rounds(
        gateway.relay,
        gateway.outbox_wake,
        stop,
        poll_seconds=lambda: gateway.settings.outbound.poll_seconds,
    )


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
        await until(stop, timeout)


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
    totals = gateway.relay_totals
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
        await until(stop, interval)


READY_DATABASE_RETRY_MAX = 10.0  # seconds between SELECT 1 attempts while not ready
READY_MAILBOX_MAX = 60.0  # never wait longer than this for the mailboxes' first logins


async def wait_until_ready(gateway: Gateway, stop: asyncio.Event) -> bool:
    """Until the database answers SELECT 1 and every mailbox has had its first attempt
    (logged in, failed, or standing by for the daemon that reads it). A mailbox that is
    down does not hold the daemon back: it retries in the background, and /healthz
    says so. No mailbox is waited for longer than its `timeout_seconds` (at most 60 s).
    False when stopped first."""
    delay = 0.5
    trouble: str | None = None
    while not stop.is_set():
        probe = await probe_database(gateway.engine)
        if probe.reachable:
            break
        if probe.error != trouble:
            log.error("not ready: database unreachable: %s; retrying", probe.error)
            trouble = probe.error
        await until(stop, delay)
        delay = min(delay * 2, READY_DATABASE_RETRY_MAX)
    if stop.is_set():
        return False
    if trouble is not None:
        log.info("database reachable again")
    loop = asyncio.get_running_loop()
    timeouts = [m.settings.timeout_seconds for m in gateway.mailboxes]
    patience = min(READY_MAILBOX_MAX, max(timeouts, default=0))
    deadline = loop.time() + patience
    for mailbox in gateway.mailboxes:
        await until(stop, max(0.0, deadline - loop.time()), mailbox.first_attempt)
        if stop.is_set():
            return False
    for mailbox in gateway.mailboxes:
        name = mailbox.settings.name
        if mailbox.standing_by:
            log.info("mailbox %s: read by another daemon; ready without it", name)
        elif not mailbox.connected:
            why = mailbox.health.trouble or f"no login within {patience:g} s"
            log.warning("mailbox %s: not connected (%s); ready without it, retrying", name, why)
    return True


async def start_http(gateway: Gateway) -> None:
    """The /healthz and /metrics endpoint, when `http.listen` is set. A port that cannot
    be bound is logged and the daemon goes on without it: mail matters more."""
    endpoint = build_endpoint(gateway, gateway.metrics)
    if endpoint is None:
        return
    try:
        await endpoint.start()
    except OSError as exc:
        log.error(
            "http: cannot listen on %s: %s; /healthz and /metrics are off",
            gateway.settings.http.listen,
            exc.strerror or exc,
        )
        return
    gateway.http = endpoint
    log.info("http: /healthz and /metrics on %s:%s", endpoint.host, endpoint.port)


async def stop_http(gateway: Gateway) -> None:
    endpoint, gateway.http = gateway.http, None
    if endpoint is not None:
        await endpoint.stop()


# What a reload cannot change: the daemon keeps these as they are until it restarts.
# (The relay takes a changed [outbound] between batches.)
RESTART_SECTIONS = ("database", "mailboxes", "listeners")
# desk.sender is the desk's identity: the address it reads as its own, its loop token
# and the domain of its Message-IDs.
RESTART_KEYS = {"desk": ("sender",), "http": ("listen",)}


def _differences(old: Any, new: Any, where: str) -> list[str]:
    """The keys (dotted, with [index]) whose values differ; values are not named."""
    if isinstance(old, BaseModel) and type(old) is type(new):
        found: list[str] = []
        for name in type(old).model_fields:
            found += _differences(getattr(old, name), getattr(new, name), f"{where}.{name}")
        return found
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        pairs = enumerate(zip(old, new, strict=True))
        return [key for i, (a, b) in pairs for key in _differences(a, b, f"{where}[{i}]")]
    return [] if old == new else [where]


def _restart_kept(running: Settings, wanted: Settings) -> tuple[Settings, list[str]]:
    """The settings to run with after a reload: `wanted`, except what needs a restart,
    which stays as `running` has it; and the keys that would need that restart."""
    values: dict[str, Any] = {name: getattr(wanted, name) for name in Settings.model_fields}
    restart: list[str] = []
    for name in RESTART_SECTIONS:
        restart += _differences(getattr(running, name), getattr(wanted, name), name)
        values[name] = getattr(running, name)
    for section, keys in RESTART_KEYS.items():
        kept = {key: getattr(getattr(running, section), key) for key in keys}
        asked = {key: getattr(getattr(wanted, section), key) for key in keys}
        restart += [f"{section}.{key}" for key in keys if asked[key] != kept[key]]
        values[section] = getattr(wanted, section).model_copy(update=kept)
    return Settings.model_validate(values), restart


def _reloaded_desk(gateway: Gateway, path: Path) -> tuple[Settings, Desk, list[str]]:
    """The settings and desk a reload switches to, built and checked up front; raises
    ValueError (or ConfigError) saying why not."""
    wanted = load_settings(path)
    try:
        settings, restart = _restart_kept(gateway.settings, wanted)
    except ValidationError as exc:
        raise ValueError("; ".join(describe_errors(exc))) from exc
    renderer = Renderer(settings.desk.templates_path, settings.desk.language)
    renderer.check()
    desk = Desk(settings=settings, renderer=renderer)
    # Built now, so that a problem refuses the reload instead of failing a message.
    _ = desk.access, desk.calendar
    return settings, desk, restart


def reload_config(gateway: Gateway) -> bool:
    """SIGHUP: read the config file and templates again and switch to them, or keep the
    running configuration if they are not usable. Messages in hand finish under the
    desk they started with; the next take the new one; the relay takes a changed
    [outbound] before its next batch. What needs a restart (database, mailboxes,
    listeners, http.listen, desk.sender) is kept as it runs, and named in the log."""
    path = gateway.config_path
    try:
        if path is None:
            raise ValueError("the daemon was not started from a config file")
        settings, desk, restart = _reloaded_desk(gateway, path)
    except ConfigError as exc:
        reason = f"{exc.path}: " + "; ".join(exc.problems)
    except (ValueError, OSError) as exc:
        reason = str(exc)
    else:
        changed = [
            key
            for key in _differences(gateway.settings, settings, "")
            if key.lstrip(".").split(".")[0].split("[")[0] not in RESTART_SECTIONS
        ]
        gateway.settings = settings
        gateway.desk = desk
        gateway.pipeline.use_desk(desk)
        gateway.relay.reconfigure(settings)
        if gateway.relay_process is not None:
            gateway.relay_process.reload()
        logs.configure_logging(settings.logging)
        what = ", ".join(key.lstrip(".") for key in changed) or "nothing"
        log.info("reloaded %s: changed %s", path, what)
        if restart:
            log.warning("needs a restart: %s (running as before until then)", ", ".join(restart))
        return True
    log.error("reload refused: %s; keeping the running configuration", reason)
    return False


def _monotonic_usec() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


async def _reload_loop(gateway: Gateway, stop: asyncio.Event) -> None:
    """Reload on each SIGHUP, one at a time, until stopped (systemd is told RELOADING=1
    and READY=1 again afterwards)."""
    while not stop.is_set():
        await until(stop, None, gateway.reload_wanted)
        if stop.is_set():
            break
        gateway.reload_wanted.clear()
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={_monotonic_usec()}")
        try:
            reload_config(gateway)
        except Exception:  # a bug in reloading must not stop the daemon
            log.exception("reload refused: unexpected error; keeping the running configuration")
        finally:
            sd_notify("READY=1")


async def run_forever(gateway: Gateway, stop: asyncio.Event) -> None:
    """The daemon: listeners, mailbox readers and the relay until `stop` is set.

    READY=1 once the database answers and every mailbox has had its first login (see
    wait_until_ready); /healthz and /metrics are served from the start. On stop:
    listeners stop accepting and answer the message in hand, mailboxes finish the
    message in hand, the relay sends what is due until `daemon.shutdown_seconds` have
    passed; only then is anything still running cancelled (its transaction rolls back,
    so no half-written ticket is left).
    """
    await start_http(gateway)
    for listener in gateway.listeners:
        await listener.start()
    readers = [
        asyncio.create_task(m.run(stop), name=f"mailbox:{m.settings.name}")
        for m in gateway.mailboxes
    ]
    process = gateway.relay_process
    keeper: list[asyncio.Task[None]] = []
    if process is not None:
        await process.start()
        keeper.append(asyncio.create_task(process.keep_running(stop), name="relay-process"))
    relay = asyncio.create_task(_relay(gateway, stop), name="relay")
    timers = asyncio.create_task(_timer_loop(gateway, stop), name="timers")
    reloads = asyncio.create_task(_reload_loop(gateway, stop), name="reload")
    systemd: asyncio.Task[None] | None = None
    if await wait_until_ready(gateway, stop):
        sd_notify("READY=1")
        gateway.ready.set()
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
    tasks = [*readers, relay, timers, reloads, *keeper, *([systemd] if systemd else [])]

    async def wind_down() -> None:
        await asyncio.gather(*(listener.stop() for listener in gateway.listeners))
        await asyncio.gather(*tasks)
        # Flush: notifications the last messages queued, as far as time allows.
        sent = gateway.relay_totals.sent
        if process is not None:  # it drains within the same shutdown time
            await process.stop(patience=max(0.1, deadline - loop.time()))
        else:
            with logs.message_context():
                await gateway.relay.send_due(until=deadline)
        sent = gateway.relay_totals.sent - sent
        left = await gateway.relay.pending_count()
        log.info("stopped: %d notification(s) sent while stopping, %d left", sent, left)

    winding = asyncio.create_task(wind_down())
    try:
        await asyncio.wait_for(asyncio.shield(winding), timeout=max(0.1, deadline - loop.time()))
    except TimeoutError:
        log.warning("stopping: shutdown time is up; cancelling what is still running")
        winding.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(winding, *tasks, return_exceptions=True)
        gateway.relay.abort()  # no QUIT on a connection that may be mid-transaction
        if process is not None:
            process.kill()
    finally:
        await stop_http(gateway)
    await gateway.relay.close()


def install_signal_handlers(stop: asyncio.Event, gateway: Gateway | None = None) -> None:
    """SIGTERM and SIGINT stop the daemon; SIGHUP reloads `gateway`'s configuration."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if gateway is not None:
        loop.add_signal_handler(signal.SIGHUP, gateway.reload_wanted.set)
