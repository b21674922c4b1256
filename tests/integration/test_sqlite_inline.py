"""SQLite on the loop's thread: another process's write lock is waited for without
blocking the event loop, and not longer than the busy timeout."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from gateway.store import db
from gateway.store.db import create_engine
from gateway.store.sqlite_inline import async_creator


def _engine(path: Path, patience: float) -> AsyncEngine:
    return create_async_engine(
        f"sqlite+aiosqlite:///{path}", async_creator=async_creator(str(path), patience)
    )


def _holder(path: Path) -> sqlite3.Connection:
    """Another writer (the CLI, a second daemon) holding the write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO notes (body) VALUES ('theirs')")
    return other


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "gateway.db"
    setup = sqlite3.connect(path)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    setup.close()
    return path


async def test_a_locked_database_is_waited_for_while_the_loop_runs_on(database: Path) -> None:
    other = _holder(database)
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    loop = asyncio.get_running_loop()
    # Only the event loop can let the other writer go: if waiting blocked the loop,
    # the lock would never be released and the write below would fail.
    loop.call_later(0.05, other.commit)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES ('ours')"))
        async with engine.connect() as conn:
            bodies = (await conn.execute(text("SELECT body FROM notes ORDER BY id"))).scalars()
            assert list(bodies) == ["theirs", "ours"]
    finally:
        other.close()
        await engine.dispose()


async def test_a_lock_held_past_the_busy_timeout_fails_the_transaction(database: Path) -> None:
    other = _holder(database)
    engine = _engine(database, patience=0.1)
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO notes (body) VALUES ('ours')"))
    finally:
        other.rollback()
        other.close()
        await engine.dispose()


async def test_a_lock_held_past_the_busy_timeout_fails_begin_as_sqlalchemys_error(
    database: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's engine takes the write lock at BEGIN (IMMEDIATE); when it cannot,
    the error is SQLAlchemy's, as for any statement, so callers retry it alike."""
    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_S", 0.1)
    other = _holder(database)
    engine = db.create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        with pytest.raises(OperationalError, match="database is locked"):
            async with engine.begin():
                pass
    finally:
        other.rollback()
        other.close()
        await engine.dispose()
    engine = db.create_engine(f"sqlite+aiosqlite:///{database}")
    try:  # and the engine works once the lock is gone
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES ('ours')"))
    finally:
        await engine.dispose()


async def test_other_errors_are_raised_at_once(database: Path) -> None:
    engine = _engine(database, patience=30)
    try:
        with pytest.raises(OperationalError, match="no such table"):
            async with engine.connect() as conn:
                await asyncio.wait_for(conn.execute(text("SELECT * FROM missing")), timeout=5)
    finally:
        await engine.dispose()


async def test_reads_and_writes_run_without_a_driver_thread(database: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES ('a'), ('b')"))
            raw = await conn.get_raw_connection()
            # No aiosqlite worker: the driver connection is ours, on this thread.
            assert type(raw.driver_connection).__name__ == "InlineConnection"
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM notes"))).scalar_one() == 2
    finally:
        await engine.dispose()
