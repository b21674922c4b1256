"""Crash test: SIGKILL the daemon at random moments, restart it, account for every mail.

One run, per database:
  1. start a private Dovecot, an SMTP sink process and a fresh database (a SQLite file,
     or a uniquely named PostgreSQL database that is dropped afterwards);
  2. load most of N generated mails into the mailbox (new matters, follow-ups by the
     same customer that answer an earlier mail of the batch, auto-replies, and mails
     without a sender that quarantine); the rest arrives in portions while later
     daemons run;
  3. start `ticket-gateway run` as a real process and kill it with SIGKILL K times, at
     moments picked by a seeded random.Random and triggered by progress: during
     start-up, after k more messages were committed (UID ledger), right after the sink
     received k more notifications (the sink holds back its 250 a little, so these
     kills land inside the SMTP transaction), or while idle; restart it each time;
  4. let the last daemon finish, SIGTERM it (it must exit 0), then account: every
     Message-ID exactly once as ticket / article / ignored-with-reason / quarantine, one
     ticket per new matter, the right articles and notifications per ticket, every
     outbox row `sent` or `unknown` (in doubt: the relay died between DATA and 250),
     no Message-ID twice in the sink, every `sent` row in the sink, nothing unread.

Run from the project root (needs root for the private Dovecot and, for PostgreSQL, the
server at TEST_DATABASE_URL, default postgresql+asyncpg://postgres@127.0.0.1:5432/test):

    .venv/bin/python bench/crash.py --n 1000 --kills 20 --db sqlite,postgresql --seed 1

It prints one summary line per database (and every problem found), appends a JSON line
per database to --out, and exits 1 when anything was lost or doubled (the scratch
directory with the daemon and sink logs is then kept). The same harness runs in
tests/e2e/test_crash.py with a smaller N.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import select

from bench import harness
from bench.harness import (
    BenchError,
    dovecot_scratch,
    kill_daemon,
    scratch_database,
    start_daemon,
    wait_for,
)
from bench.mailgen import _mail
from gateway.store.models import (
    Article,
    InboundMessage,
    MailboxUid,
    OutboxMessage,
    QuarantinedMessage,
    Ticket,
)
from tests.support.dovecot import Dovecot, ImapAccount
from tests.support.settings import TEAMS, imap_mailbox

MAILBOX = "desk"
NOTIFYING_TEAMS = {t["address"] for t in TEAMS if t.get("notify")}
# Knobs of the daemon under test: short leases, so a dead relay's rows come back (or
# turn `unknown`) within seconds; a short lock retry, so a restarted daemon on
# PostgreSQL takes the mailbox as soon as the killed one's connection is gone.
SMTP_TIMEOUT_S = 1.0  # commands and the reply to DATA; the `sending` lease is 4x this
CLAIM_S = 1.0
SHUTDOWN_S = 5.0


CrashTestError = BenchError  # the run could not go on: a daemon died, or stalled


# --------------------------------------------------------------------------- the mail


@dataclass(frozen=True)
class CrashMail:
    raw: bytes
    message_id: str
    kind: str  # new | followup | auto | quarantine
    thread: str | None  # new and followup: the Message-ID of the matter's first mail
    team_notice: bool = False  # a followup on a ticket of a team with notify addresses

    @property
    def notifications(self) -> int:
        """Outbox rows this mail causes: `created`, or `info_added` (+ `team_notice`)."""
        if self.kind == "new":
            return 1
        if self.kind == "followup":
            return 1 + self.team_notice
        return 0


def _prepend_header(raw: bytes, header: bytes) -> bytes:
    return header + b"\r\n" + raw


def crash_mails(n: int, seed: int = 11, *, quarantined: int | None = None) -> list[CrashMail]:
    """N deterministic, realistic mails (bench/mailgen's shapes), each its own Message-ID.

    About 60% new matters, 28% follow-ups by the same customer answering the latest
    mail of one of their earlier matters (In-Reply-To and References), 10% auto-replies
    (Auto-Submitted: auto-replied, ignored with a reason) and `quarantined` mails with
    no sender at all (1 per 50, at least 1), which quarantine at the parse stage.
    """
    rng = random.Random(seed)
    count_q = quarantined if quarantined is not None else max(1, n // 50)
    q_at = {round((k + 1) * n / (count_q + 1)) for k in range(count_q)}
    out: list[CrashMail] = []
    # per matter: first Message-ID, latest Message-ID, sender, subject, notifying team
    matters: list[dict[str, Any]] = []
    for i in range(n):
        roll = rng.random()
        if i in q_at:
            mid = f"q{i}.{rng.getrandbits(32):x}@nowhere.example"
            raw = (
                f"Message-ID: <{mid}>\r\nSubject: Zonder afzender {i}\r\n"
                f"Date: Mon, 02 Mar 2026 09:00:00 +0100\r\n\r\nGeen From, geen Sender.\r\n"
            ).encode()
            out.append(CrashMail(raw, mid, "quarantine", None))
        elif matters and roll < 0.28:
            matter = rng.choice(matters)
            raw, mid, _subject, _sender = _mail(
                rng,
                i,
                subject=f"Re: {matter['subject']}",
                in_reply_to=matter["last"],
                prefix="f",
                sender=matter["sender"],
            )
            matter["last"] = mid
            out.append(CrashMail(raw, mid, "followup", matter["first"], matter["notifying"]))
        elif i and roll < 0.38:
            raw, mid, _subject, _sender = _mail(rng, i, subject="Afwezig: automatisch antwoord")
            raw = _prepend_header(raw, b"Auto-Submitted: auto-replied")
            out.append(CrashMail(raw, mid, "auto", None))
        else:
            raw, mid, subject, sender = _mail(rng, i, prefix="n")
            to = str(message_from_bytes(raw, policy=default)["To"]).lower()
            matters.append(
                {
                    "first": mid,
                    "last": mid,
                    "sender": sender,
                    "subject": subject,
                    "notifying": to in NOTIFYING_TEAMS,
                }
            )
            out.append(CrashMail(raw, mid, "new", mid))
    return out


# --------------------------------------------------------------------------- the sink


class SinkProcess(harness.SinkProcess):
    """The sink process; it holds back its 250 for 10 ms by default, so that kills in
    the relay land inside the SMTP transaction."""

    def __init__(self, workdir: Path, delay: float = 0.01) -> None:
        super().__init__(workdir, delay)


# --------------------------------------------------------------------------- the database


@dataclass
class Snapshot:
    inbound: list[Any]
    quarantine: list[Any]
    tickets: list[Any]
    articles: list[Any]
    outbox: list[Any]
    ledger: list[Any]


class Probe(harness.Probe):
    """The harness's probe, and a snapshot of everything the accounting needs."""

    def snapshot(self) -> Snapshot:
        async def run() -> Snapshot:
            async with self.engine.connect() as conn:

                async def rows(stmt: Any) -> list[Any]:
                    return list((await conn.execute(stmt)).all())

                inb, quar, out = InboundMessage, QuarantinedMessage, OutboxMessage
                return Snapshot(
                    inbound=await rows(
                        select(inb.id, inb.message_id, inb.outcome, inb.reason, inb.ticket_id)
                    ),
                    quarantine=await rows(
                        select(quar.id, quar.stage, quar.state, quar.attempts, quar.raw)
                    ),
                    tickets=await rows(select(Ticket.id, Ticket.reference)),
                    articles=await rows(
                        select(Article.ticket_id, Article.direction, Article.message_id)
                    ),
                    outbox=await rows(
                        select(out.id, out.ticket_id, out.event, out.message_id, out.state)
                    ),
                    ledger=await rows(select(MailboxUid.uid, MailboxUid.outcome, MailboxUid.acked)),
                )

        return self.run(run)


# --------------------------------------------------------------------------- the daemon


def write_config(
    workdir: Path,
    url: str,
    account: ImapAccount,
    sink_port: int,
    *,
    fetch_batch: int = 100,
    processed_folder: str = "",
) -> None:
    mailbox = imap_mailbox(
        account,
        name=MAILBOX,
        fetch_batch=fetch_batch,
        lock_retry_seconds=0.5,
        reconnect_max_seconds=2,
        processed_folder=processed_folder,
    )
    config = harness.daemon_config(
        url, sink_port, [mailbox], team_notices=True, outbound_batch=None
    )
    config["outbound"].update(
        timeout_seconds=SMTP_TIMEOUT_S,
        data_timeout_seconds=SMTP_TIMEOUT_S,
        claim_seconds=CLAIM_S,
        poll_seconds=0.5,
    )
    config["daemon"] = {"shutdown_seconds": SHUTDOWN_S}
    harness.write_config(workdir, config)


def stop_daemon(daemon: subprocess.Popen[bytes]) -> tuple[int | None, float]:
    """SIGTERM; (exit code or None if it did not exit in time, seconds it took)."""
    return harness.stop_daemon(daemon, grace=SHUTDOWN_S + 10)


def append_mails(account: ImapAccount, mails: Sequence[CrashMail]) -> None:
    harness.append_mails(account, (m.raw for m in mails))


# --------------------------------------------------------------------------- accounting


@dataclass
class Report:
    backend: str
    n: int
    kills: int
    seed: int
    accounted: int = 0
    lost: list[str] = field(default_factory=list)  # no row at all
    doubled: list[str] = field(default_factory=list)  # more than one row
    misplaced: list[str] = field(default_factory=list)  # wrong outcome or ticket
    duplicate_copies: int = 0  # inbound rows with outcome `duplicate`
    tickets: int = 0
    expected_tickets: int = 0
    duplicate_tickets: int = 0
    articles: int = 0
    expected_articles: int = 0
    duplicate_articles: int = 0
    lost_articles: int = 0
    notifications: int = 0  # outbox rows
    expected_notifications: int = 0
    outbox_mismatch: list[str] = field(default_factory=list)
    missing_outbox_rows: int = 0  # notifications never decided
    extra_outbox_rows: int = 0  # notifications decided twice
    delivered: int = 0  # messages the sink received
    duplicate_notifications: int = 0  # extra copies in the sink
    lost_notifications: int = 0  # `sent` rows the sink never saw
    stray_notifications: int = 0  # sink messages without an outbox row
    in_doubt: int = 0  # `unknown` rows
    in_doubt_delivered: int = 0  # of which the sink did receive a copy
    unfinished: dict[str, int] = field(default_factory=dict)  # rows not sent / unknown
    unseen: int = 0
    unacked: int = 0
    ledger_rows: int = 0
    quarantine_attempts: list[int] = field(default_factory=list)
    stop_code: int | None = None
    stop_seconds: float = 0.0
    wall_seconds: float = 0.0
    restarts: int = 0
    moments: list[str] = field(default_factory=list)
    tracebacks: int = 0  # in the daemons' logs
    first_traceback: str = ""
    standbys: int = 0  # restarts that found the mailbox lock still held (PostgreSQL)

    @property
    def duplicates(self) -> int:
        return (
            len(self.doubled)
            + self.duplicate_tickets
            + self.duplicate_articles
            + self.duplicate_notifications
            + self.extra_outbox_rows
        )

    @property
    def lost_total(self) -> int:
        return (
            len(self.lost) + self.lost_articles + self.lost_notifications + self.missing_outbox_rows
        )

    def problems(self) -> list[str]:
        """Every way the run fell short of exactly-once (in-doubt rows are allowed)."""
        checks = {
            "messages not accounted for": self.lost,
            "messages recorded more than once": self.doubled,
            "messages with the wrong outcome or ticket": self.misplaced,
            "inbound rows recorded as duplicate copies": self.duplicate_copies,
            "extra tickets": self.duplicate_tickets,
            "missing tickets": max(0, self.expected_tickets - self.tickets),
            "duplicate articles": self.duplicate_articles,
            "missing articles": self.lost_articles,
            "outbox rows not as expected": self.outbox_mismatch,
            "notifications delivered twice": self.duplicate_notifications,
            "`sent` notifications the sink never received": self.lost_notifications,
            "sink messages without an outbox row": self.stray_notifications,
            "outbox rows neither sent nor unknown": self.unfinished,
            "messages left unread (or unmoved) in the mailbox": self.unseen,
            "UID ledger rows not acknowledged": self.unacked,
            "UID ledger rows != N": self.ledger_rows != self.n,
            "daemon did not exit 0 on SIGTERM": self.stop_code != 0,
            "tracebacks in the daemon logs": self.tracebacks,
        }
        return [f"{what}: {value}" for what, value in checks.items() if value]

    def summary(self) -> str:
        return (
            f"crash test {self.backend}: N={self.n} kills={self.kills} seed={self.seed} "
            f"accounted={self.accounted} lost={self.lost_total} duplicates={self.duplicates} "
            f"(tickets {self.duplicate_tickets}, articles {self.duplicate_articles}, "
            f"notifications {self.duplicate_notifications + self.extra_outbox_rows}) "
            f"tickets={self.tickets} "
            f"notifications={self.notifications} delivered={self.delivered} "
            f"in_doubt={self.in_doubt} (delivered {self.in_doubt_delivered}) "
            f"stop=exit {self.stop_code} in {self.stop_seconds:.1f}s "
            f"wall={self.wall_seconds:.1f}s"
        )


def scan_log(report: Report, log: Path) -> None:
    """Count the tracebacks in a daemon log (keeping the first) and the stand-bys."""
    text = log.read_text(errors="replace")
    report.tracebacks += text.count("Traceback")
    report.standbys += text.count("standing by")
    if "Traceback" in text and not report.first_traceback:
        report.first_traceback = "\n".join(text[text.index("Traceback") :].splitlines()[:30])


_MESSAGE_ID = re.compile(rb"^Message-ID:\s*<([^>\s]+)>", re.IGNORECASE | re.MULTILINE)


def unprocessed(account_: ImapAccount, n: int, processed_folder: str = "") -> int:
    """Messages the mailbox shows as not dealt with: not flagged \\Seen, or (with a
    processed folder) still in the INBOX; plus any shortfall or excess of the N."""
    inbox = account_.flags()
    if processed_folder:
        return len(inbox) + abs(n - len(account_.flags(processed_folder)))
    return sum(1 for f in inbox.values() if "\\Seen" not in f) + abs(n - len(inbox))


def account(
    report: Report,
    mails: Sequence[CrashMail],
    snap: Snapshot,
    sink_ids: list[str],
    unseen: int,
) -> Report:
    """Fill `report` from the database, the sink and the mailbox (`unseen`: see
    unprocessed())."""
    by_mid: dict[str, list[str]] = {m.message_id: [] for m in mails}
    ticket_of: dict[str, list[int | None]] = {m.message_id: [] for m in mails}
    for row in snap.inbound:
        if row.outcome == "duplicate":
            report.duplicate_copies += 1
            continue
        if row.message_id in by_mid:
            by_mid[row.message_id].append(f"{row.outcome}:{row.reason}")
            ticket_of[row.message_id].append(row.ticket_id)
        else:
            report.misplaced.append(f"inbound row {row.id} for unknown {row.message_id!r}")
    for row in snap.quarantine:
        match = _MESSAGE_ID.search(row.raw or b"")
        mid = match.group(1).decode() if match else None
        if mid in by_mid:
            by_mid[mid].append(f"quarantine:{row.state}:{row.stage}")
            report.quarantine_attempts.append(row.attempts)
        else:
            report.misplaced.append(f"quarantine row {row.id} for unknown {mid!r}")

    ticket_for_thread: dict[str, int | None] = {}
    for mail in mails:
        if mail.kind == "new" and len(ticket_of[mail.message_id]) == 1:
            ticket_for_thread[mail.message_id] = ticket_of[mail.message_id][0]
    expected_outcome = {
        "new": "ticket:None",
        "followup": "article:added",
        "auto": "ignored:auto_submitted",
        "quarantine": "quarantine:held:parse",
    }
    for mail in mails:
        found = by_mid[mail.message_id]
        if not found:
            report.lost.append(mail.message_id)
            continue
        if len(found) > 1:
            report.doubled.append(f"{mail.message_id}: {found}")
            continue
        report.accounted += 1
        wanted_outcome = expected_outcome[mail.kind]
        if found[0] != wanted_outcome:
            report.misplaced.append(
                f"{mail.message_id} ({mail.kind}): {found[0]}, expected {wanted_outcome}"
            )
        elif mail.kind == "followup" and ticket_of[mail.message_id][0] != ticket_for_thread.get(
            mail.thread or ""
        ):
            report.misplaced.append(f"{mail.message_id}: on another ticket than its matter")

    # Tickets and articles: one ticket per new matter, one article per mail of it.
    report.tickets = len(snap.tickets)
    report.expected_tickets = sum(m.kind == "new" for m in mails)
    matter_tickets = {t for t in ticket_for_thread.values() if t is not None}
    report.duplicate_tickets = len({t.id for t in snap.tickets} - matter_tickets)
    inbound_articles = [a for a in snap.articles if a.direction == "in"]
    report.articles = len(inbound_articles)
    report.expected_articles = sum(m.kind in ("new", "followup") for m in mails)
    copies = Counter((a.ticket_id, a.message_id) for a in inbound_articles)
    report.duplicate_articles = sum(c - 1 for c in copies.values())
    wanted = {
        (ticket_for_thread.get(m.thread or ""), m.message_id)
        for m in mails
        if m.kind in ("new", "followup")
    }
    report.lost_articles = len(wanted - set(copies))

    # Notifications: the outbox rows per ticket and event, then the sink against them.
    expected: Counter[tuple[int | None, str]] = Counter()
    for mail in mails:
        ticket = ticket_for_thread.get(mail.thread or "")
        if mail.kind == "new":
            expected[ticket, "created"] += 1
        elif mail.kind == "followup":
            expected[ticket, "info_added"] += 1
            if mail.team_notice:
                expected[ticket, "team_notice"] += 1
    actual = Counter((row.ticket_id, row.event) for row in snap.outbox)
    report.notifications = len(snap.outbox)
    report.expected_notifications = sum(expected.values())
    for key in sorted(set(expected) | set(actual), key=str):
        report.missing_outbox_rows += max(0, expected[key] - actual[key])
        report.extra_outbox_rows += max(0, actual[key] - expected[key])
        if expected[key] != actual[key]:
            report.outbox_mismatch.append(
                f"ticket {key[0]} {key[1]}: {actual[key]}/{expected[key]}"
            )
    received = Counter(sink_ids)
    report.delivered = len(sink_ids)
    report.duplicate_notifications = sum(c - 1 for c in received.values())
    outbox_ids = {row.message_id for row in snap.outbox}
    report.stray_notifications = sum(c for mid, c in received.items() if mid not in outbox_ids)
    states = Counter(row.state for row in snap.outbox)
    report.unfinished = {s: c for s, c in states.items() if s not in ("sent", "unknown")}
    report.in_doubt = states["unknown"]
    report.in_doubt_delivered = sum(
        1 for row in snap.outbox if row.state == "unknown" and row.message_id in received
    )
    report.lost_notifications = sum(
        1 for row in snap.outbox if row.state == "sent" and row.message_id not in received
    )

    report.ledger_rows = len(snap.ledger)
    report.unacked = sum(1 for row in snap.ledger if not row.acked)
    report.unseen = unseen
    return report


# --------------------------------------------------------------------------- the run


def _plan(kills: int, rng: random.Random) -> list[str]:
    """When each kill comes: during start-up, during intake, in the relay's SMTP
    transaction; at least one of each when there are three kills or more."""
    modes = rng.choices(["startup", "intake", "relay"], weights=[2, 5, 3], k=kills)
    if kills >= 3:
        for mode in ("startup", "intake", "relay"):
            if mode not in modes:
                slots = [i for i, m in enumerate(modes) if modes.count(m) > 1]
                modes[rng.choice(slots)] = mode
    return modes


def _arrivals(n: int, kills: int) -> tuple[int, dict[int, int]]:
    """How much mail waits before the first start, and how much arrives during which
    run (1-based): 60% first, the rest in portions while later daemons run."""
    first = max(1, int(n * 0.6))
    portions = max(1, kills // 3)
    runs = [max(2, round((j + 1) * (kills + 1) / (portions + 1))) for j in range(portions)]
    sizes = [(n - first) // portions + (j < (n - first) % portions) for j in range(portions)]
    arrivals: dict[int, int] = {}
    for run, size in zip(runs, sizes, strict=True):
        arrivals[run] = arrivals.get(run, 0) + size
    return first, arrivals


def run_crash(
    *,
    workdir: Path,
    url: str,
    account_: ImapAccount,
    mails: Sequence[CrashMail],
    kills: int,
    seed: int,
    backend: str,
    fetch_batch: int = 100,
    sink_delay: float = 0.01,
    stall_seconds: float = 60.0,
    processed_folder: str = "",
    say: Callable[[str], None] = print,
) -> Report:
    """Load the mail, kill and restart the daemon `kills` times, finish, account."""
    rng = random.Random(seed)
    report = Report(backend=backend, n=len(mails), kills=kills, seed=seed)
    log = workdir / "daemon.log"
    started = time.monotonic()
    notices = [0]
    for mail in mails:
        notices.append(notices[-1] + mail.notifications)  # expected after the first i mails
    # Average distance between two kills, in messages and in notifications.
    spacing = (len(mails) / (kills + 1), notices[-1] / (kills + 1))
    appended, arrivals = _arrivals(len(mails), kills)
    with SinkProcess(workdir, sink_delay) as sink, Probe(url) as probe:
        write_config(
            workdir,
            url,
            account_,
            sink.port,
            fetch_batch=fetch_batch,
            processed_folder=processed_folder,
        )
        spawned: list[subprocess.Popen[bytes]] = []
        try:
            append_mails(account_, mails[:appended])
            for number, mode in enumerate(_plan(kills, rng), start=1):
                execed = time.monotonic()
                daemon = start_daemon(workdir, log, f"run {number} (to be killed: {mode})")
                spawned.append(daemon)
                report.restarts += 1
                note = ""
                if number in arrivals:
                    # New mail while this daemon starts or runs (IDLE pushes it).
                    time.sleep(rng.uniform(0, 1.0))
                    more = arrivals[number]
                    append_mails(account_, mails[appended : appended + more])
                    appended += more
                    note = f" ({more} new message(s) arrived during this run)"
                waiting_for = partial(wait_for, within=stall_seconds, daemons=[daemon], log=log)
                moment = _kill_moment(
                    mode,
                    rng,
                    execed,
                    probe,
                    sink,
                    appended,
                    notices[appended],
                    spacing,
                    waiting_for,
                )
                kill_daemon(daemon)
                done = probe.committed()
                line = f"kill {number}/{kills}: {moment}; committed {done}/{len(mails)}"
                report.moments.append(line + note)
                say(line + note)
            daemon = start_daemon(workdir, log, "final run")
            spawned.append(daemon)
            report.restarts += 1
            if appended < len(mails):
                append_mails(account_, mails[appended:])
            lease = SMTP_TIMEOUT_S * 4
            wait_for(
                lambda: probe.committed() == len(mails) and probe.unacked() == 0,
                "every message taken in and acknowledged",
                within=stall_seconds,
                daemons=[daemon],
                log=log,
                interval=0.05,
            )
            wait_for(
                lambda: probe.waiting() == 0,
                "every notification sent or in doubt",
                within=stall_seconds + lease,
                daemons=[daemon],
                log=log,
                interval=0.05,
            )
            report.stop_code, report.stop_seconds = stop_daemon(daemon)
            snap = probe.snapshot()
            sink_ids = sink.message_ids()
        finally:
            for leftover in spawned:  # when a wait failed: no daemon outlives the run
                if leftover.poll() is None:
                    kill_daemon(leftover)
    report.wall_seconds = time.monotonic() - started
    scan_log(report, log)
    return account(
        report, mails, snap, sink_ids, unprocessed(account_, len(mails), processed_folder)
    )


def _reaches(count: Callable[[], int], target: int) -> Callable[[], bool]:
    return lambda: count() >= target


def _kill_moment(
    mode: str,
    rng: random.Random,
    execed: float,
    probe: Probe,
    sink: SinkProcess,
    appended: int,
    notices: int,
    spacing: tuple[float, float],
    waiting_for: Callable[[Callable[[], bool], str], None],
) -> str:
    """Wait for the moment to kill the running daemon; says what the moment was.

    start-up: 0.05-0.9 s after exec (imports, database, lock, IMAP login, the ack
    backlog, the first fetch); intake: k more messages committed, k random around the
    average spacing, then 0-20 ms; relay: the sink has just logged k more notifications
    and holds back its 250. When the chosen kind has nothing left to interrupt, the
    other one is tried; when neither has, the daemon is killed idle.
    """
    if mode == "startup":
        delay = rng.uniform(0.05, 0.9)
        time.sleep(max(0.0, execed + delay - time.monotonic()))
        return f"start-up, {time.monotonic() - execed:.2f}s after exec"
    kinds = ["intake", "relay"] if mode == "intake" else ["relay", "intake"]
    for kind in kinds:
        if kind == "intake":
            done = probe.committed()
            if appended > done:
                k = rng.randint(1, max(1, min(appended - done, round(2 * spacing[0]))))
                waiting_for(_reaches(probe.committed, done + k), f"{k} more message(s) in")
                extra = rng.uniform(0, 0.02)
                time.sleep(extra)
                return f"intake, {k} message(s) after {done} (+{extra * 1000:.0f}ms)"
        else:
            got = sink.count()
            if notices > got:
                k = rng.randint(1, max(1, min(notices - got, round(2 * spacing[1]))))
                waiting_for(_reaches(sink.count, got + k), f"{k} more notification(s)")
                return f"relay, right after notification {got + k} reached the sink"
    delay = rng.uniform(0.2, 1.0)
    time.sleep(delay)
    return f"idle, {delay:.2f}s (nothing left to interrupt)"


# --------------------------------------------------------------------------- the script


def _backend_run(backend: str, args: argparse.Namespace, dovecot: Dovecot, scratch: Path) -> Report:
    workdir = scratch / backend
    workdir.mkdir()
    mails = crash_mails(args.n, seed=args.mail_seed)
    with scratch_database(backend, workdir, prefix="tg_crash") as url:
        return run_crash(
            workdir=workdir,
            url=url,
            account_=dovecot.new_account(),
            mails=mails,
            kills=args.kills,
            seed=args.seed,
            backend=backend,
            fetch_batch=args.fetch_batch,
            sink_delay=args.sink_delay,
            processed_folder=args.processed_folder,
            say=(lambda line: print(f"  {backend}: {line}", flush=True))
            if args.verbose
            else (lambda line: None),
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="messages (default 1000)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs (default 20)")
    parser.add_argument("--db", default="sqlite,postgresql", help="comma-separated backends")
    parser.add_argument("--seed", type=int, help="seed of the kill moments (default: random)")
    parser.add_argument("--mail-seed", type=int, default=11, help="seed of the generated mail")
    parser.add_argument("--fetch-batch", type=int, default=100, help="UIDs per FETCH")
    parser.add_argument(
        "--sink-delay", type=float, default=0.01, help="seconds the sink waits before its 250"
    )
    parser.add_argument(
        "--processed-folder",
        default="",
        help="move processed mail to this folder instead of flagging it \\Seen",
    )
    parser.add_argument("--verbose", action="store_true", help="print every kill moment")
    parser.add_argument("--out", type=Path, default=Path("/tmp/ticket-gateway-crash.jsonl"))
    args = parser.parse_args()

    seed = args.seed if args.seed is not None else random.randrange(1_000_000)
    args.seed = seed
    problems: list[str] = []  # backends that lost, doubled or could not finish
    with dovecot_scratch("tg-crash-", keep=lambda: bool(problems)) as dovecot:
        for backend in args.db.split(","):
            try:
                report = _backend_run(backend, args, dovecot, dovecot.directory.parent)
            except CrashTestError as exc:
                problems.append(backend)
                print(f"crash test {backend}: RUN FAILED (seed {seed}): {exc}", flush=True)
                continue
            result = {
                "bench": "crash",
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "cores": os.cpu_count(),
                **asdict(report),
                "lost_total": report.lost_total,
                "duplicates": report.duplicates,
                "problems": report.problems(),
            }
            harness.append_json(args.out, result)
            print(report.summary(), flush=True)
            print(
                f"  restarts {report.restarts} (of which found the lock still held: "
                f"{report.standbys}), tracebacks in the daemon logs {report.tracebacks}, "
                f"quarantine attempts {report.quarantine_attempts}",
                flush=True,
            )
            for problem in report.problems():
                problems.append(backend)
                print(f"  PROBLEM {problem}", flush=True)
            if report.first_traceback:
                print(f"  first traceback:\n{report.first_traceback}", flush=True)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
