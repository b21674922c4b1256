"""Memory: the daemon's RSS with 100,000 tickets in the database, idle and ingesting.

For each database (SQLite, PostgreSQL):
  1. a fresh, migrated database is seeded by bulk insert (SQLAlchemy Core, executemany
     in batches) with T tickets of this year (VTM-<year>-000001..), each with its
     customer's mail as inbound row (the raw message as bench/mailgen.py makes them,
     0.5-23 KB, 2.3 KB on average), the article, two history rows (opened, closed)
     and the sent `created` notice in the outbox (the shipped template texts); their
     contacts; and the reference counter at T, so new tickets continue at T + 1. The
     first K tickets are the seed mails' (open, bench/mailgen.py seed_mails), so that
     replies find them;
  2. `ticket-gateway run` (the daemon, IDLE on an empty mailbox) starts with
     NOTIFY_SOCKET; after READY=1 and --idle seconds, VmRSS and VmHWM are read from
     /proc/PID/status;
  3. N generated mails are APPENDed into its mailbox; VmRSS is sampled every 0.2 s
     until every mail is taken in (inbound rows) and notified (the sink);
  4. after --idle seconds more, VmRSS and VmHWM again; then SIGTERM (it must exit 0).
Checks: N inbound rows more, the expected new tickets with references from T + 1 on,
nothing quarantined. Figures are printed (and appended as JSON lines to --out), never
asserted.

Run from the project root:  .venv/bin/python bench/memory.py [--tickets 100000] [--n 2000]
Needs root (for the private Dovecot) and, for PostgreSQL, TEST_DATABASE_URL's server.
"""

from __future__ import annotations

import argparse
import email
import hashlib
import random
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.policy import default
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, insert, select, text

from bench.harness import (
    ROOT,
    Probe,
    RssSampler,
    SinkProcess,
    append_json,
    append_mails,
    bench_mailbox,
    bench_parser,
    children_rss_mib,
    daemon_config,
    describe,
    dovecot_scratch,
    machine,
    memory_mib,
    reaped,
    scratch_database,
    start_ready,
    stop_daemon,
    wait_for,
    write_config,
)
from bench.mailgen import GeneratedMail, batch_mails, seed_mails
from gateway.domain.reference import format_reference
from gateway.store.models import (
    Article,
    Contact,
    HistoryEntry,
    InboundMessage,
    OutboxMessage,
    ReferenceCounter,
    Ticket,
)
from tests.support.dovecot import Dovecot

PREFIX = "VTM"
TEAM_OF = {"noc@vtm.example": "noc", "business@vtm.example": "business", "iot@vtm.example": "iot"}
TEMPLATES = 500  # distinct generated mails the history is made of (each with its own id)
# What a sent notice holds: the shipped templates' text, unrendered (the same sizes).
NOTICE_TEXT = (ROOT / "templates" / "nl" / "created.txt").read_text(encoding="utf-8")
NOTICE_HTML = (ROOT / "templates" / "nl" / "_layout.html").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Template:
    """A generated mail with what a ticket made of it shows."""

    mail: GeneratedMail
    subject: str
    body: str
    team: str


def as_templates(mails: list[GeneratedMail]) -> list[Template]:
    out = []
    for mail in mails:
        message = email.message_from_bytes(mail.raw, policy=default)
        part = message.get_body(preferencelist=("plain",))
        body = part.get_content() if part is not None else ""
        team = TEAM_OF.get(str(message["To"]).lower(), "business")
        out.append(Template(mail, str(message["Subject"]), body, team))
    return out


@dataclass
class History:
    """What the seeded tickets are made of: the seed mails' first, then the pool's."""

    year: int
    seeded: list[Template]
    pool: list[Template]
    end: int  # the last ticket number

    def rows(self, start: int, stop: int) -> dict[str, list[dict[str, Any]]]:
        """The rows of tickets start..stop-1 (ids = numbers), per table."""
        rng = random.Random(start)
        begin = datetime(self.year, 1, 1, 8, tzinfo=UTC)
        span = max(3600.0, (datetime.now(UTC) - timedelta(days=7) - begin).total_seconds())
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in TABLES}
        for i in range(start, stop):
            is_seed = i <= len(self.seeded)
            tpl = self.seeded[i - 1] if is_seed else self.pool[i % len(self.pool)]
            if is_seed:
                raw, message_id = tpl.mail.raw, tpl.mail.message_id
                created = datetime.now(UTC) - timedelta(hours=2)
                closed = None
            else:  # the pool's mail with a Message-ID (and so bytes) of its own
                old = tpl.mail.message_id
                message_id = f"h{i}.{old.split('.', 1)[1]}"
                raw = tpl.mail.raw.replace(old.encode(), message_id.encode(), 1)
                created = begin + timedelta(seconds=span * i / self.end + rng.random() * 60)
                closed = created + timedelta(hours=rng.uniform(1, 72))
            reference = format_reference(PREFIX, self.year, i)
            sender = tpl.mail.sender
            rows["tickets"].append(
                {
                    "id": i,
                    "reference": reference,
                    "subject": tpl.subject,
                    "status": "open" if closed is None else "closed",
                    "category": "incident",
                    "priority": 3,
                    "priority_overridden": False,
                    "team": tpl.team,
                    "requester": sender,
                    "language": "nl",
                    "created_at": created,
                    "updated_at": closed or created,
                    "closed_at": closed,
                    "article_count": 1,
                    "sla_stopped_seconds": 0,
                    "first_response_at": closed,
                }
            )
            rows["inbound"].append(
                {
                    "id": i,
                    "sha256": hashlib.sha256(raw).hexdigest(),
                    "message_id": message_id,
                    "source": f"imap:history:{i}",
                    "size": len(raw),
                    "received_at": created,
                    "outcome": "ticket",
                    "ticket_id": i,
                    "raw": raw,
                }
            )
            rows["articles"].append(
                {
                    "id": i,
                    "ticket_id": i,
                    "direction": "in",
                    "author": sender,
                    "kind": "customer",
                    "public": True,
                    "subject": tpl.subject,
                    "body": tpl.body,
                    "message_id": message_id,
                    "inbound_id": i,
                    "created_at": created,
                }
            )
            history = [(created, None, "open", "system")]
            if closed is not None:
                history.append((closed, "open", "closed", "agent@vtm.example"))
            for at, old_status, new_status, by in history:
                rows["history"].append(
                    {
                        "ticket_id": i,
                        "at": at,
                        "field": "status",
                        "old": old_status,
                        "new": new_status,
                        "by": by,
                    }
                )
            rows["outbox"].append(
                {
                    "id": i,
                    "ticket_id": i,
                    "event": "created",
                    "dedupe_key": f"history:{i}",
                    "recipient": sender,
                    "reply_to": f"{tpl.team}@vtm.example",
                    "subject": f"[{reference}] {tpl.subject}",
                    "body_text": NOTICE_TEXT,
                    "body_html": NOTICE_HTML,
                    "message_id": f"history.{i}@vtm.example",
                    "in_reply_to": message_id,
                    "references": message_id,
                    "auto_submitted": "auto-replied",
                    "state": "sent",
                    "attempts": 1,
                    "next_attempt_at": created,
                    "created_at": created,
                    "sent_at": created,
                }
            )
        return rows


TABLES: dict[str, Any] = {
    "tickets": Ticket,
    "inbound": InboundMessage,
    "articles": Article,
    "history": HistoryEntry,
    "outbox": OutboxMessage,
}


def seed_history(url: str, tickets: int, seeds: list[GeneratedMail], batch: int) -> None:
    """Bulk-insert the tickets and their rows, their contacts and the reference counter."""
    year = datetime.now(UTC).year
    history = History(
        year, as_templates(seeds), as_templates(batch_mails(TEMPLATES, [], year, 2026)), tickets
    )
    senders = sorted({t.mail.sender for t in (*history.seeded, *history.pool)})
    now = datetime.now(UTC)

    async def work() -> None:
        async with probe.engine.begin() as conn:
            await conn.execute(
                insert(Contact.__table__),
                [{"address": s, "name": "", "language": "nl", "created_at": now} for s in senders],
            )
        for start in range(1, tickets + 1, batch):
            rows = history.rows(start, min(tickets + 1, start + batch))
            async with probe.engine.begin() as conn:
                for name, model in TABLES.items():
                    await conn.execute(insert(model.__table__), rows[name])
        async with probe.engine.begin() as conn:
            await conn.execute(
                insert(ReferenceCounter.__table__),
                [{"prefix": PREFIX, "year": year, "last": tickets}],
            )
            if conn.dialect.name != "postgresql":
                return
            for model in (Ticket, InboundMessage, Article, OutboxMessage):  # ids given above
                name = model.__table__.name
                await conn.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{name}', 'id'), "
                        f"(SELECT max(id) FROM {name}))"
                    )
                )
        async with probe.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.execute(text("ANALYZE"))  # as autovacuum would after such a load

    with Probe(url) as probe:
        probe.run(work)


def measure(
    backend: str, args: argparse.Namespace, dovecot: Dovecot, scratch: Path
) -> dict[str, Any]:
    workdir = scratch / backend
    workdir.mkdir()
    account = dovecot.new_account()
    year = datetime.now(UTC).year
    seeds = seed_mails(args.seeds)
    batch = batch_mails(args.n, seeds, year)
    log = workdir / "daemon.log"
    with (
        scratch_database(backend, workdir) as url,
        SinkProcess(workdir) as sink,
        Probe(url) as probe,
        reaped([]) as daemons,
    ):
        started = time.perf_counter()
        if args.tickets:
            seed_history(url, args.tickets, seeds, args.batch)
        seed_s = time.perf_counter() - started
        db_mib = _database_mib(probe, url)
        base = probe.inbound()
        mailbox = bench_mailbox(account, idle=True, fetch_batch=args.fetch_batch)
        config = daemon_config(url, sink.port, [mailbox])
        config["outbound"]["relay_process"] = args.relay_process
        write_config(workdir, config)
        daemon, ready = start_ready(workdir, log, f"memory {backend}", daemons)
        time.sleep(args.idle)
        idle_start = memory_mib(daemon.pid)
        children = [children_rss_mib(daemon.pid)]

        with RssSampler(daemon.pid, args.sample) as sampler:
            started = time.monotonic()
            append_mails(account, (m.raw for m in batch))
            append_s = time.monotonic() - started
            wait_for(
                lambda: probe.inbound() >= base + args.n and sink.count() >= args.n,
                "every mail taken in and notified",
                within=900,
                daemons=[daemon],
                log=log,
                interval=0.2,
            )
            ingest_s = time.monotonic() - started
        time.sleep(args.idle)
        idle_end = memory_mib(daemon.pid)
        children.append(children_rss_mib(daemon.pid))
        code, stop_s = stop_daemon(daemon)
        inbound = probe.inbound() - base
        tickets = probe.tickets()
        newest = probe.rows(select(func.max(Ticket.reference)))[0][0]
        quarantined = probe.quarantined()
        notified = sink.count()

    expected_new = sum(m.kind == "new" for m in batch)
    return {
        "bench": "memory",
        "backend": backend,
        "tickets_seeded": args.tickets,
        "seed_s": round(seed_s, 1),
        "database_mib": db_mib,
        "n": args.n,
        "ready_s": round(ready, 2),
        "idle_s": args.idle,
        "rss_mib": {
            "idle_after_start": round(idle_start[0], 1),
            "ingest_max": round(sampler.peak, 1),
            "idle_after_ingest": round(idle_end[0], 1),
        },
        "hwm_mib": {"after_start": round(idle_start[1], 1), "end": round(idle_end[1], 1)},
        "relay_process": args.relay_process,
        # VmRSS of the daemon's child processes (the relay process), idle before and after
        "children_rss_mib": [round(c, 1) for c in children],
        "samples": len(sampler.samples),
        "rss_trace": [  # (seconds into the ingest, MiB), about 20 of the samples
            (round(t - started, 1), round(mib, 1))
            for t, mib in sampler.samples[:: max(1, len(sampler.samples) // 20)]
        ],
        "append_s": round(append_s, 2),
        "ingest_s": round(ingest_s, 2),
        "msgs_per_s": round(args.n / ingest_s, 1),
        "stop": {"exit": code, "seconds": round(stop_s, 2)},
        "check": {
            "inbound_new": inbound,
            "tickets_created": tickets - args.tickets,
            "expected_new": expected_new,
            "newest_reference": newest,
            "expected_newest": format_reference(PREFIX, year, args.tickets + expected_new),
            "notifications": notified,
            "quarantined": quarantined,
        },
    }


def _database_mib(probe: Probe, url: str) -> float:
    if url.startswith("sqlite"):
        path = Path(url.split("///", 1)[1])
        size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    else:
        size = probe.scalar(text("SELECT pg_database_size(current_database())"))
    return round(size / 2**20, 1)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--tickets", type=int, default=100_000, help="tickets seeded (100000)")
    parser.add_argument("--n", type=int, default=2000, help="mails ingested (default 2000)")
    parser.add_argument("--seeds", type=int, default=50, help="open tickets replies go to (50)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before a reading")
    parser.add_argument("--sample", type=float, default=0.2, help="RSS sampling interval, s")
    parser.add_argument("--batch", type=int, default=2000, help="tickets per bulk insert")
    parser.add_argument(
        "--relay-process",
        action="store_true",
        help="send from a relay process of its own (outbound.relay_process)",
    )
    args = parser.parse_args()
    args.seeds = min(args.seeds, args.tickets)

    backends = args.db.split(",")
    about = machine(backends)
    print(f"memory: {args.tickets} tickets, N={args.n}, " + describe(about))
    with dovecot_scratch("tg-memory-") as dovecot:
        for backend in backends:
            result = {**about, **measure(backend, args, dovecot, dovecot.directory.parent)}
            append_json(args.out, result)
            rss, c = result["rss_mib"], result["check"]
            ok = (
                c["inbound_new"] == args.n == c["notifications"]
                and c["tickets_created"] == c["expected_new"]
                and c["newest_reference"] == c["expected_newest"]
                and c["quarantined"] == 0
                and result["stop"]["exit"] == 0
            )
            print(
                f"{backend:<10} seeded {args.tickets} tickets in {result['seed_s']}s "
                f"(database {result['database_mib']} MiB); ready {result['ready_s']}s | "
                f"VmRSS MiB: idle {rss['idle_after_start']}, ingesting max {rss['ingest_max']}, "
                f"idle after {rss['idle_after_ingest']}; VmHWM {result['hwm_mib']['end']}; "
                f"children {result['children_rss_mib']} | "
                f"{args.n} mails in {result['ingest_s']}s ({result['msgs_per_s']}/s) | "
                f"SIGTERM exit {result['stop']['exit']} in {result['stop']['seconds']}s | "
                f"check {'OK' if ok else 'MISMATCH'} {c}"
            )


if __name__ == "__main__":
    main()
