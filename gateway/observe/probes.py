"""What /healthz and /metrics read from the database, in few and index-friendly queries.

The queries name states and statuses with IN lists so the indexes on outbox.state and
tickets.status serve them: the outbox keeps every notification ever sent and tickets
keep their due times when closed, so neither may be scanned at every scrape.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.domain.model import Status
from gateway.outbox import due
from gateway.store.models import (
    OUTBOX_STATES,
    OUTBOX_WAITING_STATES,
    OutboxMessage,
    QuarantinedMessage,
    Ticket,
)

PROBE_SECONDS = 5.0  # a database that does not answer SELECT 1 within this is unreachable
# Every outbox state but `sent` (the bulk of the table): what is still or no longer owed.
OPEN_STATES = tuple(state for state in OUTBOX_STATES if state != "sent")
WAITING_STATES = OUTBOX_WAITING_STATES
_RUNNING_STATUSES = tuple(s.value for s in Status if s is not Status.CLOSED)


@dataclass(frozen=True)
class DatabaseProbe:
    reachable: bool
    latency_ms: float | None
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"reachable": self.reachable, "latency_ms": self.latency_ms}
        if self.error is not None:
            out["error"] = self.error
        return out


def _sqlite_file(engine: AsyncEngine) -> str | None:
    url = make_url(str(engine.url))
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


async def probe_database(engine: AsyncEngine) -> DatabaseProbe:
    """SELECT 1 through the pool, timed. On SQLite the file must also still be at its
    path: open connections keep working on a removed file, and what they write is lost."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_SECONDS), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except TimeoutError:
        return DatabaseProbe(False, None, f"no answer to SELECT 1 within {PROBE_SECONDS:g} s")
    except Exception as exc:  # whatever the driver raises, the answer is "unreachable"
        return DatabaseProbe(False, None, f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    latency = round((time.perf_counter() - started) * 1000, 3)
    path = _sqlite_file(engine)
    if path is not None and not await asyncio.to_thread(os.path.exists, path):
        return DatabaseProbe(False, latency, f"the database file {path} is gone")
    return DatabaseProbe(True, latency)


@dataclass(frozen=True)
class OutboxSummary:
    by_state: dict[str, int]  # every state in OPEN_STATES, 0 when none
    oldest_due: datetime | None  # next_attempt_at of the notification due longest

    @property
    def depth(self) -> int:
        """Notifications still to send (pending, claimed, sending)."""
        return sum(self.by_state[s] for s in WAITING_STATES)

    def oldest_age_seconds(self, now: datetime) -> float:
        """How long the notification due longest has been waiting (0 when none is due)."""
        if self.oldest_due is None:
            return 0.0
        return max(0.0, round((now - self.oldest_due).total_seconds(), 3))


async def outbox_summary(session: AsyncSession, now: datetime) -> OutboxSummary:
    counts = dict.fromkeys(OPEN_STATES, 0)
    rows = await session.execute(
        select(OutboxMessage.state, func.count())
        .where(OutboxMessage.state.in_(OPEN_STATES))
        .group_by(OutboxMessage.state)
    )
    for state, count in rows:
        counts[state] = int(count)
    oldest = await session.scalar(select(func.min(OutboxMessage.next_attempt_at)).where(*due(now)))
    return OutboxSummary(counts, oldest)


async def quarantine_held(session: AsyncSession) -> int:
    held = QuarantinedMessage.state == "held"
    count = await session.scalar(select(func.count()).select_from(QuarantinedMessage).where(held))
    return int(count or 0)


async def sla_breaches(session: AsyncSession, now: datetime) -> dict[str, int]:
    """Tickets not closed whose first-response or resolution due time has passed unmet.
    (While the clock is stopped a ticket has no due times, so it is not counted.)"""
    first = case(
        (Ticket.first_response_at.is_(None) & (Ticket.first_response_due < now), 1), else_=0
    )
    resolution = case((Ticket.resolution_due < now, 1), else_=0)
    row = (
        await session.execute(
            select(func.coalesce(func.sum(first), 0), func.coalesce(func.sum(resolution), 0)).where(
                Ticket.status.in_(_RUNNING_STATUSES)
            )
        )
    ).one()
    return {"first_response": int(row[0]), "resolution": int(row[1])}


async def suppressed_since(session: AsyncSession, since: datetime) -> int:
    """Notifications held back (rate limit, no automatic answers wanted) since `since`."""
    count = await session.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(OutboxMessage.state == "suppressed", OutboxMessage.created_at >= since)
    )
    return int(count or 0)


@dataclass(frozen=True)
class DatabaseFigures:
    """Everything /metrics reads from the database, in one read transaction."""

    outbox: OutboxSummary
    quarantine_held: int
    sla_breaches: dict[str, int]
    suppressed: int


async def database_figures(
    sessions: async_sessionmaker[AsyncSession], now: datetime, since: datetime
) -> DatabaseFigures:
    async with sessions() as session:
        return DatabaseFigures(
            outbox=await outbox_summary(session, now),
            quarantine_held=await quarantine_held(session),
            sla_breaches=await sla_breaches(session, now),
            suppressed=await suppressed_since(session, since),
        )
