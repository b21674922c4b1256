"""One raw message -> one transaction.

Dedupe, parse, classify, match or create, apply the process rules, write the outbox
rows and advance the channel's cursor, all in ONE transaction. A message that fails is
quarantined with its raw bytes and the stage it failed at; a temporary database failure
is raised as TemporaryFailure so the channel leaves the message where it is and retries.
"""

from __future__ import annotations

import hashlib
import logging
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import case, or_, select
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.mail.classify import ignore_reason
from gateway.mail.parse import ParsedMail, parse_mail
from gateway.service import Desk, receive_customer_mail
from gateway.store.db import dialect_insert
from gateway.store.models import InboundMessage, MailboxCursor, QuarantinedMessage

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class TemporaryFailure(Exception):
    """The message could not be committed for a reason that may pass (database down)."""


class _StageFailure(Exception):
    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error


@dataclass(frozen=True)
class CursorAdvance:
    """Move a mailbox cursor in the same transaction as the message it belongs to."""

    mailbox: str
    uidvalidity: int
    uid: int


@dataclass(frozen=True)
class Outcome:
    kind: str  # ticket | article | ignored | duplicate | quarantined
    reference: str | None = None
    reason: str | None = None
    message_id: str | None = None


def _is_temporary(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | OSError | ConnectionError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


async def advance_cursor(session: AsyncSession, cursor: CursorAdvance, now: datetime) -> None:
    """Move the mailbox cursor forward (or reset it with a new UIDVALIDITY): one statement."""
    stmt = dialect_insert(session)(MailboxCursor).values(
        mailbox=cursor.mailbox, uidvalidity=cursor.uidvalidity, last_uid=cursor.uid, updated_at=now
    )
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=["mailbox"],
        set_={
            "uidvalidity": excluded.uidvalidity,
            "last_uid": case(
                (MailboxCursor.uidvalidity != excluded.uidvalidity, excluded.last_uid),
                (excluded.last_uid > MailboxCursor.last_uid, excluded.last_uid),
                else_=MailboxCursor.last_uid,
            ),
            "updated_at": excluded.updated_at,
        },
    )
    await session.execute(stmt)


class Pipeline:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        desk: Desk,
        *,
        clock: Clock = utc_now,
        on_commit: Callable[[], None] | None = None,
    ) -> None:
        self._sessions = sessions
        self._desk = desk
        self._clock = clock
        self._on_commit = on_commit or (lambda: None)

    async def ingest(
        self,
        raw: bytes,
        source: str,
        *,
        envelope_recipients: Iterable[str] = (),
        cursor: CursorAdvance | None = None,
    ) -> Outcome:
        """Take in one message; never raises except TemporaryFailure."""
        digest = hashlib.sha256(raw).hexdigest()
        try:
            outcome = await self._ingest(raw, digest, source, tuple(envelope_recipients), cursor)
        except _StageFailure as failure:
            if _is_temporary(failure.error):
                raise TemporaryFailure(str(failure.error)) from failure.error
            outcome = await self.quarantine(raw, digest, source, failure, cursor)
        self._on_commit()
        return outcome

    async def _ingest(
        self,
        raw: bytes,
        digest: str,
        source: str,
        envelope_recipients: tuple[str, ...],
        cursor: CursorAdvance | None,
    ) -> Outcome:
        try:
            mail = parse_mail(raw)
        except Exception as exc:  # UnparseableMail, or whatever broken input provokes
            raise _StageFailure("parse", exc) from exc
        now = self._clock()
        try:
            async with self._sessions() as session, session.begin():
                if cursor is not None:
                    await advance_cursor(session, cursor, now)
                duplicate = await self._find_duplicate(session, digest, mail)
                if duplicate is not None:
                    return duplicate
                return await self._apply(
                    session, raw, digest, source, mail, now, envelope_recipients
                )
        except Exception as exc:
            raise _StageFailure("process", exc) from exc

    async def _find_duplicate(
        self, session: AsyncSession, digest: str, mail: ParsedMail
    ) -> Outcome | None:
        condition = InboundMessage.sha256 == digest
        if mail.message_id:
            condition = or_(condition, InboundMessage.message_id == mail.message_id)
        seen = await session.scalar(select(InboundMessage.id).where(condition).limit(1))
        if seen is None:
            return None
        return Outcome(
            "duplicate", reason=f"already taken in as message {seen}", message_id=mail.message_id
        )

    async def _apply(
        self,
        session: AsyncSession,
        raw: bytes,
        digest: str,
        source: str,
        mail: ParsedMail,
        now: datetime,
        envelope_recipients: tuple[str, ...],
    ) -> Outcome:
        settings = self._desk.settings
        inbound = InboundMessage(
            sha256=digest,
            message_id=mail.message_id,
            source=source,
            size=len(raw),
            received_at=now,
            outcome="ignored",
            raw=raw,
        )
        session.add(inbound)
        reason = ignore_reason(mail, settings.desk_addresses, self._desk.loop_token)
        if reason is not None:
            inbound.reason = reason
            log.info(
                "ignored message_id=%s from=%s reason=%s", mail.message_id, mail.sender, reason
            )
            return Outcome("ignored", reason=reason, message_id=mail.message_id)
        await session.flush()
        received = await receive_customer_mail(
            session,
            self._desk,
            mail,
            inbound_id=inbound.id,
            now=now,
            envelope_recipients=envelope_recipients,
        )
        inbound.ticket_id = received.ticket.id
        inbound.outcome = "ticket" if received.created else "article"
        inbound.reason = None if received.effect is None else received.effect.value
        log.info(
            "%s ref=%s message_id=%s from=%s",
            "created" if received.created else "appended",
            received.ticket.reference,
            mail.message_id,
            mail.sender,
        )
        return Outcome(
            inbound.outcome,
            reference=received.ticket.reference,
            reason=inbound.reason,
            message_id=mail.message_id,
        )

    async def quarantine(
        self,
        raw: bytes,
        digest: str,
        source: str,
        failure: _StageFailure,
        cursor: CursorAdvance | None,
    ) -> Outcome:
        """Keep a failed message whole, with the stage and the error, and move on."""
        error = failure.error
        trace = "".join(traceback.format_exception(error))
        log.warning("quarantined source=%s stage=%s error=%s", source, failure.stage, error)
        now = self._clock()
        try:
            async with self._sessions() as session, session.begin():
                if cursor is not None:
                    await advance_cursor(session, cursor, now)
                held = await session.scalar(
                    select(QuarantinedMessage.id).where(
                        QuarantinedMessage.sha256 == digest, QuarantinedMessage.state == "held"
                    )
                )
                if held is None:
                    session.add(
                        QuarantinedMessage(
                            sha256=digest,
                            source=source,
                            stage=failure.stage,
                            error=f"{type(error).__name__}: {error}",
                            traceback=trace,
                            state="held",
                            created_at=now,
                            raw=raw,
                        )
                    )
        except Exception as exc:
            raise TemporaryFailure(f"cannot quarantine: {exc}") from exc
        return Outcome("quarantined", reason=f"{failure.stage}: {error}")
