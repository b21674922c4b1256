"""IMAP mailbox channel (aioimaplib): fetch new mail by UID, flag it only after commit.

The cursor (UIDVALIDITY + last UID) is advanced in the message's own transaction, so a
crash re-fetches at most the messages whose \\Seen flag was not yet stored, and the
pipeline's dedupe makes that harmless. Fetches go in bounded UID ranges: aioimaplib's
response parsing grows quadratically with the size of one FETCH response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
from collections.abc import Iterator

import aioimaplib
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.config import MailboxSettings
from gateway.pipeline import CursorAdvance, Pipeline, TemporaryFailure
from gateway.store.models import MailboxCursor

log = logging.getLogger(__name__)

_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")


class ImapError(Exception):
    """The IMAP server refused a command or the connection failed."""


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
    if client.protocol is not None and client.protocol.state in ("AUTH", "SELECTED"):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.logout(), timeout=2)
    transport = getattr(client.protocol, "transport", None)
    if transport is not None:
        transport.close()


class ImapMailbox:
    def __init__(
        self,
        settings: MailboxSettings,
        sessions: async_sessionmaker[AsyncSession],
        pipeline: Pipeline,
    ) -> None:
        self.settings = settings
        self._sessions = sessions
        self._pipeline = pipeline
        self._client: aioimaplib.IMAP4 | None = None
        self._uidvalidity = 0

    @property
    def source(self) -> str:
        return f"imap:{self.settings.name}"

    async def connect(self) -> None:
        s = self.settings
        if s.security == "tls":
            client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(
                host=s.host,
                port=s.port,
                timeout=s.timeout_seconds,
                ssl_context=ssl.create_default_context(),
            )
        else:
            client = aioimaplib.IMAP4(host=s.host, port=s.port, timeout=s.timeout_seconds)
        try:
            await client.wait_hello_from_server()
            _check(await client.login(s.username, s.secret()), "LOGIN")
            selected = _check(await client.select(s.folder), f"SELECT {s.folder}")
        except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
            await _disconnect(client)
            raise ImapError(f"{s.host}:{s.port}: {type(exc).__name__}: {exc}") from exc
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

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _disconnect(client)

    async def _cursor(self) -> int:
        """The last UID committed for this mailbox; 0 after a UIDVALIDITY change."""
        async with self._sessions() as session:
            row = await session.get(MailboxCursor, self.settings.name)
        if row is None:
            return 0
        if row.uidvalidity != self._uidvalidity:
            log.warning(
                "mailbox %s: UIDVALIDITY changed %s -> %s, rescanning (dedupe keeps it single)",
                self.settings.name,
                row.uidvalidity,
                self._uidvalidity,
            )
            return 0
        return row.last_uid

    async def _new_uids(self, after: int) -> list[int]:
        assert self._client is not None
        response = _check(await self._client.uid_search(f"UID {after + 1}:*"), "UID SEARCH")
        uids: list[int] = []
        for line in response.lines[:-1]:
            uids.extend(int(tok) for tok in bytes(line).split() if tok.isdigit())
        # "n:*" always matches the highest UID, even when it is below n.
        return sorted(uid for uid in set(uids) if uid > after)

    async def drain(self, stop: asyncio.Event | None = None) -> int:
        """Take in every message newer than the cursor; returns how many were handled."""
        if self._client is None:
            await self.connect()
        assert self._client is not None
        handled = 0
        uids = await self._new_uids(await self._cursor())
        for chunk in uid_ranges(uids, self.settings.fetch_batch):
            if stop is not None and stop.is_set():
                break
            response = _check(
                await self._client.uid("fetch", uid_set(chunk), "(UID BODY.PEEK[])"), "UID FETCH"
            )
            done: list[int] = []
            try:
                for uid, raw in parse_fetch(response.lines):
                    cursor = CursorAdvance(self.settings.name, self._uidvalidity, uid)
                    await self._pipeline.ingest(raw, f"{self.source}:{uid}", cursor=cursor)
                    done.append(uid)
                    handled += 1
                    if stop is not None and stop.is_set():
                        break
            finally:
                if done:
                    await self._mark_seen(done)
        return handled

    async def _mark_seen(self, uids: list[int]) -> None:
        assert self._client is not None
        _check(
            await self._client.uid("store", uid_set(uids), "+FLAGS.SILENT", r"(\Seen)"),
            "UID STORE",
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until stopped; connection problems are logged once and retried."""
        failing = False
        delay = 1.0
        while not stop.is_set():
            try:
                await self.drain(stop)
                if failing:
                    log.info("mailbox %s: connected again", self.settings.name)
                failing, delay = False, 1.0
                wait = self.settings.poll_seconds
            except (
                ImapError,
                OSError,
                TimeoutError,
                aioimaplib.AioImapException,
                TemporaryFailure,
            ) as exc:
                if not failing:
                    log.error("mailbox %s: %s; retrying with backoff", self.settings.name, exc)
                failing = True
                await self.close()
                wait, delay = delay, min(delay * 2, 300.0)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wait)
        await self.close()
