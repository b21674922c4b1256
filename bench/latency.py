"""Latency with IMAP IDLE: APPEND -> ticket committed, APPEND -> notification received.

For each database (SQLite, PostgreSQL):
  1. a private Dovecot, the SMTP sink process and a fresh database; K seed mails wait
     in the mailbox;
  2. `ticket-gateway run` (the daemon, IDLE on one mailbox) starts as a real process
     with NOTIFY_SOCKET; the bench waits for READY=1, then until the seeds are taken in
     and notified (so the daemon has logged in and is idling), then one second more;
  3. N generated mails (bench/mailgen.py: new requests and replies to the seeds) are
     APPENDed one at a time at a fixed rate over one IMAP connection; each APPEND's
     completion is recorded (time.time(): the daemon runs on the same clock). Each
     mail is also APPENDed to a control mailbox right after, where a bare IDLE client
     notes when the server announces it: the server's own share of the latency;
  4. meanwhile a thread polls inbound_messages every --poll-ms for rows it has not seen;
  5. when every mail is taken in and notified, the daemon gets SIGTERM (by its pid) and
     must exit 0.
Per message, from the APPEND's completion (the control mailbox: from its own APPEND):
  - the server alone: when the bare IDLE client got `* N EXISTS` for it (Dovecot holds
    IDLE notifications back up to 500 ms to gather changes);
  - taken in: inbound_messages.received_at, which the daemon stamps when the message's
    transaction starts (after fetch and parse), so a lower bound of the commit;
  - committed: when the polling thread first saw the row (an upper bound: at most one
    poll interval after the commit);
  - notified: when the sink received the notification whose In-Reply-To is the mail.
p50/p90/p99/max are printed (and appended as JSON lines to --out), never asserted.

Run from the project root:  .venv/bin/python bench/latency.py [--n 300] [--rate 5]
Needs root (for the private Dovecot) and, for PostgreSQL, TEST_DATABASE_URL's server.
"""

from __future__ import annotations

import argparse
import socket
import sys
import threading
import time
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from bench.harness import (
    Probe,
    SinkProcess,
    append_json,
    bench_mailbox,
    bench_parser,
    daemon_config,
    describe,
    dovecot_scratch,
    machine,
    memory_mib,
    percentiles,
    reaped,
    scratch_database,
    start_ready,
    stop_daemon,
    wait_for,
    write_config,
)
from bench.mailgen import GeneratedMail, batch_mails, seed_mails
from gateway.store.models import InboundMessage
from tests.support.dovecot import Dovecot, ImapAccount


class RowWatcher(threading.Thread):
    """Polls inbound_messages for new rows; the time each Message-ID was first seen."""

    def __init__(self, url: str, interval: float) -> None:
        super().__init__(daemon=True)
        self._url = url
        self._interval = interval
        self._halt = threading.Event()
        self.first_seen: dict[str, float] = {}
        self.polls = 0

    def run(self) -> None:
        last = 0
        table = InboundMessage.__table__
        with Probe(self._url) as probe:
            while not self._halt.is_set():
                rows = probe.rows(
                    select(table.c.id, table.c.message_id)
                    .where(table.c.id > last)
                    .order_by(table.c.id)
                )
                seen = time.time()
                self.polls += 1
                for row in rows:
                    last = row.id
                    self.first_seen.setdefault((row.message_id or "").strip("<>"), seen)
                self._halt.wait(self._interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


class IdleWatcher(threading.Thread):
    """A bare IMAP IDLE client: when the server announced each message (`* N EXISTS`),
    so the server's own share of the latency is known."""

    def __init__(self, account: ImapAccount) -> None:
        super().__init__(daemon=True)
        self._sock = socket.create_connection((account.host, account.port), timeout=10)
        self._buffer = b""
        self._halt = threading.Event()
        self.announced: dict[int, float] = {}  # sequence number -> Unix time
        self._line()  # greeting
        self._command(b"a1", f'LOGIN "{account.username}" "{account.password}"'.encode())
        self.exists = 0
        for line in self._command(b"a2", b"SELECT INBOX"):
            if line.endswith(b" EXISTS"):
                self.exists = int(line.split()[1])
        self._sock.sendall(b"a3 IDLE\r\n")
        if not self._line().startswith(b"+"):
            raise RuntimeError("IDLE refused")
        self._sock.settimeout(0.1)

    def _line(self) -> bytes:
        while b"\r\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise ConnectionError("IMAP server closed the connection")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\r\n", 1)
        return line

    def _command(self, tag: bytes, command: bytes) -> list[bytes]:
        self._sock.sendall(tag + b" " + command + b"\r\n")
        lines = []
        while not (line := self._line()).startswith(tag + b" "):
            lines.append(line)
        if not line.startswith(tag + b" OK"):
            raise RuntimeError(line.decode(errors="replace"))
        return lines

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                line = self._line()
            except TimeoutError:
                continue
            if line.startswith(b"* ") and line.endswith(b" EXISTS"):
                now, count = time.time(), int(line.split()[1])
                for sequence in range(self.exists + 1, count + 1):
                    self.announced[sequence] = now
                self.exists = max(self.exists, count)

    def stop(self) -> None:
        self._halt.set()
        self.join()
        with suppress(OSError):
            self._sock.settimeout(2)
            self._sock.sendall(b"DONE\r\n")
            self._command(b"a4", b"LOGOUT")
        self._sock.close()


def append_paced(
    accounts: list[ImapAccount], mails: list[GeneratedMail], rate: float
) -> tuple[list[dict[str, float]], float]:
    """APPEND one message every 1/rate s to each account in turn, over one connection
    per account; (per account: Message-ID -> Unix time the APPEND completed, the
    largest delay behind schedule in s)."""
    clients = [account.client() for account in accounts]
    appended: list[dict[str, float]] = [{} for _ in accounts]
    behind = 0.0
    try:
        start = time.monotonic()
        for i, mail in enumerate(mails):
            due = start + i / rate
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            else:
                behind = max(behind, now - due)
            for client, times in zip(clients, appended, strict=True):
                status, detail = client.append("INBOX", "", None, mail.raw)
                times[mail.message_id] = time.time()
                if status != "OK":
                    raise RuntimeError(f"APPEND failed: {detail!r}")
    finally:
        for client in clients:
            client.logout()
    return appended, behind


def _ms(values: list[float]) -> dict[str, float]:
    return {k: round(v * 1000, 1) for k, v in percentiles(values).items()}


def measure(
    backend: str, args: argparse.Namespace, dovecot: Dovecot, scratch: Path
) -> dict[str, Any]:
    workdir = scratch / backend
    workdir.mkdir()
    account = dovecot.new_account()
    seeds = seed_mails(args.seeds)
    batch = batch_mails(args.n, seeds, datetime.now(UTC).year)
    total = args.seeds + args.n
    log = workdir / "daemon.log"
    with (
        scratch_database(backend, workdir) as url,
        SinkProcess(workdir) as sink,
        Probe(url) as probe,
        reaped([]) as daemons,
    ):
        mailbox = bench_mailbox(account, idle=True, fetch_batch=args.fetch_batch)
        write_config(workdir, daemon_config(url, sink.port, [mailbox]))
        account.append(*(m.raw for m in seeds))
        started = time.monotonic()
        daemon, ready = start_ready(workdir, log, f"latency {backend}", daemons)
        wait_for(
            lambda: probe.inbound() == args.seeds and sink.count() == args.seeds,
            "the seed mails taken in and notified",
            within=60,
            daemons=[daemon],
            log=log,
            interval=0.02,
        )
        warm = time.monotonic() - started
        time.sleep(1.0)  # back in IDLE
        rss_before = memory_mib(daemon.pid)[0]

        watcher = RowWatcher(url, args.poll_ms / 1000)
        # The server alone: a bare IDLE client on a mailbox of its own that gets the
        # same mail at the same moments (on the daemon's mailbox it would also be told
        # of the daemon's \Seen flags, which changes when it hears of new mail).
        control = dovecot.new_account()
        idler = IdleWatcher(control)
        watcher.start()
        idler.start()
        try:
            (appended, control_appended), behind = append_paced(
                [account, control], batch, args.rate
            )
            wait_for(
                lambda: probe.inbound() >= total and sink.count() >= total,
                "every mail taken in and notified",
                within=120,
                daemons=[daemon],
                log=log,
                interval=0.05,
            )
            time.sleep(2 * args.poll_ms / 1000)  # the watcher's last look
            wait_for(lambda: idler.exists >= args.n, "the bare client's last EXISTS", within=5)
        finally:
            watcher.stop()
            idler.stop()
        rss_after, hwm = memory_mib(daemon.pid)
        code, stop_s = stop_daemon(daemon)
        table = InboundMessage.__table__
        rows = probe.rows(select(table.c.message_id, table.c.received_at, table.c.outcome))
        quarantined = probe.quarantined()
        notices = sink.notifications()

    received_at = {(r.message_id or "").strip("<>"): r.received_at.timestamp() for r in rows}
    notified: dict[str, float] = {}
    for notice in notices:
        notified.setdefault(notice.in_reply_to, notice.received)
    moments = {
        "appended": appended,
        "taken_in": received_at,
        "committed": watcher.first_seen,
        "notified": notified,
    }
    mids = [m.message_id for m in batch]

    def between(start: dict[str, float], end: dict[str, float]) -> list[float]:
        return [end[m] - start[m] for m in mids if m in start and m in end]

    series = {key: _ms(between(moments[a], moments[b])) for key, (a, b, _) in ROWS.items()}
    # The control mailbox: message i is sequence number i + 1 there.
    announced = [
        idler.announced[i + 1] - control_appended[m.message_id]
        for i, m in enumerate(batch)
        if i + 1 in idler.announced
    ]
    series = {"server_announced_ms": _ms(announced), **series}
    counts = {key: len(between(appended, at)) for key, at in moments.items() if key != "appended"}
    counts["announced"] = len(announced)
    outcomes = [r.outcome for r in rows if (r.message_id or "").strip("<>") in appended]
    return {
        "bench": "latency",
        "backend": backend,
        "n": args.n,
        "rate_per_s": args.rate,
        "seeds": args.seeds,
        "poll_ms": args.poll_ms,
        "ready_s": round(ready, 2),
        "warm_s": round(warm, 2),
        "append_behind_max_ms": round(behind * 1000, 1),
        **series,
        "rss_mib": {"before": round(rss_before, 1), "after": round(rss_after, 1)},
        "hwm_mib": round(hwm, 1),
        "stop": {"exit": code, "seconds": round(stop_s, 2)},
        "check": {
            **counts,
            "tickets": outcomes.count("ticket"),
            "articles": outcomes.count("article"),
            "expected_new": sum(m.kind == "new" for m in batch),
            "quarantined": quarantined,
            "notifications": len(notices) - args.seeds,
        },
        "watcher_polls": watcher.polls,
    }


# Figure -> (from, to, what): moments per message, from the APPEND's completion on.
ROWS = {
    "taken_in_ms": ("appended", "taken_in", "taken in (received_at: its transaction starts)"),
    "committed_ms": ("appended", "committed", "committed (the row seen by a poll)"),
    "notified_ms": ("appended", "notified", "notification received by the sink"),
    "gateway_ms": ("taken_in", "notified", "taken in -> notified (not from the APPEND)"),
}


def _row(result: dict[str, Any], key: str) -> str:
    p = result[key]
    return f"{p['p50']:>7} {p['p90']:>7} {p['p99']:>7} {p['max']:>7}"


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=int, default=300, help="messages (default 300)")
    parser.add_argument("--rate", type=float, default=5.0, help="APPENDs per second (5)")
    parser.add_argument("--seeds", type=int, default=20, help="tickets made first (20)")
    parser.add_argument("--poll-ms", type=float, default=10.0, help="row watcher interval")
    args = parser.parse_args()

    backends = args.db.split(",")
    about = machine(backends)
    print(f"latency with IDLE: N={args.n} at {args.rate}/s, " + describe(about))
    print(f"{'ms after the APPEND completed':<70} {'p50':>7} {'p90':>7} {'p99':>7} {'max':>7}")
    with dovecot_scratch("tg-latency-") as dovecot:
        for backend in backends:
            result = {**about, **measure(backend, args, dovecot, dovecot.directory.parent)}
            append_json(args.out, result)
            what = "the server alone: EXISTS to a bare IDLE client"
            print(f"{backend:<10} {what:<59} {_row(result, 'server_announced_ms')}")
            for key, (_start, _end, what) in ROWS.items():
                print(f"{backend:<10} {what:<59} {_row(result, key)}")
            c = result["check"]
            complete = all(c[key] == args.n for key in ("announced", "taken_in", "notified"))
            complete = complete and c["committed"] == args.n
            print(
                f"{backend:<10} ready {result['ready_s']}s after exec, seeds done "
                f"{result['warm_s']}s; APPEND at most {result['append_behind_max_ms']} ms "
                f"behind schedule; RSS {result['rss_mib']} MiB (peak {result['hwm_mib']}); "
                f"SIGTERM: exit {result['stop']['exit']} in {result['stop']['seconds']}s; "
                f"check {'OK' if complete and c['quarantined'] == 0 else 'MISMATCH'} {c}"
            )


if __name__ == "__main__":
    main()
