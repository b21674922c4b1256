"""Secrets every daemon on one database shares, made on first use."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.store.db import dialect_insert
from gateway.store.models import DeskSecret


async def shared_secret(session: AsyncSession, name: str) -> tuple[bytes, bool]:
    """The secret called `name`, and whether it was committed before this transaction.

    Migrations make the secrets; one missing (deleted by hand) is made again here, in
    the caller's transaction: until that commits, the caller must not keep it.
    """
    value = await session.scalar(select(DeskSecret.value).where(DeskSecret.name == name))
    if value is not None:
        return value.encode(), True
    # Two daemons at once: one insert wins, the other waits for it and reads it.
    await session.execute(
        dialect_insert(session)(DeskSecret)
        .values(name=name, value=secrets.token_hex(32), created_at=datetime.now(UTC))
        .on_conflict_do_nothing(index_elements=["name"])
    )
    value = await session.scalar(select(DeskSecret.value).where(DeskSecret.name == name))
    assert value is not None
    return value.encode(), False
