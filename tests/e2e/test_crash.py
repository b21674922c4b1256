"""The daemon as a real process, killed with SIGKILL at random moments, and two daemons
on one mailbox: every message accounted for exactly once, no notification sent twice.

The harness (mail mix, sink process, kill moments, accounting) is bench/crash.py's; the
bench script runs it at N = 1000 with 20 kills. A failing run prints its seed: rerun it
with CRASH_SEED=<seed>.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from bench.crash import (
    Probe,
    Report,
    SinkProcess,
    account,
    append_mails,
    crash_mails,
    kill_daemon,
    run_crash,
    scan_log,
    start_daemon,
    stop_daemon,
    unprocessed,
    wait_for,
    write_config,
)
from tests.support.dovecot import ImapAccount

pytestmark = pytest.mark.imap

N = 100
KILLS = 6


def crash_seed() -> int:
    return int(os.environ.get("CRASH_SEED") or random.SystemRandom().randrange(1_000_000))


def test_daemon_killed_at_random_moments_loses_nothing_and_doubles_nothing(
    tmp_path: Path, db_url: str, imap_account: ImapAccount
) -> None:
    seed = crash_seed()
    backend = "postgresql" if db_url.startswith("postgresql") else "sqlite"
    print(f"crash test on {backend}: seed {seed} (rerun with CRASH_SEED={seed})")
    mails = crash_mails(N)
    kinds = {kind: sum(m.kind == kind for m in mails) for kind in ("new", "followup", "auto")}
    assert min(kinds.values()) >= 5, kinds  # a real mix
    assert sum(m.kind == "quarantine" for m in mails) == 2

    report = run_crash(
        workdir=tmp_path,
        url=db_url,
        account_=imap_account,
        mails=mails,
        kills=KILLS,
        seed=seed,
        backend=backend,
        fetch_batch=25,
    )
    print(report.summary())
    why = f"seed {seed}; {report.summary()}\n" + "\n".join(report.moments)

    assert report.kills >= 5 and report.restarts == KILLS + 1
    # Every message exactly once: a ticket, an article, ignored with a reason, or held
    # in quarantine; nothing recorded twice, not even as a `duplicate` copy.
    assert report.lost == [], why
    assert report.doubled == [], why
    assert report.misplaced == [], why
    assert report.duplicate_copies == 0, why
    assert report.accounted == N, why
    # One ticket per new matter, one article per mail of a matter, on its own ticket.
    assert (report.tickets, report.duplicate_tickets) == (kinds["new"], 0), why
    assert report.articles == report.expected_articles == kinds["new"] + kinds["followup"], why
    assert (report.duplicate_articles, report.lost_articles) == (0, 0), why
    # Notifications: the expected outbox rows, each `sent` (received exactly once) or
    # `unknown` (in doubt: received at most once); nothing stuck, nothing stray.
    assert report.outbox_mismatch == [], why
    assert report.notifications == report.expected_notifications, why
    assert report.unfinished == {}, why
    assert report.duplicate_notifications == 0, why
    assert report.lost_notifications == 0, why
    assert report.stray_notifications == 0, why
    assert report.delivered == report.notifications - report.in_doubt + report.in_doubt_delivered
    # The mailbox: everything flagged \Seen, the UID ledger complete and acknowledged.
    assert (report.unseen, report.unacked, report.ledger_rows) == (0, 0, N), why
    # And the last daemon stops gracefully.
    assert report.stop_code == 0, why
    assert report.stop_seconds < 8, why
    # No exception escaped to the log of any daemon, killed or not.
    assert report.tracebacks == 0, f"{why}\n{report.first_traceback}"
    assert report.problems() == [], why


TAKEN_IN = ("created ref=", "appended ref=", "ignored message_id=", "quarantined source=")


def _read(log: Path) -> str:
    return log.read_text(errors="replace") if log.exists() else ""


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_daemons_on_one_mailbox_make_no_duplicates(
    tmp_path: Path, db_url: str, imap_account: ImapAccount
) -> None:
    mails = crash_mails(100, seed=5)
    before, meanwhile, killed_during, after = mails[:40], mails[40:65], mails[65:85], mails[85:]
    logs = {name: tmp_path / f"daemon-{name}.log" for name in ("a", "b")}
    started = time.monotonic()
    with SinkProcess(tmp_path) as sink, Probe(db_url) as probe:
        write_config(tmp_path, db_url, imap_account, sink.port, fetch_batch=10)
        append_mails(imap_account, before)
        daemons = {
            name: start_daemon(tmp_path, log, f"daemon {name}") for name, log in logs.items()
        }
        running = list(daemons.values())
        try:
            wait_for(
                lambda: any("standing by" in _read(log) for log in logs.values()),
                "one daemon standing by",
                within=30,
                daemons=running,
            )
            append_mails(imap_account, meanwhile)
            wait_for(
                lambda: probe.committed() == 65 and probe.unacked() == 0 and probe.waiting() == 0,
                "the first 65 messages taken in and notified",
                within=60,
                daemons=running,
            )
            standing = [name for name, log in logs.items() if "standing by" in _read(logs[name])]
            assert len(standing) == 1, {name: _read(log) for name, log in logs.items()}
            (standby,) = standing
            (holder,) = set(logs) - {standby}
            # Only the holder read the mailbox; the other only relayed notifications.
            assert any(marker in _read(logs[holder]) for marker in TAKEN_IN)
            assert not any(marker in _read(logs[standby]) for marker in TAKEN_IN)

            # Kill the holder in the middle of a batch; the other takes the mailbox over.
            append_mails(imap_account, killed_during)
            wait_for(
                lambda: probe.committed() >= 70,
                "the holder busy with the next batch",
                within=30,
                daemons=running,
            )
            kill_daemon(daemons[holder])
            running.remove(daemons[holder])
            append_mails(imap_account, after)
            wait_for(
                lambda: "taken over from another daemon" in _read(logs[standby]),
                "the standby taking the mailbox over",
                within=30,
                daemons=running,
            )
            wait_for(
                lambda: probe.committed() == 100 and probe.unacked() == 0 and probe.waiting() == 0,
                "every message taken in and every notification sent or in doubt",
                within=60,
                daemons=running,
            )
            code, seconds = stop_daemon(daemons[standby])
            snap = probe.snapshot()
            sink_ids = sink.message_ids()
        finally:
            for daemon in daemons.values():
                if daemon.poll() is None:
                    kill_daemon(daemon)
    takeover = _read(logs[standby]).split("taken over from another daemon", 1)[1]
    assert any(marker in takeover for marker in TAKEN_IN)

    left = unprocessed(imap_account, len(mails))
    report = account(Report("postgresql", len(mails), 1, 0), mails, snap, sink_ids, left)
    report.stop_code, report.stop_seconds = code, seconds
    report.wall_seconds = time.monotonic() - started
    for log in logs.values():
        scan_log(report, log)
    relayed = {name: _read(log).count("sent outbox") for name, log in logs.items()}
    print(f"{report.summary()}; holder {holder}, sent by each relay: {relayed}")
    assert report.problems() == [], report.summary()
    assert (report.accounted, report.tickets) == (100, sum(m.kind == "new" for m in mails))
    assert report.duplicate_notifications == 0
    assert report.delivered == report.notifications - report.in_doubt + report.in_doubt_delivered
