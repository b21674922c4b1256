"""Who reads a mailbox: one daemon at a time, taken over when the holder dies.

On PostgreSQL a session-level advisory lock, held on a connection of its own for as
long as the daemon reads the mailbox: when the daemon dies its connection closes and
the lock is free for another daemon. SQLite is one host and one daemon; the lock is
always granted there (and the UID ledger and dedupe would make a second reader
harmless anyway).
"""

from __future__ import annotations

import asyncio
import hashlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

KEEPALIVE = {"tcp_keepalives_idle": 30, "tcp_keepalives_interval": 10, "tcp_keepalives_count": 3}
CHECK_SECONDS = 10.0  # a lock connection that does not answer this fast is given up


class LockLost(Exception):
    """The connection that held the lock is gone; another daemon may hold it now."""


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock."""
    digest = hashlib.blake2b(f"ticket-gateway:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class MailboxLock:
    def __init__(self, engine: AsyncEngine, name: str) -> None:
        self._engine = engine
        self._key = lock_key(f"mailbox:{name}")
        self._connection: AsyncConnection | None = None
        self._granted = False

    @property
    def held(self) -> bool:
        return self._granted

    async def acquire(self) -> bool:
        """Take the lock if it is free; True when this daemon holds it (now or already)."""
        if self._granted:
            return True
        if self._engine.dialect.name != "postgresql":
            self._granted = True
            return True
        connection = await self._engine.connect()
        try:
            # The server notices a holder whose host or network died within about a
            # minute (not TCP's default two hours) and frees the lock for the others.
            for setting, value in KEEPALIVE.items():
                await connection.execute(text(f"SET {setting} = {value}"))
            got = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            )
            await connection.commit()
        except BaseException:
            await connection.close()
            raise
        if not got:
            await connection.close()
            return False
        self._connection, self._granted = connection, True
        return True

    async def check(self) -> None:
        """Raise LockLost when the lock's connection has died."""
        if self._connection is None:
            return
        try:
            async with asyncio.timeout(CHECK_SECONDS):
                await self._connection.scalar(text("SELECT 1"))
                await self._connection.commit()
        except Exception as exc:
            await self.release()
            raise LockLost(f"lost the mailbox lock: {exc}") from exc

    async def release(self) -> None:
        connection, self._connection = self._connection, None
        self._granted = False
        if connection is not None:
            try:
                async with asyncio.timeout(CHECK_SECONDS):
                    await connection.execute(
                        text("SELECT pg_advisory_unlock(:key)"), {"key": self._key}
                    )
                    await connection.commit()
            except Exception:  # the connection is gone, and the lock with it
                await connection.invalidate()
            finally:
                await connection.close()
