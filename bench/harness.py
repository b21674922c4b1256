"""What the benchmark scripts share: a private Dovecot, the SMTP sink process, scratch
databases, the daemon as a real process, probes of its database and its memory.

Every script runs the gateway of the tree it lives in (PYTHONPATH is set for the
daemons), so a copy of a commit (`git archive`) measures that commit even when the
checkout it was made from has edits in progress.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aioimaplib
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.store.models import (
    OUTBOX_WAITING_STATES,
    InboundMessage,
    MailboxUid,
    OutboxMessage,
    QuarantinedMessage,
    Ticket,
)
from tests.support.databases import asyncpg_dsn, migrate_to_head, scratch_pg_database
from tests.support.dovecot import Dovecot, ImapAccount, free_port
from tests.support.settings import imap_mailbox, settings_dict, to_toml

ROOT = Path(__file__).resolve().parent.parent
# Seconds of mail, not days: with the rate limits on, the many answers to one customer
# within seconds would rightly be held back. Off, so every decided answer is sent.
NO_RATE_LIMITS = {"per_ticket_10_minutes": 0, "per_ticket_hour": 0, "per_recipient_day": 0}


class BenchError(Exception):
    """The run could not go on: a daemon died by itself, or stopped making progress."""


# --------------------------------------------------------------------------- the machine

# The same snippet as the peer's benchmark scripts, so figures can sit side by side.
CALIB_CODE = """import time
t = time.perf_counter(); s = 0
for i in range(3_000_000): s += i
print(round(time.perf_counter() - t, 3))"""


def cpu_calibration() -> float:
    """Seconds for a fixed pure-Python loop: compare figures only next to this."""
    out = subprocess.run(
        [sys.executable, "-c", CALIB_CODE], check=True, capture_output=True, text=True
    )
    return float(out.stdout)


def _command_output(*argv: str) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def _postgresql_version() -> str:
    import asyncpg

    from tests.support.databases import server_url

    async def ask() -> str:
        conn = await asyncpg.connect(asyncpg_dsn(server_url()))
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    try:
        return asyncio.run(ask()).split()[0]
    except (OSError, asyncpg.PostgresError):
        return "unreachable"


def machine(backends: Iterable[str] = ()) -> dict[str, Any]:
    """Where and what was measured: for every JSON line and the README's tables."""
    dirty = _command_output("git", "-C", str(ROOT), "status", "--porcelain", "gateway")
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "dovecot": _command_output(
            shutil.which("dovecot") or "/usr/sbin/dovecot", "--version"
        ).split(" ")[0],
        "postgresql": _postgresql_version() if "postgresql" in backends else None,
        "commit": _command_output("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"),
        "gateway_edited": bool(dirty),  # uncommitted changes under gateway/ were measured
    }


def describe(about: dict[str, Any]) -> str:
    """machine() in words, for the first line a script prints."""
    return (
        f"{about['cores']} cores, Python {about['python']}, Dovecot {about['dovecot']}, "
        f"PostgreSQL {about['postgresql']}, gateway {about['commit']}"
        + (" + uncommitted edits" if about["gateway_edited"] else "")
    )


def bench_parser(doc: str | None, *, databases: bool = True) -> argparse.ArgumentParser:
    """The options every script has: --db (unless PostgreSQL only), --fetch-batch, --out."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    if databases:
        parser.add_argument("--db", default="sqlite,postgresql", help="comma-separated backends")
    parser.add_argument("--fetch-batch", type=int, default=100, help="UIDs per FETCH")
    parser.add_argument("--out", type=Path, default=Path("/tmp/ticket-gateway-bench.jsonl"))
    return parser


def append_json(out: Path, result: dict[str, Any]) -> None:
    with out.open("a") as handle:
        handle.write(json.dumps(result) + "\n")


def percentiles(values: Sequence[float], wanted: Sequence[int] = (50, 90, 99)) -> dict[str, float]:
    """p50/p90/p99 (linear between the nearest ranks) and the max, in the values' unit."""
    if len(values) < 2:
        return {**{f"p{p}": float("nan") for p in wanted}, "max": max(values, default=math.nan)}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {**{f"p{p}": cuts[p - 1] for p in wanted}, "max": max(values)}


# --------------------------------------------------------------------------- servers


@contextmanager
def dovecot_scratch(prefix: str, keep: Callable[[], bool] = lambda: False) -> Iterator[Dovecot]:
    """A scratch directory with a private Dovecot in it; both gone afterwards (unless
    `keep()` says to keep the directory for a look). Dovecot.directory.parent is the
    scratch directory."""
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    scratch.chmod(0o755)  # Dovecot's mail processes run as another uid
    dovecot = Dovecot(scratch / "dovecot")
    dovecot.start()
    try:
        yield dovecot
    finally:
        dovecot.stop()
        if keep():
            print(f"kept {scratch} for a look (daemon and sink logs per run)")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


def append_mails(account: ImapAccount, raws: Iterable[bytes], chunk: int = 200) -> None:
    """APPEND messages, `chunk` per IMAP connection."""
    batch: list[bytes] = []
    for raw in raws:
        batch.append(raw)
        if len(batch) == chunk:
            account.append(*batch)
            batch = []
    if batch:
        account.append(*batch)


@dataclass(frozen=True)
class Notification:
    """One line of the sink's log."""

    message_id: str
    recipients: str
    subject: str
    in_reply_to: str  # the customer's Message-ID, without <>
    received: float  # Unix time


class SinkProcess:
    """The SMTP sink (bench/smtp_sink.py) as a process of its own: it outlives every
    daemon that is killed."""

    def __init__(self, workdir: Path, delay: float = 0.0, name: str = "sink.log") -> None:
        self.port = free_port()
        self.log = workdir / name
        self._delay = delay
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> SinkProcess:
        self._process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "smtp_sink.py"),
             str(self.port), str(self.log), str(self._delay)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            raise BenchError("the SMTP sink did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.communicate(timeout=10)

    def lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []

    def count(self) -> int:
        return len(self.lines())

    def message_ids(self) -> list[str]:
        return [line.split("\t", 1)[0].strip().strip("<>") for line in self.lines()]

    def notifications(self) -> list[Notification]:
        out = []
        for line in self.lines():
            mid, recipients, subject, in_reply_to, received = line.split("\t")
            out.append(
                Notification(
                    mid.strip().strip("<>"),
                    recipients,
                    subject,
                    in_reply_to.strip().strip("<>"),
                    float(received),
                )
            )
        return out


async def open_inbox(account: ImapAccount) -> tuple[aioimaplib.IMAP4, list[int]]:
    """A bare aioimaplib client logged in to `account` with INBOX selected, and the
    UIDs there in order (the ceiling's and the floor's start)."""
    client = aioimaplib.IMAP4(host=account.host, port=account.port, timeout=120)
    await client.wait_hello_from_server()
    await client.login(account.username, account.password)
    await client.select("INBOX")
    response = await client.uid_search("UID 1:*")
    return client, sorted(int(t) for t in response.lines[0].split())


# --------------------------------------------------------------------------- databases


@contextmanager
def scratch_database(backend: str, workdir: Path, prefix: str = "tg_bench") -> Iterator[str]:
    """A fresh, migrated database: a SQLite file in workdir, or a PostgreSQL database of
    its own on TEST_DATABASE_URL's server, dropped afterwards."""
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{workdir}/gateway.db"
        asyncio.run(migrate_to_head(url))
        yield url
        return
    if backend != "postgresql":
        raise SystemExit(f"unknown database {backend!r}: sqlite or postgresql")
    with scratch_pg_database(prefix) as url:
        yield url


class Probe:
    """Reads the gateway's database from outside the daemon: its own engine and loop
    (one Probe per thread)."""

    def __init__(self, url: str) -> None:
        self._runner = asyncio.Runner()
        # Plain engine, not the gateway's: that one takes SQLite's write lock (BEGIN
        # IMMEDIATE) for every transaction, and these are reads (WAL: never blocking).
        self.engine: AsyncEngine = create_async_engine(url)

    def __enter__(self) -> Probe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._runner.run(self.engine.dispose())
        self._runner.close()

    def run(self, work: Callable[[], Any]) -> Any:
        """Run a coroutine function on the probe's loop."""
        return self._runner.run(work())

    def scalar(self, stmt: Any) -> int:
        async def run() -> int:
            async with self.engine.connect() as conn:
                return int((await conn.execute(stmt)).scalar_one() or 0)

        return self.run(run)

    def rows(self, stmt: Any) -> list[Any]:
        async def run() -> list[Any]:
            async with self.engine.connect() as conn:
                return list((await conn.execute(stmt)).all())

        return self.run(run)

    def count(self, model: Any) -> int:
        return self.scalar(select(func.count()).select_from(model))

    def inbound(self) -> int:
        return self.count(InboundMessage)

    def tickets(self) -> int:
        return self.count(Ticket)

    def quarantined(self) -> int:
        return self.count(QuarantinedMessage)

    def committed(self) -> int:
        """IMAP messages taken in so far (committed with their UID ledger row)."""
        return self.count(MailboxUid)

    def unacked(self) -> int:
        return self.scalar(
            select(func.count()).select_from(MailboxUid).where(MailboxUid.acked.is_(False))
        )

    def waiting(self) -> int:
        """Outbox rows the relay still has to act on."""
        return self.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.state.in_(OUTBOX_WAITING_STATES))
        )


# --------------------------------------------------------------------------- the daemon


def daemon_config(
    url: str,
    sink_port: int,
    mailboxes: Sequence[dict[str, Any]],
    *,
    team_notices: bool = False,
    limits: bool = False,
    outbound_batch: int | None = 500,
) -> dict[str, Any]:
    """The config of a benchmarked daemon: the test settings, notifications over SMTP to
    the sink; without team notices (every mail then causes exactly one notification)
    and without rate limits unless asked for."""
    config = settings_dict(url, sink_port=sink_port, mailboxes=list(mailboxes))
    if outbound_batch is not None:
        config["outbound"]["batch_size"] = outbound_batch
    if not team_notices:
        config["teams"] = [{**team, "notify": []} for team in config["teams"]]
    if not limits:
        config["limits"] = dict(NO_RATE_LIMITS)
    return config


def bench_mailbox(account: ImapAccount, name: str = "desk", **extra: Any) -> dict[str, Any]:
    return imap_mailbox(account, name=name, **extra)


def write_config(workdir: Path, config: dict[str, Any], name: str = "config.toml") -> Path:
    path = workdir / name
    path.write_text(to_toml(config))
    return path


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a gateway process: this tree's gateway package first."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **extra}


def run_cli(
    workdir: Path, *args: str, config: str = "config.toml", profile: Path | None = None
) -> tuple[float, float, str]:
    """Run the CLI once and wait; (wall seconds, the child's peak RSS in MiB, stdout)."""
    out_path, err_path = workdir / "cli.out", workdir / "cli.err"
    python = [sys.executable]
    if profile is not None and profile.suffix == ".pstats":
        python += ["-m", "cProfile", "-o", str(profile)]
    elif profile is not None:
        python += ["-m", "pyinstrument", "-r", "text", "-o", str(profile)]
    start = time.perf_counter()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(
            [*python, "-m", "gateway", "--config", config, *args],
            cwd=workdir,
            stdout=out,
            stderr=err,
            env=child_env(),
        )
        _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        failed = f"ticket-gateway {' '.join(args)} failed ({code})"
        raise BenchError(f"{failed}:\n{err_path.read_text()}")
    cpu = f"cpu user {usage.ru_utime:.2f}s sys {usage.ru_stime:.2f}s"
    print(f"{' '.join(args)}: {cpu} wall {wall:.2f}s", file=sys.stderr)
    return wall, usage.ru_maxrss / 1024, out_path.read_text()


def start_daemon(
    workdir: Path,
    log: Path,
    label: str,
    *,
    args: Sequence[str] = ("run",),
    config: str = "config.toml",
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`ticket-gateway run` (or `args`) on workdir/config; its output appended to `log`."""
    with log.open("ab") as out:
        out.write(f"===== {label} =====\n".encode())
        out.flush()
        return subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", config, *args],
            cwd=workdir,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env or child_env(),
        )


def log_tail(log: Path, lines: int = 40) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_for(
    condition: Callable[[], bool],
    what: str,
    *,
    within: float,
    daemons: Sequence[subprocess.Popen[bytes]] = (),
    log: Path | None = None,
    interval: float = 0.005,
) -> None:
    """Poll `condition`; raise BenchError if a daemon exits or `within` s pass."""
    deadline = time.monotonic() + within
    while not condition():
        for daemon in daemons:
            if daemon.poll() is not None:
                tail = log_tail(log) if log else ""
                raise BenchError(
                    f"daemon pid {daemon.pid} exited with {daemon.returncode} while "
                    f"waiting for {what}\n{tail}"
                )
        if time.monotonic() > deadline:
            tail = log_tail(log) if log else ""
            raise BenchError(f"no progress for {within:.0f}s waiting for {what}\n{tail}")
        time.sleep(interval)


def stop_daemon(daemon: subprocess.Popen[bytes], grace: float = 15.0) -> tuple[int | None, float]:
    """SIGTERM by its pid; (exit code, or None if it did not exit within `grace` s and
    was killed; seconds it took)."""
    started = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    try:
        code: int | None = daemon.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
        code = None
    return code, time.monotonic() - started


def kill_daemon(daemon: subprocess.Popen[bytes]) -> None:
    daemon.kill()
    daemon.wait()


@contextmanager
def reaped(daemons: list[subprocess.Popen[bytes]]) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Whatever happens, no daemon started into `daemons` outlives the block."""
    try:
        yield daemons
    finally:
        for daemon in daemons:
            if daemon.poll() is None:
                kill_daemon(daemon)


class NotifySocket:
    """A systemd-style notify socket: pass env() to the daemon, then wait for READY=1."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "notify.sock"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(self.path))
        self.seen: list[tuple[float, str]] = []

    def env(self) -> dict[str, str]:
        return child_env(NOTIFY_SOCKET=str(self.path))

    def wait(
        self,
        state: str,
        daemon: subprocess.Popen[bytes],
        log: Path | None = None,
        within: float = 60.0,
    ) -> float:
        """time.monotonic() when the daemon sent `state`; BenchError if it exits first."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if daemon.poll() is not None:
                tail = log_tail(log) if log else ""
                raise BenchError(f"daemon exited with {daemon.returncode} before {state}\n{tail}")
            self._sock.settimeout(0.1)
            with suppress(TimeoutError):
                message = self._sock.recv(4096).decode()
                self.seen.append((time.monotonic(), message))
                if message == state:
                    return self.seen[-1][0]
        raise BenchError(f"no {state} from the daemon within {within:.0f}s")

    def close(self) -> None:
        """Stop listening: the daemon's later messages fail quietly (it ignores that)."""
        self._sock.close()
        self.path.unlink(missing_ok=True)


def start_ready(
    workdir: Path, log: Path, label: str, daemons: list[subprocess.Popen[bytes]]
) -> tuple[subprocess.Popen[bytes], float]:
    """`run` with a notify socket, added to `daemons`; (the daemon, seconds from exec to
    READY=1)."""
    notify = NotifySocket(workdir)
    try:
        execed = time.monotonic()
        daemon = start_daemon(workdir, log, label, env=notify.env())
        daemons.append(daemon)
        return daemon, notify.wait("READY=1", daemon, log) - execed
    finally:
        notify.close()


# --------------------------------------------------------------------------- memory


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB, from /proc/PID/status."""
    fields: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024  # kB
    return fields["VmRSS"], fields["VmHWM"]


def children_rss_mib(pid: int) -> float:
    """VmRSS of a process's children (a relay process of its own), in MiB."""
    total = 0.0
    for tasks in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in tasks.read_text().split():
            with suppress(FileNotFoundError, ProcessLookupError, KeyError):
                total += memory_mib(int(child))[0]
    return total


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) clock ticks of all cores since boot, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def cpu_busy_since(start: tuple[int, int]) -> float:
    """The machine's CPU use since `start` (cpu_jiffies()), 0..1 over all cores."""
    busy, total = cpu_jiffies()
    return (busy - start[0]) / max(1, total - start[1])


class RssSampler:
    """VmRSS of a process every `interval` s in a thread, while the block runs."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (monotonic, MiB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with suppress(FileNotFoundError, ProcessLookupError, KeyError):
                self.samples.append((time.monotonic(), memory_mib(self.pid)[0]))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float:
        return max((mib for _t, mib in self.samples), default=math.nan)
