"""IMAP mailbox channel (aioimaplib): push (IDLE) or poll, take in by UID, ack after commit.

Each message is recorded in the UID ledger in its own transaction; only after that
commit is it acknowledged on the server (flagged \\Seen, or moved to the processed
folder). A crash between the two leaves a ledger row not yet acked: the next connect
acknowledges it without taking the message in again. The highest UID in the ledger
is the cursor; a UIDVALIDITY change starts a re-scan in which dedupe (Message-ID and
content hash) keeps every message single. Fetches go in bounded UID ranges:
aioimaplib's response parsing grows quadratically with the size of one response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import aioimaplib
from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    wait_exponential_jitter,
)

from gateway.config import MailboxSettings
from gateway.pipeline import Pipeline, TemporaryFailure, UidSeen
from gateway.store.locks import LockLost, MailboxLock
from gateway.store.models import MailboxUid
from gateway.waits import until

log = logging.getLogger(__name__)

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")
_FETCH_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")
HEAD_BYTES = 64 * 1024  # what is kept of a message over the size limit
FETCH_BYTES = 32 * 1024 * 1024  # at most this much message data per FETCH answer
STEADY_SECONDS = 30.0  # a connection that lasts this long counts as working again
T = TypeVar("T")


class ImapError(Exception):
    """The IMAP server refused a command or the connection failed."""


# What the mailbox loop recovers from by reconnecting (with backoff).
RECOVERABLE = (
    ImapError,
    OSError,
    TimeoutError,
    aioimaplib.AioImapException,
    TemporaryFailure,
    LockLost,
    SQLAlchemyError,  # the ledger's database is down: same as a temporary failure
)


def _check(response: aioimaplib.Response, what: str) -> aioimaplib.Response:
    if response.result != "OK":
        detail = b" ".join(bytes(line) for line in response.lines[-1:]).decode(errors="replace")
        raise ImapError(f"{what} failed: {response.result} {detail}")
    return response


def uid_ranges(uids: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(uids), size):
        yield uids[start : start + size]


def uid_set(uids: list[int]) -> str:
    """A compact IMAP sequence set: 1:3,7,9:10."""
    parts: list[str] = []
    run_start = prev = uids[0]
    for uid in uids[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(f"{run_start}:{prev}" if run_start != prev else str(run_start))
        run_start = prev = uid
    parts.append(f"{run_start}:{prev}" if run_start != prev else str(run_start))
    return ",".join(parts)


def fetch_groups(chunk: list[int], sizes: dict[int, int], limit: int) -> Iterator[list[int]]:
    """UIDs in ascending order, grouped for FETCH: runs of messages within the size
    limit up to FETCH_BYTES together, each message over the limit alone."""
    group: list[int] = []
    total = 0
    for uid in sorted(chunk):
        size = sizes.get(uid, 0)
        if size > limit or (group and total + size > FETCH_BYTES):
            if group:
                yield group
            group, total = [], 0
        if size > limit:
            yield [uid]
            continue
        group.append(uid)
        total += size
    if group:
        yield group


def parse_sizes(lines: list[bytes | bytearray]) -> dict[int, int]:
    """{uid: size} from a UID FETCH (UID RFC822.SIZE) response."""
    sizes: dict[int, int] = {}
    for line in lines:
        raw = bytes(line)
        uid, size = _FETCH_UID.search(raw), _FETCH_SIZE.search(raw)
        if uid is not None and size is not None:
            sizes[int(uid.group(1))] = int(size.group(1))
    return sizes


def parse_fetch(lines: list[bytes | bytearray]) -> list[tuple[int, bytes]]:
    """(uid, raw message) pairs from a UID FETCH (UID BODY.PEEK[]) response.

    The UID item may come before the literal (the usual case) or after it.
    """
    out: list[tuple[int, bytes]] = []
    for index, line in enumerate(lines):
        if not isinstance(line, bytearray):
            continue
        before = bytes(lines[index - 1]) if index else b""
        match = _FETCH_UID.search(before)
        if match is None and index + 1 < len(lines):
            match = _FETCH_UID.search(bytes(lines[index + 1]))
        if match is not None:
            out.append((int(match.group(1)), bytes(line)))
    return out


async def _disconnect(client: aioimaplib.IMAP4) -> None:
    """Log out if the server still listens, and always close the socket."""
    transport = getattr(client.protocol, "transport", None)
    alive = transport is not None and not transport.is_closing()
    if alive and client.protocol.state in ("AUTH", "SELECTED"):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.logout(), timeout=2)
    if transport is not None:
        transport.close()


@dataclass
class _Health:
    """Log a mailbox's troubles once per change of state, not once per retry."""

    name: str
    trouble: str | None = None
    failures: int = 0  # since start: reconnects, for the tests and the metrics

    def failing(self, what: str) -> None:
        self.failures += 1
        if what != self.trouble:
            log.error("mailbox %s: %s; retrying with backoff", self.name, what)
        self.trouble = what

    def working(self) -> None:
        if self.trouble is not None:
            log.info("mailbox %s: connected again", self.name)
        self.trouble = None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ImapMailbox:
    def __init__(
        self,
        settings: MailboxSettings,
        sessions: async_sessionmaker[AsyncSession],
        pipeline: Pipeline,
        engine: AsyncEngine,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._pipeline = pipeline
        self._client: aioimaplib.IMAP4 | None = None
        self._uidvalidity = 0
        self.lock = MailboxLock(engine, settings.name)
        self.health = _Health(settings.name)
        self.idles = 0  # IDLE commands issued
        self._lost = asyncio.Event()  # set by the client when the connection drops
        self._idle_works = settings.idle  # False once a server refused IDLE
        self._news = False  # mail was announced while the last search ran
        # Set once the first attempt is over: logged in, failed, or standing by for the
        # daemon that holds the mailbox. The daemon is ready when every mailbox's is.
        self.first_attempt = asyncio.Event()
        self.standing_by = False  # another daemon reads this mailbox (PostgreSQL lock)

    @property
    def source(self) -> str:
        return f"imap:{self.settings.name}"

    @property
    def connected(self) -> bool:
        return self._client is not None

    async def connect(self) -> None:
        s = self.settings
        lost = self._lost = asyncio.Event()  # a fresh one per connection
        # IMAP4 with an SSL context is IMAP4_SSL; only IMAP4 takes conn_lost_cb.
        client = aioimaplib.IMAP4(
            host=s.host,
            port=s.port,
            timeout=s.timeout_seconds,
            conn_lost_cb=lambda _exc: lost.set(),
            ssl_context=ssl.create_default_context() if s.security == "tls" else None,
        )
        try:
            await client.wait_hello_from_server()
            _check(await client.login(s.username, s.secret()), "LOGIN")
            if s.processed_folder:
                await self._ensure_folder(client, s.processed_folder)
            selected = _check(await client.select(s.folder), f"SELECT {s.folder}")
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            await _disconnect(client)
            raise ImapError(f"{s.host}:{s.port}: {_describe(exc)}") from exc
        except ImapError:
            await _disconnect(client)
            raise
        match = next(
            (m for line in selected.lines if (m := _UIDVALIDITY.search(bytes(line)))), None
        )
        if match is None:
            await _disconnect(client)
            raise ImapError(f"SELECT {s.folder}: server sent no UIDVALIDITY")
        self._uidvalidity = int(match.group(1))
        self._client = client
        self.first_attempt.set()

    @staticmethod
    async def _ensure_folder(client: aioimaplib.IMAP4, folder: str) -> None:
        if not client.has_capability("MOVE"):
            raise ImapError(
                f"processed_folder {folder!r} needs the IMAP MOVE capability, "
                "which this server does not offer"
            )
        listed = _check(await client.list('""', _quoted(folder)), f"LIST {folder}")
        if not any(bytes(line).strip() for line in listed.lines[:-1]):  # no such folder
            _check(await client.create(_quoted(folder)), f"CREATE {folder}")
            log.info("created folder %s for processed mail", folder)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _disconnect(client)

    async def _cursor(self) -> int:
        """The highest UID in the ledger for the current UIDVALIDITY (0: read all)."""
        name = self.settings.name
        async with self._sessions() as session:
            last = await session.scalar(
                select(func.max(MailboxUid.uid)).where(
                    MailboxUid.mailbox == name, MailboxUid.uidvalidity == self._uidvalidity
                )
            )
            if last is None:
                other = await session.scalar(
                    select(MailboxUid.uidvalidity)
                    .where(MailboxUid.mailbox == name)
                    .order_by(MailboxUid.at.desc())
                    .limit(1)
                )
                if other is not None:
                    log.warning(
                        "mailbox %s: UIDVALIDITY changed %s -> %s, rescanning "
                        "(dedupe keeps every message single)",
                        name,
                        other,
                        self._uidvalidity,
                    )
        return int(last or 0)

    async def _unacked(self) -> list[int]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(MailboxUid.uid)
                .where(
                    MailboxUid.mailbox == self.settings.name,
                    MailboxUid.uidvalidity == self._uidvalidity,
                    MailboxUid.acked.is_(False),
                )
                .order_by(MailboxUid.uid)
            )
            return list(rows)

    async def _command(
        self, what: str, call: Awaitable[aioimaplib.Response], *, bounded: bool = True
    ) -> aioimaplib.Response:
        """One IMAP command, ended by a lost connection or (when `bounded`) by
        timeout_seconds: aioimaplib times out only some commands and fails none when
        the connection drops. FETCH is not bounded (a large answer takes its time;
        aioimaplib stops it when the server goes silent)."""
        answer = await self._bounded(what, call, bounded=bounded)
        return _check(answer, what)

    async def _bounded(self, what: str, call: Awaitable[T], *, bounded: bool = True) -> T:
        task = asyncio.ensure_future(call)
        dropped = asyncio.ensure_future(self._lost.wait())
        timeout = self.settings.timeout_seconds if bounded else None
        try:
            done, _ = await asyncio.wait(
                {task, dropped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            dropped.cancel()
            # Unanswered (timed out, connection lost, or our caller was cancelled): stop
            # waiting for it; aioimaplib still reads and drops the answer.
            task.cancel()
        if task in done:
            return task.result()
        raise ImapError(f"{what}: {'connection lost' if dropped in done else 'timed out'}")

    async def _new_uids(self, after: int) -> list[int]:
        """UIDs above `after`. A NOOP goes out together with the SEARCH: aioimaplib drops
        an untagged EXISTS unless a NOOP is pending, and the server announces a new
        message only once, so mail that arrives while the search runs is seen here
        (`self._news`) instead of being missed until the next IDLE renewal."""
        assert self._client is not None
        response, ping = await asyncio.gather(
            self._command("UID SEARCH", self._client.uid_search(f"UID {after + 1}:*")),
            self._command("NOOP", self._client.noop()),
        )
        self._news = any(b"EXISTS" in bytes(line) for line in ping.lines)
        uids: list[int] = []
        for line in response.lines[:-1]:
            words = bytes(line).split()
            if words[:1] == [b"SEARCH"]:  # aioimaplib usually strips the name
                words = words[1:]
            if words and all(word.isdigit() for word in words):
                uids.extend(int(word) for word in words)
        # "n:*" always matches the highest UID, even when it is below n.
        return sorted(uid for uid in set(uids) if uid > after)

    async def drain(self, stop: asyncio.Event | None = None) -> int:
        """Take in every message newer than the cursor; returns how many were handled."""
        if self._client is None:
            await self.connect()
        assert self._client is not None
        backlog = await self._unacked()
        if backlog:
            log.info(
                "mailbox %s: acknowledging %d message(s) committed before a restart",
                self.settings.name,
                len(backlog),
            )
            for chunk in uid_ranges(backlog, self.settings.fetch_batch):
                await self._acknowledge(chunk)
        handled = 0
        uids = await self._new_uids(await self._cursor())
        for chunk in uid_ranges(uids, self.settings.fetch_batch):
            if stop is not None and stop.is_set():
                break
            done: list[int] = []
            try:
                await self._take_in(chunk, done, stop)
            finally:
                handled += len(done)
                if done:
                    await self._acknowledge(done)
        return handled

    async def _take_in(self, chunk: list[int], done: list[int], stop: asyncio.Event | None) -> None:
        """Fetch and ingest one UID range in ascending UID order (the highest UID in the
        ledger is the cursor, so none may be passed over); `done` collects what was
        committed. Bodies are fetched in groups of at most FETCH_BYTES; a message over
        the size limit only by its head."""
        assert self._client is not None
        limit = self.settings.max_message_bytes
        sizes = parse_sizes(
            (
                await self._command(
                    "UID FETCH SIZE", self._client.uid("fetch", uid_set(chunk), "(UID RFC822.SIZE)")
                )
            ).lines
        )
        for group in fetch_groups(chunk, sizes, limit):
            if stop is not None and stop.is_set():
                break
            oversize = len(group) == 1 and sizes.get(group[0], 0) > limit
            part = f"BODY.PEEK[]<0.{HEAD_BYTES}>" if oversize else "BODY.PEEK[]"
            response = await self._command(
                "UID FETCH",
                self._client.uid("fetch", uid_set(group), f"(UID {part})"),
                bounded=False,
            )
            bodies = dict(parse_fetch(response.lines))
            for uid in group:
                raw = bodies.get(uid)
                if raw is None:  # expunged meanwhile by someone else: nothing to take in
                    log.warning("mailbox %s: UID %s is gone from the server", self.source, uid)
                    continue
                ack = UidSeen(self.settings.name, self._uidvalidity, uid)
                where = f"{self.source}:{uid}"
                if oversize:
                    await self._pipeline.quarantine_oversize(raw, sizes[uid], limit, where, ack=ack)
                else:
                    await self._pipeline.ingest(raw, where, ack=ack)
                done.append(uid)
                if stop is not None and stop.is_set():
                    return

    async def _acknowledge(self, uids: list[int]) -> None:
        """Flag (or move) committed messages on the server, then mark them acked."""
        assert self._client is not None
        folder = self.settings.processed_folder
        if folder:
            await self._command(
                "UID MOVE", self._client.uid("move", uid_set(uids), _quoted(folder))
            )
        else:
            await self._command(
                "UID STORE", self._client.uid("store", uid_set(uids), "+FLAGS.SILENT", r"(\Seen)")
            )
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(MailboxUid)
                .where(
                    MailboxUid.mailbox == self.settings.name,
                    MailboxUid.uidvalidity == self._uidvalidity,
                    MailboxUid.uid.in_(uids),
                )
                .values(acked=True)
            )

    async def wait_for_mail(self, stop: asyncio.Event) -> None:
        """Until new mail may be there: IDLE when offered, else the poll interval."""
        client = self._client
        if client is not None and self._idle_works and client.has_capability("IDLE"):
            await self._idle(client, stop)
            return
        await until(stop, self.settings.poll_seconds)

    async def _idle(self, client: aioimaplib.IMAP4, stop: asyncio.Event) -> None:
        renew = self.settings.idle_renew_seconds
        try:
            idle = await self._bounded("IDLE", client.idle_start(timeout=renew))
        except aioimaplib.Abort as exc:  # the server offers IDLE but refuses it
            log.warning("mailbox %s: IDLE refused (%s); polling instead", self.source, exc)
            self._idle_works = False
            return
        self.idles += 1
        stopper = asyncio.ensure_future(stop.wait())
        dropped = asyncio.ensure_future(self._lost.wait())
        try:
            while client.has_pending_idle():
                push = asyncio.ensure_future(client.wait_server_push(timeout=renew + 30))
                done, _ = await asyncio.wait(
                    {push, stopper, dropped, idle}, return_when=asyncio.FIRST_COMPLETED
                )
                if dropped in done:
                    push.cancel()
                    raise ImapError("connection lost while waiting in IDLE")
                if push not in done:
                    push.cancel()
                    break
                lines = push.result()  # TimeoutError: the server went silent
                if lines == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    break  # time to renew the IDLE
                if any(b"EXISTS" in bytes(line) for line in lines):
                    break
        finally:
            stopper.cancel()
            dropped.cancel()
            if client.has_pending_idle() and not self._lost.is_set():
                client.idle_done()
        await self._command("IDLE", idle)

    async def catch_up(self, stop: asyncio.Event) -> None:
        """Drain until a search finds nothing and no mail was announced meanwhile: then
        the next command is IDLE, and the server announces what arrives after that."""
        while not stop.is_set():
            if not await self.drain(stop) and not self._news:
                return

    async def _start(self, stop: asyncio.Event) -> None:
        """Connect and take in what waits: the step that is retried with backoff."""
        await self.close()
        await self.connect()
        await self.catch_up(stop)

    async def _serve(self, stop: asyncio.Event) -> None:
        """Wait for mail and take it in, until stopped or an error."""
        while not stop.is_set():
            await self.wait_for_mail(stop)
            if stop.is_set():
                break
            await self.lock.check()
            await self.catch_up(stop)

    async def run(self, stop: asyncio.Event) -> None:
        """Read this mailbox until stopped: lock, connect, drain, wait; recover from errors.

        Reconnecting backs off (tenacity); so does a connection that fails again within
        STEADY_SECONDS of being made, so a flapping server cannot make a tight loop.
        """
        name = self.settings.name
        standby_logged = False
        flaps = 0
        try:
            while not stop.is_set():
                try:
                    if not await self.lock.acquire():
                        if not standby_logged:
                            log.info("mailbox %s: read by another daemon; standing by", name)
                            standby_logged = True
                        self.standing_by = True
                        self.first_attempt.set()
                        await until(stop, self.settings.lock_retry_seconds)
                        continue
                    self.standing_by = False
                    if standby_logged:
                        log.info("mailbox %s: taken over from another daemon", name)
                        standby_logged = False
                    async for attempt in self._retrying(stop):
                        with attempt:
                            await self._start(stop)
                    if flaps <= 1:  # not flapping (yet): say so now
                        self.health.working()
                    serving = asyncio.ensure_future(self._serve(stop))
                    done, _ = await asyncio.wait({serving}, timeout=STEADY_SECONDS)
                    if not done:
                        flaps = 0
                        self.health.working()
                    await serving
                except RECOVERABLE as exc:
                    self._failed(_describe(exc))
                    await self.close()
                    flaps += 1
                    if flaps > 1:  # failed again soon after reconnecting: back off
                        delay = min(2.0 ** (flaps - 1), self.settings.reconnect_max_seconds)
                        await until(stop, delay)
                except Exception as exc:  # a bug: keep the daemon, slow down, say it once
                    if self.health.trouble != _describe(exc):
                        log.exception("mailbox %s: unexpected error", name)
                    self._failed(_describe(exc))
                    await self.close()
                    await self.lock.release()
                    await until(stop, min(10.0, self.settings.reconnect_max_seconds))
        finally:
            await self.close()
            await self.lock.release()

    def _failed(self, what: str) -> None:
        self.health.failing(what)
        self.first_attempt.set()

    def _retrying(self, stop: asyncio.Event) -> AsyncRetrying:
        """Capped exponential backoff with jitter; gives up only when stopping."""

        def note(state: RetryCallState) -> None:
            if state.outcome is not None and (exc := state.outcome.exception()) is not None:
                self._failed(_describe(exc))

        async def sleep(seconds: float) -> None:
            await until(stop, seconds)

        return AsyncRetrying(
            retry=retry_if_exception_type(RECOVERABLE),
            wait=wait_exponential_jitter(initial=1, max=self.settings.reconnect_max_seconds),
            stop=lambda _state: stop.is_set(),
            sleep=sleep,
            before_sleep=note,
            reraise=True,
        )


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'
