"""Where a message's time goes, in process: ingest (one transaction per message) and
relay (compose + record the delivery), timed apart, with SQL statements per message,
and the query plans of the statements every message runs.

No IMAP and no SMTP: mails from bench/mailgen.py go straight into `Pipeline.ingest`,
and the relay hands its messages to a transport that only counts them. Use it to see
what a change in the gateway costs; bench/ingest.py measures the whole daemon.

Run from the project root:
  .venv/bin/python bench/stages.py --n 1000 [--db sqlite,postgresql] [--explain] [--profile F]
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.mailgen import batch_mails, seed_mails
from gateway.app import Gateway, build, prepare_database
from gateway.config import Settings
from gateway.outbox import Handover, due_rows
from gateway.service import customers, notices, organisations, tickets
from gateway.store import direct
from gateway.store.models import MailboxUid, Timer
from tests.support.databases import create_database, drop_database
from tests.support.settings import settings_dict


class CountingTransport:
    """Accepts every message after its handover; sends nothing."""

    def __init__(self) -> None:
        self.sent = 0

    async def send(self, message: bytes, sender: str, recipient: str, handover: Handover) -> bool:
        if not await handover():
            return False
        self.sent += 1
        return True

    async def close(self) -> None:
        return None

    def abort(self) -> None:
        return None


def hot_queries(now: datetime) -> list[tuple[str, Any]]:
    """The look-ups on every message's path, with realistic parameters."""
    return [
        (
            "customer: contact by address, organisation by contact or domain",
            organisations._CUSTOMER.params(
                address="jan@kweker-a.example", domain="kweker-a.example"
            ),
        ),
        (
            "ticket of a thread (locked)",
            customers._ticket_of_thread(2).params(id0="<a@x>", id1="<b@y>"),
        ),
        (
            "ticket by reference (locked)",
            customers._TICKET_BY_REFERENCE.params(reference="VTM-2026-000001"),
        ),
        ("participants of a ticket", tickets._PARTICIPANTS.params(ticket_id=1)),
        (
            "rate limit: answers on a ticket",
            notices._ANSWERS_ON_TICKET.params(
                ticket_id=1,
                hour_ago=now - timedelta(hours=1),
                minutes_ago=now - timedelta(minutes=10),
            ),
        ),
        (
            "rate limit: answers to a recipient",
            notices._answers_to_recipients(1).params(
                r0="jan@kweker-a.example", day_ago=now - timedelta(days=1)
            ),
        ),
        ("relay: due notifications", due_rows(now, 100)),
        (
            "mailbox cursor",
            select(func.max(MailboxUid.uid)).where(
                MailboxUid.mailbox == "desk", MailboxUid.uidvalidity == 1
            ),
        ),
        (
            "next due timer",
            select(Timer.id)
            .where(Timer.fired_at.is_(None), Timer.due_at <= now)
            .order_by(Timer.due_at, Timer.id)
            .limit(1),
        ),
    ]


def _callgrind(state: str) -> None:
    """Under `valgrind --tool=callgrind --instr-atstart=no` (--callgrind), count the
    instructions of the timed part only: repeatable where CPU time is not."""
    if os.environ.get("STAGES_CALLGRIND"):
        subprocess.run(["callgrind_control", "-i", state, str(os.getpid())], check=True)


async def explain(engine: AsyncEngine, now: datetime) -> None:
    dialect = engine.dialect
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")
    prefix = "EXPLAIN" if dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
    async with engine.connect() as conn:
        for name, stmt in hot_queries(now):
            sql = stmt.compile(
                dialect=dialect, compile_kwargs={"literal_binds": True, "render_postcompile": True}
            )
            rows = (await conn.exec_driver_sql(f"{prefix} {sql}")).all()
            plan = [str(row[-1]) for row in rows]
            print(f"  {name}:")
            for line in plan:
                print(f"      {line}")


async def measure(
    backend: str, n: int, seeds: int, show_plans: bool, scratch: Path, profile: str | None
) -> None:
    if backend == "sqlite":
        url = f"sqlite+aiosqlite:///{scratch}/stages.db"
    else:
        url = await create_database("tg_stages")
    config = settings_dict(url, maildir=scratch / "maildir")
    config["teams"] = [{**team, "notify": []} for team in config["teams"]]
    config["database"]["auto_migrate"] = True
    transport = CountingTransport()
    gateway: Gateway = build(Settings.model_validate(config), transport=transport)
    through_sqlalchemy = [0]

    def count(*_args: object) -> None:
        through_sqlalchemy[0] += 1

    def statements() -> int:
        """Statements so far: those SQLAlchemy ran and those run on the driver directly."""
        return through_sqlalchemy[0] + direct.direct_runs

    try:
        await prepare_database(gateway)
        event.listen(gateway.engine.sync_engine, "before_cursor_execute", count)
        seed = seed_mails(seeds)
        for mail in seed:
            await gateway.pipeline.ingest(mail.raw, "bench")
        await gateway.relay.send_due()
        batch = batch_mails(n, seed, datetime.now(UTC).year)
        before = statements()
        profiler = cProfile.Profile() if profile else None
        if profiler:
            profiler.enable()
        _callgrind("on")
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for mail in batch:
            await gateway.pipeline.ingest(mail.raw, "bench")
        cpu1, wall1 = time.process_time(), time.perf_counter()
        ingest_statements = statements() - before
        await gateway.relay.send_due()
        cpu2, wall2 = time.process_time(), time.perf_counter()
        _callgrind("off")
        if profiler and profile:
            profiler.disable()
            profiler.dump_stats(f"{profile}.{backend}")
        relay_statements = statements() - before - ingest_statements
        print(
            f"{backend:<10} N={n}: ingest {1000 * (wall1 - wall0) / n:.2f} ms/msg "
            f"(cpu {1000 * (cpu1 - cpu0) / n:.2f}, {ingest_statements / n:.1f} statements), "
            f"relay {1000 * (wall2 - wall1) / n:.2f} ms/msg "
            f"(cpu {1000 * (cpu2 - cpu1) / n:.2f}, {relay_statements / n:.1f} statements), "
            f"together {n / (wall2 - wall0):.0f} msg/s; {transport.sent - seeds} sent"
        )
        if show_plans:
            await explain(gateway.engine, datetime.now(UTC))
    finally:
        await gateway.close()
        if backend == "postgresql":
            await drop_database(url)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="measured messages (default 1000)")
    parser.add_argument("--seeds", type=int, default=50, help="tickets created beforehand")
    parser.add_argument("--db", default="sqlite,postgresql", help="comma-separated backends")
    parser.add_argument("--explain", action="store_true", help="print the hot queries' plans")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="write a cProfile dump of the timed part (ingest and relay) to FILE.<db>",
    )
    args = parser.parse_args()
    for backend in args.db.split(","):
        with tempfile.TemporaryDirectory(prefix="tg-stages-") as scratch:
            asyncio.run(
                measure(backend, args.n, args.seeds, args.explain, Path(scratch), args.profile)
            )


if __name__ == "__main__":
    main()
