"""SQLite run on the event loop's own thread, for SQLAlchemy's aiosqlite dialect.

aiosqlite runs every driver call (execute, fetch, close, commit) in a worker thread and
hands the result back through the event loop: about 100 µs per call here, 300 µs per
statement, more than SQLite itself needs for the statements a message costs (20-50 µs
each; with WAL and synchronous=NORMAL a commit does not wait for the disk). This module
gives SQLAlchemy an object with aiosqlite's interface whose calls run SQLite directly,
passed as `async_creator`: the dialect, the URL (`sqlite+aiosqlite://`) and everything
above stay as they are.

The one wait SQLite can have, another process holding the write lock (the CLI, a
second daemon), must not block the loop: the driver's own busy wait is off, and a
statement that finds the database locked is retried with `await asyncio.sleep`, so the
loop keeps serving IMAP, SMTP and the watchdog, until `busy_timeout` has passed.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gateway.store.checkpoint import Checkpointer

_LOCKED = ("database is locked", "database table is locked")
_FIRST_WAIT = 0.001
_LONGEST_WAIT = 0.05


def _locked(error: sqlite3.OperationalError) -> bool:
    return any(str(error).startswith(text) for text in _LOCKED)


async def retrying_busy(call: Callable[[], Any], patience: float) -> Any:
    """Run `call`; while the database is locked by someone else, wait without blocking
    the loop and try again, for at most `patience` seconds."""
    deadline: float | None = None
    wait = _FIRST_WAIT
    while True:
        try:
            return call()
        except sqlite3.OperationalError as error:
            if not _locked(error):
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + patience
            elif now >= deadline:
                raise
            await asyncio.sleep(min(wait, max(0.0, deadline - now)))
            wait = min(wait * 2, _LONGEST_WAIT)


class InlineCursor:
    """aiosqlite's Cursor interface over a sqlite3 cursor, without a thread."""

    def __init__(self, cursor: sqlite3.Cursor, timeout: float) -> None:
        self._cursor = cursor
        self._timeout = timeout

    async def __aenter__(self) -> InlineCursor:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self._cursor.close()

    def __aiter__(self) -> InlineCursor:
        return self

    async def __anext__(self) -> Any:
        row = self._cursor.fetchone()
        if row is None:
            raise StopAsyncIteration
        return row

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    async def execute(self, sql: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        cursor = self._cursor
        if parameters is None:
            await retrying_busy(lambda: cursor.execute(sql), self._timeout)
        else:
            await retrying_busy(lambda: cursor.execute(sql, parameters), self._timeout)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> InlineCursor:
        rows = list(parameters)
        await retrying_busy(lambda: self._cursor.executemany(sql, rows), self._timeout)
        return self

    async def fetchone(self) -> Any:
        return self._cursor.fetchone()

    async def fetchmany(self, size: int | None = None) -> list[Any]:
        return self._cursor.fetchmany(size if size is not None else self._cursor.arraysize)

    async def fetchall(self) -> list[Any]:
        return self._cursor.fetchall()

    async def close(self) -> None:
        self._cursor.close()


class _Immediate:
    """What SQLAlchemy's dialect puts work on aiosqlite's thread queue with (setting
    the isolation level): here the work runs at once."""

    @staticmethod
    def put_nowait(item: tuple[asyncio.Future[Any], Callable[[], Any]]) -> None:
        future, function = item
        try:
            future.set_result(function())
        except Exception as error:  # handed to the awaiting caller
            future.set_exception(error)


class InlineConnection:
    """aiosqlite's Connection interface over a sqlite3 connection, without a thread."""

    _tx = _Immediate()

    def __init__(
        self,
        connection: sqlite3.Connection,
        timeout: float,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        self._conn = connection
        self._connection: sqlite3.Connection | None = connection
        self._timeout = timeout
        self._checkpointer = checkpointer

    @property
    def sqlite(self) -> sqlite3.Connection:
        """The sqlite3 connection itself (store/direct.py runs statements on it)."""
        return self._conn

    @property
    def busy_timeout(self) -> float:
        return self._timeout

    @property
    def isolation_level(self) -> str | None:
        return self._conn.isolation_level

    def cursor(self) -> InlineCursor:
        return InlineCursor(self._conn.cursor(), self._timeout)

    async def begin_immediate(self) -> None:
        """BEGIN IMMEDIATE, waiting (without blocking the loop) for another writer."""
        connection = self._conn
        await retrying_busy(lambda: connection.execute("BEGIN IMMEDIATE"), self._timeout)

    async def commit(self) -> None:
        await retrying_busy(self._conn.commit, self._timeout)
        if self._checkpointer is not None:
            self._checkpointer.committed()

    async def rollback(self) -> None:
        self._conn.rollback()

    async def close(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    def stop(self) -> None:
        if self._connection is not None:
            self._connection = None
            self._conn.close()

    async def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._conn.create_function(*args, **kwargs)


def async_creator(
    database: str, busy_timeout: float, checkpointer: Checkpointer | None = None
) -> Callable[[], Any]:
    """The `async_creator` for create_async_engine: opens `database` on the loop thread.
    With a checkpointer, the connections leave WAL checkpoints to its thread."""

    async def connect() -> InlineConnection:
        # timeout=0: the busy wait happens in retrying_busy, off the loop's back.
        # check_same_thread=False: the pool may close a connection from another thread.
        connection = sqlite3.connect(database, timeout=0, check_same_thread=False)
        if checkpointer is not None:
            connection.execute("PRAGMA wal_autocheckpoint=0")
            checkpointer.start()
        return InlineConnection(connection, busy_timeout, checkpointer)

    return connect
