"""SQLite WAL checkpoints from a thread of their own, off the event loop's back.

With WAL, a commit appends the transaction's pages to the log; a checkpoint copies
them into the database file. SQLite's automatic checkpoint runs inside the commit that
pushes the log past 1,000 pages, with two fsyncs: that commit blocks the event loop for
10-20 ms here, and the mean commit costs 0.54 ms where it costs 0.22 ms without it.

The daemon's connections therefore turn the automatic checkpoint off, and this thread
checkpoints instead, on a connection of its own (sqlite3 releases the GIL while it
works, so the copying and the fsyncs run beside the loop):

- PASSIVE, every `every` commits, and `quiet` seconds after the first commit since the
  last checkpoint at the latest (so a quiet daemon leaves little in the log). It never
  waits for anyone. Under steady writes it may never catch up with the end of
  the log, and SQLite only starts the log afresh once everything in it is copied;
- so once the log is past `limit` pages, RESTART: it waits for the transaction in
  progress, holds new writers back (the loop's BEGIN waits without blocking the loop,
  see sqlite_inline) while it copies the little that is left, and makes the next writer
  start the log from its beginning. That bounds the log.

A checkpoint that fails (the disk is full, a reader holds the log for longer than
`patience`) is logged and tried again at the next wake-up; committed data is safe in
the log meanwhile.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger(__name__)

EVERY_COMMITS = 64
QUIET_SECONDS = 0.5
LIMIT_PAGES = 4000  # 16 MiB of log with 4 KiB pages
PATIENCE_SECONDS = 2.0


class Checkpointer:
    """Checkpoints one database file's WAL from a daemon thread; `committed()` is called
    after every commit of the connections whose automatic checkpoint is off."""

    def __init__(
        self,
        database: str,
        *,
        every: int = EVERY_COMMITS,
        quiet: float = QUIET_SECONDS,
        limit: int = LIMIT_PAGES,
        patience: float = PATIENCE_SECONDS,
    ) -> None:
        self.database = database
        self._every = every
        self._quiet = quiet
        self._limit = limit
        self._patience = patience
        self._commits = 0  # since the last wake-up; approximate (two threads write it)
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.passive = 0  # checkpoints run, for tests and the curious
        self.restarts = 0
        self.failures = 0
        self.checkpointed = threading.Event()  # set after each checkpoint, for tests

    def start(self) -> None:
        """Start the thread, once (the engine calls this when it opens a connection)."""
        with self._lock:
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="sqlite-checkpoint", daemon=True
                )
                self._thread.start()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def committed(self) -> None:
        """Count a commit: the first after a checkpoint wakes the thread (which then
        waits for more or for quiet), every `every`-th makes it checkpoint now."""
        self._commits += 1
        if self._commits == 1 or self._commits >= self._every:
            self._wake.set()

    def stop(self) -> None:
        """Checkpoint what is left, close the thread's connection and end the thread."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(
                self.database,
                timeout=self._patience,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as error:
            log.error("sqlite: cannot checkpoint %s, its WAL will grow: %s", self.database, error)
            return
        try:
            while not self._stopping:
                self._wake.wait()  # the first commit since the last checkpoint
                self._wake.clear()
                if self._stopping:
                    break
                if self._commits < self._every:  # more commits, or quiet
                    self._wake.wait(self._quiet)
                    self._wake.clear()
                self._commits = 0
                self._checkpoint(connection)
            self._checkpoint(connection)
        finally:
            connection.close()

    def _checkpoint(self, connection: sqlite3.Connection) -> None:
        try:
            _busy, pages, _copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.passive += 1
            if pages > self._limit:
                connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
                self.restarts += 1
        except sqlite3.Error as error:
            self.failures += 1
            log.warning("sqlite: WAL checkpoint of %s failed: %s", self.database, error)
        self.checkpointed.set()
