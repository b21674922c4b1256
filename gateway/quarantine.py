"""Quarantine: look at failed messages, run them again after a fix, or discard them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import undefer

from gateway.pipeline import Outcome, Pipeline, QuarantineResolved
from gateway.store.models import QuarantinedMessage


class QuarantineError(Exception):
    """The entry does not exist or cannot be reprocessed or discarded."""


async def _held(session: AsyncSession, entry_id: int) -> QuarantinedMessage:
    row = await session.get(QuarantinedMessage, entry_id, options=[undefer(QuarantinedMessage.raw)])
    if row is None:
        raise QuarantineError(f"no quarantine entry {entry_id}")
    if row.state != "held":
        raise QuarantineError(f"quarantine entry {entry_id} is already {row.state}")
    return row


async def reprocess(
    sessions: async_sessionmaker[AsyncSession], pipeline: Pipeline, entry_id: int
) -> Outcome:
    """Run a held message through the same path again; the entry is closed in the
    transaction that takes the message in, so it is taken in once."""
    async with sessions() as session:
        row = await _held(session, entry_id)
        if row.truncated:
            raise QuarantineError(
                f"quarantine entry {entry_id} holds only the first {len(row.raw)} of "
                f"{row.size} bytes (over the size limit); from IMAP the whole message "
                f"stays on the server, through deliver it was bounced ({row.source})"
            )
        raw, source = row.raw, row.source
    return await pipeline.ingest(raw, source, ack=QuarantineResolved(entry_id))


async def held_ids(sessions: async_sessionmaker[AsyncSession]) -> list[int]:
    async with sessions() as session:
        query = select(QuarantinedMessage.id).where(
            QuarantinedMessage.state == "held", QuarantinedMessage.truncated.is_(False)
        )
        return list(await session.scalars(query.order_by(QuarantinedMessage.id)))


async def discard(
    sessions: async_sessionmaker[AsyncSession], entry_id: int, by: str, now: datetime
) -> None:
    """Mark a held entry as dealt with; its raw bytes stay for the record."""
    async with sessions() as session, session.begin():
        result = await session.execute(
            update(QuarantinedMessage)
            .where(QuarantinedMessage.id == entry_id, QuarantinedMessage.state == "held")
            .values(state="discarded", resolved_at=now, resolution=f"discarded by {by}"[:255])
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            state = await session.scalar(
                select(QuarantinedMessage.state).where(QuarantinedMessage.id == entry_id)
            )
            if state is None:
                raise QuarantineError(f"no quarantine entry {entry_id}")
            raise QuarantineError(f"quarantine entry {entry_id} is already {state}")
