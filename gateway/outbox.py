"""The outbox relay: claim due notifications, send them, record the result.

A notification is sent at most once. The relay claims a batch (state `claimed`, a
claim token and a lease). For each row it opens the SMTP envelope (MAIL, RCPT: nothing
is delivered yet), then records `sending` with a compare-and-set on its token (a row
another relay took over is skipped) and commits that BEFORE the DATA, and records
`sent` right after the server's 250. The window in which a message may have arrived
without our knowing is from DATA to that commit: a connection lost during DATA marks
the row `unknown`, and so does a relay that dies in the window (when its lease runs
out). `unknown` rows are not resent by themselves (`outbox retry ID` sends one again
after a look at the recipient's side). A crash anywhere else repeats nothing and loses
nothing: claimed rows return to the queue when the claim lease runs out.

SMTP 5xx replies (except 552) are permanent: the row is `failed` at once. 4xx replies
and connection errors before DATA are retried with backoff until `retry_hours` after
creation.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import aiosmtplib
from sqlalchemy import (
    ColumnElement,
    Executable,
    Select,
    TextClause,
    bindparam,
    func,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from gateway import logs
from gateway.config import OutboundSettings, Settings
from gateway.domain.reference import find_reference
from gateway.mail.compose import OutgoingMail, build_message
from gateway.pipeline import Clock, utc_now
from gateway.store import prepared
from gateway.store.db import is_postgresql
from gateway.store.models import OUTBOX_STATES, OUTBOX_WAITING, OutboxMessage
from gateway.waits import until

log = logging.getLogger(__name__)

STATES = OUTBOX_STATES
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=1)


class PermanentFailure(Exception):
    """The receiving server refused the message for good."""


class TransientFailure(Exception):
    """The message could not be delivered now; try again later."""


class ConnectionFailure(TransientFailure):
    """The server could not be reached at all; the rest of the batch waits too."""


class InDoubt(Exception):
    """The connection failed after the message was handed over: it may have arrived."""


# Called right before the message itself is handed over (SMTP DATA): records that the
# delivery starts; False means the row is no longer ours and must not be sent.
Handover = Callable[[], Awaitable[bool]]


class Transport(Protocol):
    """Delivers one message; may keep a connection open between calls until close().

    Returns False when `handover` said no (nothing was delivered)."""

    async def send(
        self, message: bytes, sender: str, recipient: str, handover: Handover
    ) -> bool: ...

    async def close(self) -> None: ...
    def abort(self) -> None: ...


def _is_permanent(code: int) -> bool:
    return code >= 500 and code != 552


_CONNECT_ERRORS = (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected, OSError)


class SmtpTransport:
    """One SMTP connection per batch of notifications (aiosmtplib)."""

    def __init__(self, settings: OutboundSettings) -> None:
        self._settings = settings
        self._client: aiosmtplib.SMTP | None = None

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self._settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=s.timeout_seconds,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
        )
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=0.2, max=2),
            retry=retry_if_exception_type(_CONNECT_ERRORS),
            reraise=True,
        ):
            with attempt:
                await client.connect()
        if s.username:
            try:
                await client.login(s.username, s.secret())
            except BaseException:
                client.close()
                raise
        return client

    async def close(self) -> None:
        if self._client is not None and self._client.is_connected:
            try:
                await self._client.quit()
            except aiosmtplib.SMTPException:
                self._client.close()
        self._client = None

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is None or not self._client.is_connected:
            try:
                self._client = await self._connect()
            except (*_CONNECT_ERRORS, aiosmtplib.SMTPException) as exc:
                self._client = None
                raise ConnectionFailure(f"{type(exc).__name__}: {exc}") from exc
        return self._client

    async def _envelope(self, sender: str, recipient: str) -> aiosmtplib.SMTP:
        """MAIL FROM and RCPT TO on an open connection (reconnecting once if the server
        dropped an idle one); nothing is delivered yet."""
        reused = self._client is not None and self._client.is_connected
        client = await self._connected()
        try:
            await client.mail(sender)
        except aiosmtplib.SMTPServerDisconnected:
            if not reused:
                raise
            self._client = None
            client = await self._connected()
            await client.mail(sender)
        await client.rcpt(recipient)
        return client

    async def send(self, message: bytes, sender: str, recipient: str, handover: Handover) -> bool:
        try:
            client = await self._envelope(sender, recipient)
            try:
                taken = await handover()
            except BaseException:
                self.abort()  # the envelope is left open: never reuse this connection
                raise
            if not taken:
                await client.rset()
                return False
        except aiosmtplib.SMTPResponseException as exc:
            raise await self._refused(exc) from exc
        except (*_CONNECT_ERRORS, aiosmtplib.SMTPException) as exc:
            self._client = None
            raise TransientFailure(f"{type(exc).__name__}: {exc}") from exc
        try:
            await client.data(message, timeout=self._settings.data_timeout_seconds)
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code < 400:  # not a refusal: a garbled reply, the message may be there
                self.abort()
                raise InDoubt(f"unreadable reply to DATA: {exc.code} {exc.message}") from exc
            raise await self._refused(exc) from exc  # a definite refusal of the message
        except (*_CONNECT_ERRORS, aiosmtplib.SMTPException) as exc:
            self._client = None
            raise InDoubt(f"connection failed during DATA: {type(exc).__name__}: {exc}") from exc
        return True

    async def _refused(self, exc: aiosmtplib.SMTPResponseException) -> Exception:
        """The failure for a refusal, after clearing the envelope for the next message."""
        await self._reset()
        text = f"{exc.code} {exc.message}"
        return PermanentFailure(text) if _is_permanent(exc.code) else TransientFailure(text)

    def abort(self) -> None:
        """Close the connection at once, without QUIT."""
        if self._client is not None:
            self._client.close()
        self._client = None

    async def _reset(self) -> None:
        """Clear a refused envelope so the connection can carry the next message."""
        if self._client is None:
            return
        try:
            await self._client.rset()
        except (*_CONNECT_ERRORS, aiosmtplib.SMTPException):
            self._client = None


class MaildirTransport:
    """Writes each message as a file into a maildir (demo and tests; nothing leaves)."""

    def __init__(self, directory: str) -> None:
        self._root = Path(directory)

    async def close(self) -> None:
        return None

    def abort(self) -> None:
        return None

    def _deliver(self, data: bytes) -> None:
        for sub in ("tmp", "new", "cur"):
            (self._root / sub).mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}.P{os.getpid()}.{socket.gethostname()}"
        tmp = self._root / "tmp" / name
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, self._root / "new" / name)

    async def send(self, message: bytes, sender: str, recipient: str, handover: Handover) -> bool:
        envelope = f"Return-Path: <{sender}>\r\nX-Original-To: {recipient}\r\n".encode()
        if not await handover():
            return False
        try:
            await asyncio.to_thread(self._deliver, envelope + message)
        except OSError as exc:
            raise TransientFailure(f"maildir: {exc}") from exc
        return True


def make_transport(settings: OutboundSettings) -> Transport:
    if settings.transport == "maildir":
        return MaildirTransport(settings.maildir)
    return SmtpTransport(settings)


def backoff(attempts: int) -> timedelta:
    """Delay before the next try after `attempts` failed ones: 30 s doubling, at most 1 h."""
    delay: timedelta = BACKOFF_BASE * (2 ** max(0, attempts - 1))
    return min(delay, BACKOFF_MAX)


@dataclass
class RelayStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0


_OUTBOX = prepared.table_of(OutboxMessage)
# The rows still to act on, in the words of the partial index ix_outbox_waiting.
_WAITING = text(OUTBOX_WAITING)
# A delivery starts: the row is ours (claimed with our token) and now `sending`.
_HANDOVER = (
    update(_OUTBOX)
    .where(
        _OUTBOX.c.id == bindparam("row_id"),
        _OUTBOX.c.claim_token == bindparam("token"),
        _OUTBOX.c.state == "claimed",
    )
    .values(state="sending", next_attempt_at=bindparam("lease"))
)


@functools.cache
def _record_attempt(columns: tuple[str, ...]) -> Executable:
    """The UPDATE that records an attempt's outcome in these columns (one per shape)."""
    return (
        update(_OUTBOX)
        .where(_OUTBOX.c.id == bindparam("row_id"), _OUTBOX.c.claim_token == bindparam("token"))
        .values({column: bindparam(column) for column in columns})
    )


def due(now: datetime) -> tuple[TextClause | ColumnElement[bool], ...]:
    """The conditions of a notification due now: pending, or claimed by a relay whose
    claim ran out (a `sending` one is not resent by itself); in the words of the
    partial index ix_outbox_waiting."""
    return (_WAITING, OutboxMessage.state != "sending", OutboxMessage.next_attempt_at <= now)


def due_rows(now: datetime, limit: int) -> Select[OutboxMessage]:
    """The notifications due now, longest due first: in the order of the partial index,
    which SQLite then reads instead of the whole outbox."""
    return (
        select(OutboxMessage)
        .where(*due(now))
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )


class Relay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        *,
        transport: Transport | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._transport = transport or make_transport(settings.outbound)
        # The outbound settings our own transport was made from (None: one was given).
        self._made_from = None if transport is not None else settings.outbound
        self.clock = clock
        self.totals = RelayStats()  # everything this relay did since it was built

    def reconfigure(self, settings: Settings) -> None:
        """Use new settings from the next notification on; a changed outbound server
        is connected to before the next batch, never in the middle of a delivery."""
        self._settings = settings

    async def _current_transport(self) -> None:
        outbound = self._settings.outbound
        if self._made_from is not None and outbound != self._made_from:
            await self._transport.close()
            self._transport, self._made_from = make_transport(outbound), outbound

    @property
    def _sending_lease(self) -> timedelta:
        """How long a delivery may take before its row is in doubt: aiosmtplib allows
        data_timeout_seconds for the answer to DATA and again for the final reply, plus
        timeout_seconds for writing and a margin."""
        outbound = self._settings.outbound
        return timedelta(seconds=outbound.timeout_seconds * 3 + outbound.data_timeout_seconds * 2)

    async def _claim(self) -> tuple[str, list[OutboxMessage]]:
        """Mark dead relays' deliveries in doubt, then claim a batch of due rows."""
        now = self.clock()
        token = secrets.token_hex(8)
        async with self._sessions() as session, session.begin():
            doubtful = await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.state == "sending", OutboxMessage.next_attempt_at <= now)
                .values(
                    state="unknown",
                    attempts=OutboxMessage.attempts + 1,
                    last_error="the relay stopped during delivery: it may have been "
                    "delivered, so it is not resent (outbox retry ID sends it again)",
                )
            )
            if doubtful.rowcount:  # type: ignore[attr-defined]
                log.error(
                    "outbox: %d notification(s) in doubt after a relay stopped mid-delivery; "
                    "see `outbox list --state unknown`",
                    doubtful.rowcount,  # type: ignore[attr-defined]
                )
            query = due_rows(now, self._settings.outbound.batch_size)
            if is_postgresql(session):
                query = query.with_for_update(skip_locked=True)
            rows = list(await session.scalars(query))
            lease = now + timedelta(seconds=self._settings.outbound.claim_seconds)
            for row in rows:
                row.state = "claimed"
                row.claim_token = token
                row.next_attempt_at = lease
        return token, rows

    async def _write(
        self,
        token: str,
        results: list[tuple[OutboxMessage, dict[str, Any]]],
        handover: OutboxMessage | None = None,
    ) -> bool:
        """One transaction: record results of earlier rows and, when given, that the
        handover of `handover` starts (False if another relay took that row over)."""
        taken = True
        async with self._sessions() as session, session.begin():
            for row, values in results:
                await prepared.execute(
                    session,
                    _record_attempt(tuple(sorted(values))),
                    {"row_id": row.id, "token": token, **values},
                )
            if handover is not None:
                lease = self.clock() + self._sending_lease
                result = await prepared.execute(
                    session, _HANDOVER, {"row_id": handover.id, "token": token, "lease": lease}
                )
                taken = bool(result.rowcount)
        return taken

    def _message(self, row: OutboxMessage) -> bytes:
        desk = self._settings.desk
        return build_message(
            OutgoingMail(
                sender=desk.sender,
                sender_name=desk.sender_name,
                to=row.recipient,
                reply_to=row.reply_to,
                subject=row.subject,
                text=row.body_text,
                html=row.body_html,
                message_id=row.message_id,
                date=row.created_at,
                loop_token=desk.sender,
                in_reply_to=row.in_reply_to,
                references=tuple((row.references or "").split()),
                auto_submitted=row.auto_submitted,
            )
        )

    async def _settle(
        self,
        token: str,
        owed: list[tuple[OutboxMessage, dict[str, Any]]],
        handover: OutboxMessage | None = None,
    ) -> bool:
        """Write the results owed (and a handover, see _write); they are cleared only
        once written, so a failed write leaves them owed."""
        taken = await self._write(token, owed, handover)
        owed.clear()
        return taken

    def _result(self, row: OutboxMessage, error: Exception | None) -> dict[str, Any]:
        """The values that record one attempt."""
        now = self.clock()
        deadline = row.created_at + timedelta(hours=self._settings.outbound.retry_hours)
        row.attempts += 1
        values: dict[str, Any] = {"attempts": row.attempts}
        if error is None:
            values.update(state="sent", sent_at=now, last_error=None)
        elif isinstance(error, InDoubt):
            values.update(state="unknown", last_error=f"{error}; not resent by itself")
        elif isinstance(error, PermanentFailure) or now >= deadline:
            values.update(state="failed", last_error=str(error))
        else:
            values.update(
                state="pending", last_error=str(error), next_attempt_at=now + backoff(row.attempts)
            )
        if error is None:
            log.info("sent outbox id=%s to=%s subject=%r", row.id, row.recipient, row.subject)
        else:
            log.warning(
                "outbox id=%s to=%s message_id=%s state=%s error=%s",
                row.id,
                row.recipient,
                row.message_id,
                values["state"],
                error,
            )
        return values

    async def send_due(
        self, *, until: float | None = None, stop: asyncio.Event | None = None
    ) -> RelayStats:
        """Send every notification that is due now, batch by batch.

        With `until` (a loop.time()), stop between notifications once it has passed,
        and likewise once `stop` is set; what was claimed and not started returns to
        the queue.
        """
        stats = RelayStats()
        loop = asyncio.get_running_loop()
        await self._current_transport()
        while True:
            token, rows = await self._claim()
            if not rows:
                break
            finished = await self._send_batch(token, rows, stats, until, stop)
            if not finished:
                await self._unclaim(token)
                break
            if len(rows) < self._settings.outbound.batch_size:
                break
            if (until is not None and loop.time() >= until) or (stop and stop.is_set()):
                break
        return stats

    async def _send_batch(
        self,
        token: str,
        rows: Sequence[OutboxMessage],
        stats: RelayStats,
        until: float | None = None,
        stop: asyncio.Event | None = None,
    ) -> bool:
        """Send a claimed batch; False when time ran out before the end of it.

        A `sent` is recorded in the transaction of the next row's handover (or at the
        end of the batch): one transaction per notification. A crash in between leaves
        that row in doubt, never sent twice.
        """
        loop = asyncio.get_running_loop()
        unreachable: ConnectionFailure | None = None
        owed: list[tuple[OutboxMessage, dict[str, Any]]] = []  # results not yet written

        prefix = self._settings.desk.reference_prefix
        try:
            for row in rows:
                logs.bind(ref=find_reference(row.subject, prefix), message_id=row.message_id)
                if (until is not None and loop.time() >= until) or (stop and stop.is_set()):
                    return False
                error: Exception | None = unreachable
                if error is None:
                    try:
                        sent = await self._transport.send(
                            self._message(row),
                            self._settings.desk.sender,
                            row.recipient,
                            functools.partial(self._settle, token, owed, row),
                        )
                        if not sent:
                            continue  # another relay took it over after our claim ran out
                    except ConnectionFailure as exc:
                        error = unreachable = exc
                    except (PermanentFailure, TransientFailure, InDoubt) as exc:
                        error = exc
                values = self._result(row, error)
                owed.append((row, values))
                if error is not None:  # failures are written at once
                    await self._settle(token, owed)
                for counter in (stats, self.totals):
                    counter.sent += values["state"] == "sent"
                    counter.failed += values["state"] == "failed"
                    counter.retried += values["state"] == "pending"
            return True
        finally:
            if owed:
                await self._settle(token, owed)

    async def _unclaim(self, token: str) -> None:
        """Give back the rows of a claim that were not started."""
        async with self._sessions() as session, session.begin():
            await session.execute(
                update(OutboxMessage)
                .where(OutboxMessage.claim_token == token, OutboxMessage.state == "claimed")
                .values(state="pending", next_attempt_at=self.clock())
            )

    async def close(self) -> None:
        """Close the outbound connection, if one is open."""
        await self._transport.close()

    def abort(self) -> None:
        """Drop the outbound connection at once (shutdown time is up)."""
        self._transport.abort()

    async def pending_count(self) -> int:
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count()).select_from(OutboxMessage).where(_WAITING)
            )
        return int(count or 0)

    async def next_due(self) -> datetime | None:
        """When the next pending notification is due, if any (for the relay's sleep)."""
        async with self._sessions() as session:
            return await session.scalar(
                select(OutboxMessage.next_attempt_at)
                .where(_WAITING)
                .order_by(OutboxMessage.next_attempt_at)
                .limit(1)
            )


async def relay_rounds(
    relay: Relay,
    wake: asyncio.Event,
    stop: asyncio.Event,
    *,
    poll_seconds: Callable[[], float],
    ended: Callable[[], bool] = lambda: False,
    after_round: Callable[[], None] = lambda: None,
) -> None:
    """Send what is due, then wait for `wake` (notifications were queued), the next
    retry or `poll_seconds` (what other processes queued); until `stop` is set or
    `ended()`. A failing round (the database is down) is logged once per streak and
    tried again every 5 s: the relay outlives a database hiccup."""
    failing = False
    while not stop.is_set() and not ended():
        wake.clear()
        timeout = poll_seconds()
        try:
            with logs.message_context():  # what the relay binds per notification ends here
                await relay.send_due(stop=stop)
            due = await relay.next_due()
            if due is not None:
                timeout = min(timeout, max(0.05, (due - relay.clock()).total_seconds()))
            failing = False
        except Exception as exc:
            if not failing:
                log.exception("outbox relay: %s; retrying", exc)
            failing = True
            timeout = 5.0
        after_round()
        await until(stop, timeout, wake)


class NotRetryable(Exception):
    """The notification does not exist or is already on its way."""


async def retry_notification(session: AsyncSession, row_id: int, now: datetime) -> OutboxMessage:
    """Queue a failed, in-doubt, suppressed or waiting notification to be sent now."""
    row = await session.get(OutboxMessage, row_id, with_for_update=is_postgresql(session))
    if row is None:
        raise NotRetryable(f"no notification {row_id}")
    if row.state in ("sent", "sending", "claimed"):
        raise NotRetryable(
            f"notification {row_id} is {row.state}; only pending, failed, unknown or "
            "suppressed ones can be retried"
        )
    row.state = "pending"
    row.next_attempt_at = now
    row.claim_token = None
    return row
