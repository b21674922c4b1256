"""Ingest + notify throughput of `ticket-gateway run --once`, next to the raw IMAP ceiling.

For each database (SQLite, PostgreSQL) it:
  1. seeds K tickets (untimed), then loads N generated mails into a private Dovecot;
  2. times ONE `ticket-gateway run --once` process (interpreter start-up included) that
     takes all N in and delivers every notification over SMTP to a sink process;
  3. times `run --once` on an empty mailbox (the fixed cost) for a net rate;
  4. checks the result: tickets created, follow-ups on the seed tickets, notifications
     received by the sink (unique Message-IDs), nothing left unread;
  5. measures the ceiling on the same mailbox: a bare aioimaplib loop doing the same
     bounded UID FETCHes and email parsing, no database;
  6. measures the floor on the same mailbox, database server and sink: that loop plus
     the least a gateway must do per message (a transaction keeping it and its
     notification, the notification rendered and sent, a transaction recording it
     sent; bench/floor.py).
Figures are printed (and appended as JSON lines to --out), never asserted.

Run from the project root:  .venv/bin/python bench/ingest.py --n 1000 [--db sqlite,postgresql]
Needs root (for the private Dovecot) and, for PostgreSQL, TEST_DATABASE_URL's server.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import statistics
import sys
import time
from datetime import UTC, datetime
from email.policy import default
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select

from bench.floor import floor
from bench.harness import (
    Probe,
    SinkProcess,
    append_json,
    append_mails,
    bench_mailbox,
    bench_parser,
    cpu_calibration,
    daemon_config,
    dovecot_scratch,
    machine,
    open_inbox,
    run_cli,
    scratch_database,
    write_config,
)
from bench.mailgen import batch_mails, seed_mails
from gateway.intake.imap import parse_fetch, uid_ranges, uid_set
from gateway.store.models import Article
from tests.support.dovecot import Dovecot, ImapAccount


async def raw_ceiling(account: ImapAccount, batch: int) -> tuple[float, float]:
    """Bare aioimaplib: same bounded UID FETCHes + email parsing; (seconds, fetch share)."""
    start = time.perf_counter()
    client, uids = await open_inbox(account)
    fetch_s = 0.0
    parsed = 0
    for chunk in uid_ranges(uids, batch):
        t0 = time.perf_counter()
        fetched = await client.uid("fetch", uid_set(chunk), "(UID BODY.PEEK[])")
        fetch_s += time.perf_counter() - t0
        for _uid, raw in parse_fetch(fetched.lines):
            email.message_from_bytes(raw, policy=default)
            parsed += 1
    await client.logout()
    assert parsed == len(uids), (parsed, len(uids))
    total = time.perf_counter() - start
    return total, fetch_s / total


def db_counts(url: str, seeds: int) -> dict[str, int]:
    with Probe(url) as probe:
        return {
            "tickets": probe.tickets(),
            "inbound": probe.inbound(),
            "quarantine": probe.quarantined(),
            "seed_articles": probe.scalar(
                select(func.count()).select_from(Article).where(Article.ticket_id <= seeds)
            ),
        }


def measure(
    backend: str, args: argparse.Namespace, dovecot: Dovecot, scratch: Path
) -> dict[str, Any]:
    workdir = scratch / backend
    workdir.mkdir()
    account = dovecot.new_account()
    with scratch_database(backend, workdir) as url, SinkProcess(workdir) as sink:
        mailbox = bench_mailbox(account, fetch_batch=args.fetch_batch)
        # No team notices and no rate limits: every measured mail then causes exactly
        # one notification, and the check stays exact.
        config = daemon_config(url, sink.port, [mailbox])
        config["outbound"]["relay_process"] = args.relay_process
        write_config(workdir, config)

        seeds = seed_mails(args.seeds)
        account.append(*(m.raw for m in seeds))
        run_cli(workdir, "run", "--once")
        year = datetime.now(UTC).year
        batch = batch_mails(args.n, seeds, year)
        fixed = statistics.median(run_cli(workdir, "run", "--once")[0] for _ in range(3))

        t0 = time.perf_counter()
        append_mails(account, (m.raw for m in batch))
        append_s = time.perf_counter() - t0

        calib = cpu_calibration()
        suffix = ".pstats" if args.profile and args.profile.suffix == ".pstats" else ".txt"
        profile = args.profile.with_suffix(f".{backend}{suffix}") if args.profile else None
        wall, rss, out = run_cli(workdir, "run", "--once", profile=profile)
        counts = db_counts(url, args.seeds)
        ids = sink.message_ids()
        ceilings = [asyncio.run(raw_ceiling(account, args.fetch_batch)) for _ in range(3)]
        ceiling_s = statistics.median(c[0] for c in ceilings)
        floor_s = statistics.median(
            asyncio.run(floor(account, args.fetch_batch, backend, url, workdir, sink.port))
            for _ in range(3)
        )

    new = sum(1 for m in batch if m.kind == "new")
    replies = args.n - new
    unread = [u for u, flags in account.flags().items() if "\\Seen" not in flags]
    net = wall - fixed
    return {
        "bench": "ingest",
        "backend": backend,
        "relay_process": args.relay_process,
        "n": args.n,
        "seeds": args.seeds,
        "fetch_batch": args.fetch_batch,
        "wall_s": round(wall, 3),
        "fixed_s": round(fixed, 3),
        "net_s": round(net, 3),
        "gross_msgs_per_s": round(args.n / wall, 1),
        "net_msgs_per_s": round(args.n / net, 1),
        "net_ms_per_msg": round(net / args.n * 1000, 2),
        "peak_rss_mib": round(rss, 1),
        "ceiling_s": round(ceiling_s, 3),
        "ceiling_msgs_per_s": round(args.n / ceiling_s, 1),
        "pct_of_ceiling_net": round(100 * ceiling_s / net, 1),
        "ceiling_fetch_share": round(statistics.median(c[1] for c in ceilings), 2),
        "floor_s": round(floor_s, 3),
        "floor_msgs_per_s": round(args.n / floor_s, 1),
        "floor_pct_of_ceiling": round(100 * ceiling_s / floor_s, 1),
        "pct_of_floor_net": round(100 * floor_s / net, 1),
        "append_s": round(append_s, 2),
        "cpu_calib_s": calib,
        "check": {
            "tickets_created": counts["tickets"] - args.seeds,
            "expected_new": new,
            "seed_followups": counts["seed_articles"] - args.seeds,
            "expected_replies": replies,
            "notifications": len(ids) - args.seeds,
            "unique_notification_ids": len(set(ids)),
            "quarantined": counts["quarantine"],
            "unread_left": len(unread),
        },
        "summary": out.strip(),
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=int, default=1000, help="measured messages (default 1000)")
    parser.add_argument("--seeds", type=int, default=50, help="tickets created beforehand")
    parser.add_argument(
        "--profile", type=Path, help="profile the timed run (pyinstrument) to PATH.<db>.txt"
    )
    parser.add_argument(
        "--relay-process",
        action="store_true",
        help="send from a relay process of its own (outbound.relay_process)",
    )
    args = parser.parse_args()

    backends = args.db.split(",")
    about = machine(backends)
    with dovecot_scratch("tg-bench-") as dovecot:
        for backend in backends:
            result = {**about, **measure(backend, args, dovecot, dovecot.directory.parent)}
            append_json(args.out, result)
            c = result["check"]
            ok = (
                c["tickets_created"] == c["expected_new"]
                and c["seed_followups"] == c["expected_replies"]
                and c["notifications"] == args.n == c["unique_notification_ids"] - args.seeds
                and c["unread_left"] == 0
                and c["quarantined"] == 0
            )
            label = backend + ("+relay" if args.relay_process else "")
            print(
                f"{label:<16} N={args.n} wall {result['wall_s']}s (fixed {result['fixed_s']}s) "
                f"gross {result['gross_msgs_per_s']}/s net {result['net_msgs_per_s']}/s "
                f"({result['net_ms_per_msg']} ms/msg) peak RSS {result['peak_rss_mib']} MiB | "
                f"ceiling {result['ceiling_msgs_per_s']}/s -> {result['pct_of_ceiling_net']}% | "
                f"floor {result['floor_msgs_per_s']}/s ({result['floor_pct_of_ceiling']}% of "
                f"the ceiling) -> {result['pct_of_floor_net']}% | "
                f"calib {result['cpu_calib_s']}s | check {'OK' if ok else 'MISMATCH'} {c}"
            )


if __name__ == "__main__":
    main()
