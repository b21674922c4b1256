"""Scale-out on PostgreSQL: two daemons on one database, with a mailbox each or sharing one.

(a) Throughput. N generated mails (after K seed tickets) are taken in by
    - one `ticket-gateway run --once` process reading one mailbox of N mails;
    - two processes at once, each reading its own mailbox of N/2 mails;
    - one process reading both mailboxes of N/2 (the same work in one event loop).
    Wall time from starting the processes until the last one exits; by then every mail
    must be taken in and every notification received by the SMTP sink.
(b) One mailbox, two daemons. Both `ticket-gateway run` daemons are configured with the
    same mailbox; the mailbox lock (gateway/store/locks.py, an advisory lock) lets one
    read it while the other stands by and retries every --lock-retry seconds.
    - shared: N mails waiting, both started at once; wall time until all N are taken in
      and notified; then both get SIGTERM.
    - take-over: the same, but the reading daemon gets SIGTERM when N/2 are in; it must
      exit 0, and the other takes the mailbox over: seconds from the SIGTERM (and from
      the holder's exit) to the first message the other daemon commits.
    Checked every time: each mail taken in exactly once (N inbound rows, none recorded
    as a duplicate copy), one ticket per new request, no notification twice at the sink,
    nothing quarantined; which daemon took in how many (by their logs).
Figures are printed (and appended as JSON lines to --out), never asserted.

Run from the project root:  .venv/bin/python bench/scaleout.py [--n 2000]
Needs root (for the private Dovecot) and the PostgreSQL server at TEST_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select, text

from bench.harness import (
    BenchError,
    Probe,
    SinkProcess,
    append_json,
    append_mails,
    bench_mailbox,
    bench_parser,
    cpu_busy_since,
    cpu_jiffies,
    daemon_config,
    describe,
    dovecot_scratch,
    machine,
    reaped,
    run_cli,
    scratch_database,
    start_daemon,
    stop_daemon,
    wait_for,
    write_config,
)
from bench.mailgen import GeneratedMail, batch_mails, seed_mails
from gateway.store.models import InboundMessage
from tests.support.dovecot import Dovecot, ImapAccount

TAKEN_IN = ("created ref=", "appended ref=")  # a daemon's log line per message taken in


@dataclass
class Setup:
    """One measured situation: its own database, sink and mailboxes."""

    workdir: Path
    url: str
    sink: SinkProcess
    probe: Probe
    seeds: list[GeneratedMail]
    batch: list[GeneratedMail]

    @property
    def total(self) -> int:
        return len(self.seeds) + len(self.batch)

    def config(self, name: str, mailboxes: list[dict[str, Any]]) -> str:
        """Write a config file with these mailboxes; its name, for --config."""
        path = write_config(
            self.workdir, daemon_config(self.url, self.sink.port, mailboxes), f"{name}.toml"
        )
        return path.name

    def seed(self, account: ImapAccount, config: str) -> None:
        """The seed tickets, taken in by one `run --once` (untimed)."""
        account.append(*(m.raw for m in self.seeds))
        run_cli(self.workdir, "run", "--once", config=config)

    def done(self) -> bool:
        return self.probe.inbound() >= self.total and self.sink.count() >= self.total

    def check(self) -> dict[str, Any]:
        """Exactly once: inbound rows, tickets, notifications."""
        table = InboundMessage.__table__
        outcomes = Counter(r.outcome for r in self.probe.rows(select(table.c.outcome)))
        ids = self.sink.message_ids()
        answered = Counter(n.in_reply_to for n in self.sink.notifications())
        k = len(self.seeds)
        return {
            "inbound": sum(outcomes.values()) - k,
            "duplicate_rows": outcomes["duplicate"],
            "tickets_created": self.probe.tickets() - k,
            "expected_new": sum(m.kind == "new" for m in self.batch),
            "notifications": len(ids) - k,
            "notifications_twice": len(ids) - len(set(ids)),
            "mails_answered_twice": sum(1 for c in answered.values() if c > 1),
            "quarantined": self.probe.quarantined(),
        }


def check_ok(check: dict[str, Any], n: int) -> bool:
    return (
        check["inbound"] == n == check["notifications"]
        and check["tickets_created"] == check["expected_new"]
        and check["duplicate_rows"]
        == check["notifications_twice"]
        == check["mails_answered_twice"]
        == check["quarantined"]
        == 0
    )


@contextmanager
def setup(scratch: Path, name: str, args: argparse.Namespace) -> Iterator[Setup]:
    workdir = scratch / name
    workdir.mkdir()
    seeds = seed_mails(args.seeds)
    batch = batch_mails(args.n, seeds, datetime.now(UTC).year)
    with (
        scratch_database("postgresql", workdir, prefix="tg_scaleout") as url,
        SinkProcess(workdir) as sink,
        Probe(url) as probe,
    ):
        yield Setup(workdir, url, sink, probe, seeds, batch)


def taken_in_by(log: Path) -> int:
    text = log.read_text(errors="replace") if log.exists() else ""
    return sum(text.count(marker) for marker in TAKEN_IN)


# --------------------------------------------------------------------------- (a)


@dataclass
class Finished:
    code: int
    seconds: float  # from the start of the run
    cpu_s: float  # user + system
    samples: int = 0  # pg_stat_activity looks while it ran
    lock_waits: int = 0  # of which found a session of this database waiting for a lock
    waiting: Counter[str] | None = None  # what waited (lock kind: statement), per look


LOCK_WAITERS = text(
    "SELECT wait_event, left(regexp_replace(query, '\\s+', ' ', 'g'), 70) FROM pg_stat_activity "
    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
)


def wait_all(
    running: list[subprocess.Popen[bytes]], probe: Probe, deadline: float
) -> list[Finished]:
    """Wait for every process (os.wait4, for its CPU time), looking every 50 ms whether a
    session of the database waits for a lock (row locks between the daemons)."""
    started = time.monotonic()
    done: dict[int, Finished] = {}
    samples = waits = 0
    waiting: Counter[str] = Counter()
    while len(done) < len(running):
        if time.monotonic() > deadline:
            raise BenchError("the run --once processes did not finish in time")
        for proc in running:
            if proc.pid in done:
                continue
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                proc.returncode = os.waitstatus_to_exitcode(status)
                cpu_s = usage.ru_utime + usage.ru_stime
                done[pid] = Finished(proc.returncode, time.monotonic() - started, cpu_s)
        samples += 1
        waiters = probe.rows(LOCK_WAITERS)
        waits += bool(waiters)
        waiting.update(f"{kind}: {query}" for kind, query in waiters)
        time.sleep(0.05)
    for finished in done.values():
        finished.samples, finished.lock_waits, finished.waiting = samples, waits, waiting
    return [done[p.pid] for p in running]


def throughput(
    scratch: Path, dovecot: Dovecot, args: argparse.Namespace, processes: int, mailboxes: int
) -> dict[str, Any]:
    """`processes` x `run --once` over `mailboxes` mailboxes holding the N mails."""
    name = f"a-{processes}p{mailboxes}m"
    with setup(scratch, name, args) as s:
        accounts = [dovecot.new_account() for _ in range(mailboxes)]
        boxes = [
            bench_mailbox(a, name=f"box{i}", fetch_batch=args.fetch_batch)
            for i, a in enumerate(accounts)
        ]
        if processes == mailboxes:
            configs = [s.config(f"daemon{i}", [box]) for i, box in enumerate(boxes)]
        else:
            configs = [s.config("daemon0", boxes)]
        s.seed(accounts[0], s.config("seed", boxes[:1]))
        for i, account in enumerate(accounts):
            append_mails(account, (m.raw for m in s.batch[i::mailboxes]))
        logs = [s.workdir / f"daemon{i}.log" for i in range(len(configs))]
        with reaped([]) as running:
            cpu = cpu_jiffies()
            started = time.monotonic()
            for config, log in zip(configs, logs, strict=True):
                running.append(
                    start_daemon(s.workdir, log, name, args=("run", "--once"), config=config)
                )
            finished = wait_all(running, s.probe, started + args.timeout)
            busy = cpu_busy_since(cpu)
        wall = max(f.seconds for f in finished)
        complete = s.done()
        return {
            "bench": "scaleout",
            "part": "a",
            "processes": processes,
            "mailboxes": mailboxes,
            "n": args.n,
            "seeds": args.seeds,
            "wall_s": round(wall, 2),
            "first_exit_s": round(min(f.seconds for f in finished), 2),
            "msgs_per_s": round(args.n / wall, 1),
            "exit_codes": [f.code for f in finished],
            "cpu_s": [round(f.cpu_s, 2) for f in finished],
            "cpu_ms_per_msg": round(1000 * sum(f.cpu_s for f in finished) / args.n, 2),
            "machine_cpu_busy": round(busy, 2),
            "lock_wait_share": round(finished[0].lock_waits / max(1, finished[0].samples), 2),
            "lock_waiters": dict((finished[0].waiting or Counter()).most_common(5)),
            "taken_in_by": [taken_in_by(log) for log in logs],
            "complete_at_exit": complete,
            "check": s.check(),
        }


# --------------------------------------------------------------------------- (b)


def takeover_after_sigterm(
    holder: subprocess.Popen[bytes], standby_log: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """SIGTERM the reading daemon by its pid; seconds until it exited and until the
    other daemon took in its first message (its log line, written in the message's
    transaction). The holder gives the lock up when its reader stops, before its relay
    has sent the last notifications, so the other may start before the holder exits."""
    term = time.monotonic()
    holder.send_signal(signal.SIGTERM)
    exited = resumed = None
    while exited is None or resumed is None:
        now = time.monotonic()
        if exited is None and holder.poll() is not None:
            exited = now
        if resumed is None and taken_in_by(standby_log) > 0:
            resumed = now
        if now - term > args.timeout:
            raise BenchError("no take-over: the other daemon took nothing in")
        time.sleep(0.01)
    return {
        "holder_stop": {"exit": holder.returncode, "seconds": round(exited - term, 2)},
        "takeover_s": round(resumed - term, 2),
    }


def shared(
    scratch: Path, dovecot: Dovecot, args: argparse.Namespace, takeover: bool
) -> dict[str, Any]:
    """Two `run` daemons with the same mailbox; with `takeover`, the reader gets SIGTERM
    half-way and the other must take the mailbox over."""
    name = f"b-takeover-{time.monotonic_ns()}" if takeover else "b-shared"
    with setup(scratch, name, args) as s:
        account = dovecot.new_account()
        box = bench_mailbox(
            account, name="desk", fetch_batch=args.fetch_batch, lock_retry_seconds=args.lock_retry
        )
        config = s.config("daemon", [box])
        s.seed(account, config)
        append_mails(account, (m.raw for m in s.batch))
        logs = {label: s.workdir / f"daemon-{label}.log" for label in ("A", "B")}
        result: dict[str, Any] = {"bench": "scaleout", "part": "b", "takeover": takeover}
        with reaped([]) as running:
            started = time.monotonic()
            daemons: dict[str, subprocess.Popen[bytes]] = {}
            for label, log in logs.items():
                daemons[label] = start_daemon(s.workdir, log, f"{name} {label}", config=config)
                running.append(daemons[label])
            wait_for(
                lambda: any("standing by" in _text(log) for log in logs.values()),
                "one daemon standing by",
                within=30,
                daemons=running,
            )
            standby = next(label for label, log in logs.items() if "standing by" in _text(log))
            holder = "B" if standby == "A" else "A"
            result.update(holder=holder, standby=standby)
            if takeover:
                half = len(s.seeds) + args.n // 2
                wait_for(lambda: s.probe.inbound() >= half, "N/2 taken in", within=args.timeout)
                result["taken_in_at_sigterm"] = s.probe.inbound() - len(s.seeds)
                result.update(takeover_after_sigterm(daemons[holder], logs[standby], args))
            wait_for(
                s.done,
                "every mail taken in and notified",
                within=args.timeout,
                daemons=[d for d in running if d.returncode is None],
                interval=0.02,
            )
            wall = time.monotonic() - started
            stops = {label: stop_daemon(d) for label, d in daemons.items() if d.returncode is None}
        result.update(
            n=args.n,
            seeds=args.seeds,
            lock_retry_s=args.lock_retry,
            wall_s=round(wall, 2),
            msgs_per_s=round(args.n / wall, 1),
            stops={k: {"exit": c, "seconds": round(t, 2)} for k, (c, t) in stops.items()},
            taken_in_by={label: taken_in_by(log) for label, log in logs.items()},
            check=s.check(),
        )
        return result


def _text(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


# --------------------------------------------------------------------------- the script


def main() -> None:
    parser = bench_parser(__doc__, databases=False)
    parser.add_argument("--n", type=int, default=2000, help="messages per run (default 2000)")
    parser.add_argument("--seeds", type=int, default=50, help="tickets created beforehand")
    parser.add_argument(
        "--lock-retry", type=float, default=1.0, help="lock_retry_seconds of the mailbox (1)"
    )
    parser.add_argument("--parts", default="a,b", help="a (throughput), b (one mailbox) or both")
    parser.add_argument("--takeovers", type=int, default=1, help="take-over runs in (b) (1)")
    parser.add_argument("--timeout", type=float, default=600, help="give up after this, s")
    args = parser.parse_args()

    about = machine(["postgresql"])
    print(f"scale-out on PostgreSQL: N={args.n}, K={args.seeds}, " + describe(about))
    parts = args.parts.split(",")
    with dovecot_scratch("tg-scaleout-") as dovecot:
        scratch = dovecot.directory.parent
        if "a" in parts:
            base = None
            for processes, mailboxes in ((1, 1), (2, 2), (1, 2)):
                result = {**about, **throughput(scratch, dovecot, args, processes, mailboxes)}
                append_json(args.out, result)
                base = base or result["wall_s"]
                ok = check_ok(result["check"], args.n) and result["complete_at_exit"]
                print(
                    f"(a) {processes} process(es), {mailboxes} mailbox(es): wall "
                    f"{result['wall_s']}s (first exit {result['first_exit_s']}s) "
                    f"{result['msgs_per_s']}/s, x{base / result['wall_s']:.2f}; exit "
                    f"{result['exit_codes']}; taken in per process {result['taken_in_by']}; "
                    f"CPU s {result['cpu_s']} ({result['cpu_ms_per_msg']} ms/msg), machine "
                    f"{result['machine_cpu_busy']:.0%} busy, lock waits in "
                    f"{result['lock_wait_share']:.0%} of looks; "
                    f"check {'OK' if ok else 'MISMATCH'} {result['check']}"
                )
        if "b" in parts:
            for takeover in (False, *[True] * args.takeovers):
                result = {**about, **shared(scratch, dovecot, args, takeover)}
                append_json(args.out, result)
                ok = check_ok(result["check"], args.n)
                line = (
                    f"(b) one mailbox, two daemons{', reader SIGTERMed at N/2' if takeover else ''}"
                    f": wall {result['wall_s']}s {result['msgs_per_s']}/s; reader "
                    f"{result['holder']}, standing by {result['standby']}; taken in "
                    f"{result['taken_in_by']}; stops {result['stops']}"
                )
                if takeover:
                    line += (
                        f"; reader SIGTERMed after {result['taken_in_at_sigterm']}: exit "
                        f"{result['holder_stop']['exit']} in {result['holder_stop']['seconds']}s; "
                        f"the other took in its first {result['takeover_s']}s after SIGTERM"
                    )
                print(f"{line}; check {'OK' if ok else 'MISMATCH'} {result['check']}")


if __name__ == "__main__":
    main()
