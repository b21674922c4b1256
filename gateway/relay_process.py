"""The outbox relay in a process of its own, so that sending gets a core of its own.

Taking a message in (parse, rules, one transaction) and sending a notification
(compose, SMTP, recording the delivery) each cost a few milliseconds of CPU; in one
process they share one core. With `outbound.relay_process = true` the daemon starts
`python -m gateway.relay_process CONFIG` beside itself. Nothing else changes: the
relay's guarantees live in the outbox rows (claims, compare-and-set, leases), not in
the process that holds them.

Between the two, over the child's standard streams:
  parent -> child  one byte per wake-up (a ticket transaction queued notifications);
                   end of input: send what is due, then exit (`run --once`, or the
                   parent is gone);
  child -> parent  a JSON line with the relay's totals after each round;
  SIGTERM          stop: finish the message in hand and what is due within
                   `daemon.shutdown_seconds`, as the daemon itself does;
  SIGHUP           read the configuration again (desk sender, batch size, timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path

from gateway import logs
from gateway.config import load_settings
from gateway.outbox import Relay, RelayStats, relay_rounds
from gateway.store.db import create_engine, dispose, session_factory
from gateway.waits import until

log = logging.getLogger(__name__)

RESTART_SECONDS = 1.0  # before a relay process that died is started again


class RelayProcess:
    """The parent's handle on the relay process: wake it, follow its totals, stop it."""

    def __init__(self, config_path: Path) -> None:
        self._config = config_path
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._done = 0  # totals of processes that have ended, added to the running one's
        self.totals = RelayStats()
        self.restarts = 0
        self.restarted = asyncio.Event()  # set each time a new process replaced one

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.returncode

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.relay_process",
            str(self._config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._follow(self._proc), name="relay-process")
        log.info("relay process started, pid %d", self._proc.pid)

    async def _follow(self, proc: asyncio.subprocess.Process) -> None:
        """Take over the child's totals as it reports them."""
        assert proc.stdout is not None
        base = RelayStats(self.totals.sent, self.totals.retried, self.totals.failed)
        async for line in proc.stdout:
            with contextlib.suppress(ValueError, TypeError):
                report = json.loads(line)
                self.totals = RelayStats(
                    base.sent + int(report["sent"]),
                    base.retried + int(report["retried"]),
                    base.failed + int(report["failed"]),
                )

    def wake(self) -> None:
        """Tell the relay that notifications were queued (never blocks)."""
        proc = self._proc
        if proc is None or proc.stdin is None or proc.stdin.is_closing():
            return
        with contextlib.suppress(ConnectionError, RuntimeError):
            proc.stdin.write(b"w")

    def reload(self) -> None:
        if self.running:
            assert self._proc is not None
            self._proc.send_signal(signal.SIGHUP)

    async def keep_running(self, stop: asyncio.Event) -> None:
        """Start the relay process again whenever it ends before `stop` is set."""
        while not stop.is_set():
            assert self._proc is not None
            ended = asyncio.ensure_future(self._proc.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({ended, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if stop.is_set():
                ended.cancel()
                return
            log.error(
                "relay process %d ended (exit %s); starting it again",
                self._proc.pid,
                self._proc.returncode,
            )
            await self._wait_reader()
            await until(stop, RESTART_SECONDS)
            if not stop.is_set():
                self.restarts += 1
                await self.start()
                self.restarted.set()

    async def finish(self) -> int:
        """End of input: the relay sends what is due and exits; its exit status."""
        proc = self._proc
        if proc is None:
            return 0
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()
        status = await proc.wait()
        await self._wait_reader()
        return status

    async def stop(self, patience: float) -> None:
        """SIGTERM: the relay finishes the message in hand and what is due within its
        own shutdown time; killed if it is still there `patience` seconds later."""
        proc = self._proc
        if proc is None or proc.returncode is not None:
            await self._wait_reader()
            return
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), patience)
        except TimeoutError:
            log.warning("relay process %d did not stop in time; killed", proc.pid)
            proc.kill()
            await proc.wait()
        await self._wait_reader()

    def kill(self) -> None:
        """At once (the daemon's shutdown time is up)."""
        if self.running:
            assert self._proc is not None
            self._proc.kill()

    async def _wait_reader(self) -> None:
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
            self._reader = None


def _report(relay: Relay) -> None:
    totals = relay.totals
    line = {"sent": totals.sent, "retried": totals.retried, "failed": totals.failed}
    with contextlib.suppress(OSError):  # the daemon is gone: its input ends next
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()


async def _wake_on_input(wake: asyncio.Event, finishing: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while chunk := await reader.read(4096):
        del chunk
        wake.set()
    finishing.set()
    wake.set()


async def serve(config_path: Path) -> None:
    """The child: send due notifications when woken, when retries fall due, and every
    `outbound.poll_seconds` (for what the CLI queued), until stopped or input ends."""
    settings = load_settings(config_path)
    logs.configure_logging(settings.logging)
    engine = create_engine(settings.database.url, background_checkpoints=True)
    relay = Relay(session_factory(engine), settings)
    outbound, daemon = settings.outbound, settings.daemon  # reload may change them
    stop, wake, finishing = asyncio.Event(), asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def reload() -> None:
        nonlocal outbound, daemon
        try:
            fresh = load_settings(config_path)
        except Exception as exc:  # a bad file: keep sending with what we have
            log.error("relay process: reload refused: %s; keeping the configuration", exc)
            return
        relay.reconfigure(fresh)
        logs.configure_logging(fresh.logging)
        outbound, daemon = fresh.outbound, fresh.daemon

    loop.add_signal_handler(signal.SIGHUP, reload)
    listener = asyncio.create_task(_wake_on_input(wake, finishing))
    try:
        await relay_rounds(
            relay,
            wake,
            stop,
            poll_seconds=lambda: outbound.poll_seconds,
            ended=finishing.is_set,
            after_round=lambda: _report(relay),
        )
        deadline = loop.time() + daemon.shutdown_seconds
        with logs.message_context():
            await relay.send_due(until=deadline if stop.is_set() else None)
        _report(relay)
    finally:
        listener.cancel()
        await relay.close()
        await dispose(engine)


def main() -> None:
    asyncio.run(serve(Path(sys.argv[1])))


if __name__ == "__main__":
    main()
