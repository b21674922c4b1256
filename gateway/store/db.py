"""Engine and session factory for SQLite (embedded) and PostgreSQL (production)."""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.util import await_

from gateway.store.checkpoint import Checkpointer
from gateway.store.sqlite_inline import InlineConnection, async_creator

SQLITE_BUSY_TIMEOUT_S = 30

# The WAL checkpointer of each SQLite engine that has one (see dispose).
_checkpointers: weakref.WeakKeyDictionary[Engine, Checkpointer] = weakref.WeakKeyDictionary()


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def _prepare_sqlite_file(url: str) -> None:
    database = make_url(url).database
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, open transactions (see _sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets the CLI read while the daemon writes; foreign keys are off by default.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # IMMEDIATE takes the write lock up front: a transaction that reads and then writes
    # cannot fail half-way with "database is locked" when the CLI and daemon both write;
    # the other side waits up to the busy timeout instead. Run on the driver: through
    # exec_driver_sql it cost five times as much, twice per message.
    inline: InlineConnection = connection.connection.driver_connection
    try:
        await_(inline.begin_immediate())
    except sqlite3.Error as error:  # as SQLAlchemy would have raised it
        raise exc.DBAPIError.instance("BEGIN IMMEDIATE", (), error, sqlite3.Error) from error


def create_engine(url: str, *, background_checkpoints: bool = False, **kwargs: Any) -> AsyncEngine:
    """An async engine for the configured URL, with SQLite set up for a daemon + CLI.

    `background_checkpoints` (SQLite, for long-running processes): WAL checkpoints run
    in a thread of their own instead of inside a commit (store/checkpoint.py); close
    such an engine with `dispose`.
    """
    if is_sqlite(url):
        _prepare_sqlite_file(url)
        database = make_url(url).database or ":memory:"
        in_file = database != ":memory:" and not database.startswith("file:")
        checkpointer = Checkpointer(database) if background_checkpoints and in_file else None
        engine = create_async_engine(
            url,
            async_creator=async_creator(database, SQLITE_BUSY_TIMEOUT_S, checkpointer),
            **kwargs,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        if checkpointer is not None:
            _checkpointers[engine.sync_engine] = checkpointer
        return engine
    # No pool_pre_ping: it costs a round trip per transaction. A dropped connection
    # fails that one transaction, which the pipeline treats as temporary and retries.
    return create_async_engine(url, **kwargs)


def checkpointer_of(engine: AsyncEngine) -> Checkpointer | None:
    return _checkpointers.get(engine.sync_engine)


async def dispose(engine: AsyncEngine) -> None:
    """Close the engine's connections, then its WAL checkpointer (which checkpoints
    what is left in the log) if it has one."""
    await engine.dispose()
    checkpointer = _checkpointers.pop(engine.sync_engine, None)
    if checkpointer is not None:
        await asyncio.to_thread(checkpointer.stop)


def dialect_of(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def is_postgresql(session: AsyncSession) -> bool:
    return dialect_of(session) == "postgresql"


def insert_for(dialect: str) -> Any:
    """The dialect's INSERT construct, which knows ON CONFLICT (SQLite and PostgreSQL)."""
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def dialect_insert(session: AsyncSession) -> Any:
    return insert_for(dialect_of(session))


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
