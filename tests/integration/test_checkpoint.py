"""SQLite WAL checkpoints from a thread of their own: commits no longer checkpoint,
the thread does, the log stays bounded under writes that never pause, and the daemon's
engine has one on SQLite and closes it with the engine."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.store.checkpoint import Checkpointer
from gateway.store.db import checkpointer_of, create_engine, dispose
from tests.conftest import GatewayFactory
from tests.support.mails import make_mail

WAIT = 10.0  # seconds an event may take before the test fails (never slept)


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """A connection set up like the daemon's: WAL, automatic checkpoints off."""
    connection = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None, timeout=WAIT)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA wal_autocheckpoint=0")
    connection.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    yield connection
    connection.close()


def _write(connection: sqlite3.Connection, checkpointer: Checkpointer, n: int = 1) -> None:
    for _ in range(n):
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO notes (body) VALUES (?)", ("x" * 300,))
        connection.execute("COMMIT")
        checkpointer.committed()


def _log_pages(connection: sqlite3.Connection) -> tuple[int, int]:
    """(pages in the log, pages of it copied into the database) without copying more."""
    _busy, pages, copied = connection.execute("PRAGMA wal_checkpoint(NOOP)").fetchone()
    return pages, copied


def test_the_thread_copies_the_log_after_enough_commits(writer: sqlite3.Connection) -> None:
    database = writer.execute("PRAGMA database_list").fetchone()[2]
    checkpointer = Checkpointer(database, every=8, quiet=WAIT)
    checkpointer.start()
    try:
        _write(writer, checkpointer, 8)
        assert checkpointer.checkpointed.wait(WAIT)
        pages, copied = _log_pages(writer)
        assert pages >= 8 and copied == pages  # nothing of the log left to copy
        assert checkpointer.passive >= 1 and checkpointer.failures == 0
    finally:
        checkpointer.stop()


def test_a_single_commit_is_checkpointed_after_the_quiet_interval(
    writer: sqlite3.Connection,
) -> None:
    database = writer.execute("PRAGMA database_list").fetchone()[2]
    checkpointer = Checkpointer(database, every=1000, quiet=0.01)
    checkpointer.start()
    try:
        _write(writer, checkpointer)
        assert checkpointer.checkpointed.wait(WAIT)
        pages, copied = _log_pages(writer)
        assert pages >= 1 and copied == pages
    finally:
        checkpointer.stop()


def test_the_log_starts_afresh_under_writes_that_never_pause(writer: sqlite3.Connection) -> None:
    """PASSIVE alone may never catch up with a writer that does not stop; past the
    limit the thread RESTARTs, and the next write begins the log from the start."""
    database = writer.execute("PRAGMA database_list").fetchone()[2]
    checkpointer = Checkpointer(database, every=4, limit=20, quiet=WAIT)
    checkpointer.start()
    written = 0
    try:
        while checkpointer.restarts == 0 and written < 200_000:
            _write(writer, checkpointer)
            written += 1
        assert checkpointer.restarts >= 1, "no RESTART while the log grew"
        _write(writer, checkpointer)  # the first writer after the RESTART
        pages, _copied = _log_pages(writer)
        assert pages < written  # without a fresh start the log would hold every commit
        assert writer.execute("SELECT count(*) FROM notes").fetchone()[0] == written + 1
    finally:
        checkpointer.stop()


def test_stop_copies_what_is_left_and_ends_the_thread(writer: sqlite3.Connection) -> None:
    database = writer.execute("PRAGMA database_list").fetchone()[2]
    checkpointer = Checkpointer(database, every=1000, quiet=WAIT)
    checkpointer.start()
    _write(writer, checkpointer, 3)
    checkpointer.stop()
    pages, copied = _log_pages(writer)
    assert copied == pages
    assert checkpointer.passive >= 1 and not checkpointer.running
    checkpointer.start()  # a stopped checkpointer does not start again
    assert not checkpointer.running


def test_a_database_it_cannot_open_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpointer = Checkpointer(str(tmp_path / "missing" / "gateway.db"))
    checkpointer.start()
    checkpointer.stop()
    assert "cannot checkpoint" in caplog.text


async def test_the_daemons_sqlite_engine_checkpoints_in_its_own_thread(tmp_path: Path) -> None:
    path = tmp_path / "gateway.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}", background_checkpoints=True)
    checkpointer = checkpointer_of(engine)
    assert checkpointer is not None
    async with engine.begin() as conn:
        automatic = (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one()
        await conn.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    assert automatic == 0
    for n in range(3):
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO notes (body) VALUES (:n)"), {"n": str(n)})
    await dispose(engine)
    assert checkpointer_of(engine) is None
    assert checkpointer.passive >= 1 and checkpointer.failures == 0
    # Everything reached the database file: the last connection removed the log.
    assert f"{path.name}-wal" not in os.listdir(tmp_path)
    reader = sqlite3.connect(path)
    assert reader.execute("SELECT count(*) FROM notes").fetchone()[0] == 3
    reader.close()


async def test_other_engines_leave_checkpoints_to_sqlite(tmp_path: Path) -> None:
    """The CLI's short-lived engines keep SQLite's automatic checkpoint."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}")
    try:
        assert checkpointer_of(engine) is None
        async with engine.connect() as conn:
            automatic = (await conn.execute(text("PRAGMA wal_autocheckpoint"))).scalar_one()
        assert automatic == 1000
    finally:
        await dispose(engine)


async def test_the_gateway_checkpoints_in_a_thread_exactly_on_sqlite(
    make_gateway: GatewayFactory, db_url: str
) -> None:
    gateway = await make_gateway()
    checkpointer = checkpointer_of(gateway.engine)
    assert (checkpointer is not None) == db_url.startswith("sqlite")
    if checkpointer is not None:
        await gateway.pipeline.ingest(make_mail(), "test")
        assert checkpointer.running
        await gateway.close()
        assert not checkpointer.running
