"""One raw message -> one transaction.

Dedupe, parse, classify, match or create, apply the process rules, write the outbox
rows and advance the channel's cursor, all in ONE transaction. A message that fails is
quarantined with its raw bytes and the stage it failed at; a temporary database failure
is raised as TemporaryFailure so the channel leaves the message where it is and retries.
"""

from __future__ import annotations

import email
import hashlib
import json
import logging
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from jinja2 import TemplateError
from sqlalchemy import bindparam, case, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway import logs
from gateway.mail.authresults import parse_authentication_results
from gateway.mail.bounce import parse_bounce
from gateway.mail.classify import Verdict, classify
from gateway.mail.parse import ParsedMail, parse_mail
from gateway.service import Desk, receive_customer_mail
from gateway.service.bounces import record_bounce
from gateway.service.customers import receive_auto_reply
from gateway.service.organisations import HeldForReview
from gateway.store import prepared
from gateway.store.db import dialect_of
from gateway.store.models import InboundMessage, MailboxUid, QuarantinedMessage, Ticket

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class TemporaryFailure(Exception):
    """The message could not be committed for a reason that may pass (database down)."""


class MessageTooLarge(Exception):
    """A message over the configured size; only its head was read."""


class _StageFailure(Exception):
    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"{stage}: {error}")
        self.stage = stage
        self.error = error


@dataclass(frozen=True)
class Outcome:
    kind: str  # ticket | article | ignored | duplicate | quarantined
    reference: str | None = None
    reason: str | None = None
    message_id: str | None = None


class Acknowledgement(Protocol):
    """What a channel records about a message in the message's own transaction."""

    async def record(self, session: AsyncSession, outcome: Outcome, now: datetime) -> None: ...


@dataclass(frozen=True)
class UidSeen:
    """An IMAP message's entry in the UID ledger (the cursor and the ack backlog)."""

    mailbox: str
    uidvalidity: int
    uid: int

    async def record(self, session: AsyncSession, outcome: Outcome, now: datetime) -> None:
        await prepared.execute(
            session,
            prepared.insert_or_skip(dialect_of(session), MailboxUid),
            {
                "mailbox": self.mailbox,
                "uidvalidity": self.uidvalidity,
                "uid": self.uid,
                "outcome": outcome.kind,
                "acked": False,
                "at": now,
            },
        )


@dataclass(frozen=True)
class QuarantineResolved:
    """A reprocessed quarantine entry, closed in the transaction that took it in."""

    quarantine_id: int

    async def record(self, session: AsyncSession, outcome: Outcome, now: datetime) -> None:
        if outcome.kind == "quarantined":
            return
        what = " ".join(p for p in (outcome.kind, outcome.reference or outcome.reason) if p)
        await session.execute(
            update(QuarantinedMessage)
            .where(QuarantinedMessage.id == self.quarantine_id, QuarantinedMessage.state == "held")
            .values(state="reprocessed", resolved_at=now, resolution=what[:255])
        )


class TwinVanished(Exception):
    """A message ran into a twin that was gone when looked for: taken in again later."""


_INBOUND = prepared.table_of(InboundMessage)
_SETTLE_INBOUND = (
    update(_INBOUND)
    .where(_INBOUND.c.id == bindparam("inbound_id"))
    .values(outcome=bindparam("outcome"), reason=bindparam("reason"), ticket_id=bindparam("t"))
)


async def _settle_inbound(
    session: AsyncSession, inbound_id: int, outcome: str, reason: str | None, ticket_id: int | None
) -> None:
    """What became of a message, on its inbound row (written first as `ignored`)."""
    await prepared.execute(
        session,
        _SETTLE_INBOUND,
        {"inbound_id": inbound_id, "outcome": outcome, "reason": reason, "t": ticket_id},
    )


def _stage_of(exc: BaseException) -> str:
    """Where processing failed, for the quarantine: rendering, storing, or the rules."""
    if isinstance(exc, HeldForReview):
        return "review"
    if isinstance(exc, TemplateError):
        return "template"
    if isinstance(exc, SQLAlchemyError):
        return "store"
    return "process"


# PostgreSQL error classes that pass: 40 transaction rollback (serialization failure,
# deadlock), 53 insufficient resources, 57 operator intervention (shutdown, cancel),
# 08 connection exception.
_TEMPORARY_SQLSTATE_CLASSES = ("40", "53", "57", "08")


def _is_temporary(exc: BaseException) -> bool:
    if isinstance(exc, OperationalError | OSError | ConnectionError | TwinVanished):
        return True
    if not isinstance(exc, DBAPIError):
        return False
    sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
    return bool(exc.connection_invalidated) or sqlstate[:2] in _TEMPORARY_SQLSTATE_CLASSES


@dataclass(frozen=True)
class _Arrival:
    """One parsed message on its way through a transaction."""

    raw: bytes
    digest: str
    source: str
    mail: ParsedMail
    now: datetime
    envelope_recipients: tuple[str, ...]

    def inbound_values(self, outcome: str) -> dict[str, object]:
        return {
            "sha256": self.digest,
            "message_id": self.mail.message_id,
            "source": self.source,
            "size": len(self.raw),
            "received_at": self.now,
            "outcome": outcome,
            "reason": None,
            "ticket_id": None,
            "raw": self.raw,
        }

    def inbound_row(self, outcome: str) -> InboundMessage:
        return InboundMessage(**self.inbound_values(outcome))


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
        self.counts: Counter[str] = Counter()  # outcomes since start, for STATUS=
        # Told each message's seconds from bytes to commit (the daemon's histogram).
        self.timed: Callable[[float], None] | None = None

    def use_desk(self, desk: Desk) -> None:
        """Take the next messages under `desk` (a reloaded configuration); a message in
        hand finishes under the desk it started with."""
        self._desk = desk

    async def ingest(
        self,
        raw: bytes,
        source: str,
        *,
        envelope_recipients: Iterable[str] = (),
        ack: Acknowledgement | None = None,
    ) -> Outcome:
        """Take in one message; never raises except TemporaryFailure."""
        digest = hashlib.sha256(raw).hexdigest()
        recipients = tuple(envelope_recipients)
        # Every line logged about this message carries its Message-ID (and reference).
        context = logs.message_context(message_id=logs.header_message_id(raw), source=source)
        started = time.perf_counter()
        with context:
            try:
                try:
                    outcome = await self._ingest(raw, digest, source, recipients, ack)
                except _StageFailure as failure:
                    if not isinstance(failure.error, IntegrityError):
                        raise
                    # A twin (same bytes or Message-ID) was committed by another process
                    # meanwhile; taken again, it is recognised as a duplicate.
                    outcome = await self._ingest(raw, digest, source, recipients, ack)
            except _StageFailure as failure:
                if _is_temporary(failure.error):
                    raise TemporaryFailure(str(failure.error)) from failure.error
                outcome = await self._quarantine(
                    raw, digest, source, failure.stage, failure.error, ack=ack
                )
        if self.timed is not None:
            self.timed(time.perf_counter() - started)
        self.counts[outcome.kind] += 1
        self._on_commit()
        return outcome

    async def _ingest(
        self,
        raw: bytes,
        digest: str,
        source: str,
        envelope_recipients: tuple[str, ...],
        ack: Acknowledgement | None,
    ) -> Outcome:
        try:
            mail = parse_mail(raw)
        except Exception as exc:  # UnparseableMail, or whatever broken input provokes
            raise _StageFailure("parse", exc) from exc
        now = self._clock()
        try:
            arrival = _Arrival(raw, digest, source, mail, now, envelope_recipients)
            async with self._sessions() as session, session.begin():
                # Written first, as `ignored`: a new message costs no look-up, and a
                # twin (same bytes or Message-ID) is caught by the unique indexes.
                inbound_id = await self._insert_inbound(session, arrival)
                if inbound_id is None:
                    outcome = await self._deduplicate(session, arrival)
                else:
                    outcome = await self._apply(session, arrival, inbound_id)
                if ack is not None:
                    await ack.record(session, outcome, now)
                return outcome
        except Exception as exc:
            raise _StageFailure(_stage_of(exc), exc) from exc

    @staticmethod
    async def _insert_inbound(session: AsyncSession, arrival: _Arrival) -> int | None:
        """The new inbound row's id; None when a twin is in the table already."""
        stmt = prepared.insert_or_skip(dialect_of(session), InboundMessage, "id")
        values = arrival.inbound_values("ignored")
        inbound_id: int | None = (await prepared.execute(session, stmt, values)).scalar()
        return inbound_id

    async def _deduplicate(self, session: AsyncSession, arrival: _Arrival) -> Outcome:
        """The outcome for a message taken in before.

        The same bytes again leave no trace. The same Message-ID with other bytes (the
        copy that came by another way, with other Received lines) is kept as a
        `duplicate` inbound row so nothing is lost, and changes nothing else.
        """
        digest, mail = arrival.digest, arrival.mail
        condition = InboundMessage.sha256 == digest
        if mail.message_id:
            condition = or_(condition, InboundMessage.message_id == mail.message_id)
        seen = (
            await session.execute(
                select(InboundMessage.id, InboundMessage.sha256, InboundMessage.ticket_id)
                .where(condition)
                .order_by(case((InboundMessage.sha256 == digest, 0), else_=1), InboundMessage.id)
                .limit(1)
            )
        ).first()
        if seen is None:  # the twin's transaction rolled back after ours ran into it
            raise TwinVanished(f"message_id={mail.message_id}: its twin was not committed")
        reason = f"already taken in as message {seen.id}"
        if seen.sha256 != digest:
            reason = f"same Message-ID as message {seen.id}"
            copy = arrival.inbound_row("duplicate")
            copy.reason, copy.ticket_id = reason, seen.ticket_id
            session.add(copy)
        log.info("duplicate message_id=%s source=%s: %s", mail.message_id, arrival.source, reason)
        return Outcome("duplicate", reason=reason, message_id=mail.message_id)

    async def _apply(self, session: AsyncSession, arrival: _Arrival, inbound_id: int) -> Outcome:
        desk = self._desk
        settings = desk.settings
        mail = arrival.mail
        signer = await desk.message_ids.signer(session)
        verdict = classify(
            mail,
            desk_addresses=settings.desk_addresses,
            loop_token=desk.loop_token,
            is_own_message_id=signer.is_own,
            list_policy=settings.access.mailing_lists,
        )
        if verdict.reason is not None:
            ticket = await self._record_ignored(session, desk, arrival, verdict, inbound_id)
            ticket_id = None if ticket is None else ticket.id
            await _settle_inbound(session, inbound_id, "ignored", verdict.reason, ticket_id)
            reference = None if ticket is None else ticket.reference
            logs.bind(ref=reference, message_id=mail.message_id)
            log.info(
                "ignored ref=%s message_id=%s from=%s reason=%s",
                reference,
                mail.message_id,
                mail.sender,
                verdict.reason,
            )
            return Outcome(
                "ignored", reference=reference, reason=verdict.reason, message_id=mail.message_id
            )
        auth = parse_authentication_results(
            mail.authentication_results, settings.security.trusted_authserv_ids
        )
        received = await receive_customer_mail(
            session,
            desk,
            mail,
            inbound_id=inbound_id,
            now=arrival.now,
            envelope_recipients=arrival.envelope_recipients,
            suppress_auto_reply=verdict.suppress_auto_reply,
            auth=None if auth is None else json.dumps(auth.as_dict(), sort_keys=True),
        )
        await _settle_inbound(
            session, inbound_id, received.outcome, received.reason, received.ticket.id
        )
        logs.bind(ref=received.ticket.reference, message_id=mail.message_id)
        log.info(
            "%s ref=%s message_id=%s from=%s%s",
            {"ticket": "created", "article": "appended"}.get(received.outcome, "ignored"),
            received.ticket.reference,
            mail.message_id,
            mail.sender,
            "" if received.reason is None else f" reason={received.reason}",
        )
        return Outcome(
            received.outcome,
            reference=received.ticket.reference,
            reason=received.reason,
            message_id=mail.message_id,
        )

    @staticmethod
    async def _record_ignored(
        session: AsyncSession, desk: Desk, arrival: _Arrival, verdict: Verdict, inbound_id: int
    ) -> Ticket | None:
        """What an ignored mail is kept as: a bounce on the notification it reports, an
        automatic reply as a note on its ticket; the ticket it concerns, if any."""
        now = arrival.now
        if verdict.reason == "bounce":
            report = parse_bounce(email.message_from_bytes(arrival.raw))
            if report is None:
                return None
            return await record_bounce(session, desk, report, inbound_id=inbound_id, now=now)
        if verdict.auto_reply:
            return await receive_auto_reply(
                session, desk, arrival.mail, inbound_id=inbound_id, now=now
            )
        return None

    async def quarantine_oversize(
        self,
        head: bytes,
        size: int,
        limit: int,
        source: str,
        *,
        ack: Acknowledgement | None = None,
    ) -> Outcome:
        """Record a message too large to take in: its head, its size, and why."""
        error = MessageTooLarge(
            f"{size} bytes, over the limit of {limit}; only the first {len(head)} bytes kept"
        )
        digest = hashlib.sha256(head).hexdigest()
        outcome = await self._quarantine(
            head, digest, source, "intake", error, ack=ack, size=size, truncated=True
        )
        self._on_commit()
        return outcome

    async def _quarantine(
        self,
        raw: bytes,
        digest: str,
        source: str,
        stage: str,
        error: BaseException,
        *,
        ack: Acknowledgement | None,
        size: int | None = None,
        truncated: bool = False,
    ) -> Outcome:
        """Keep a failed message whole, with the stage and the error, and move on.

        A message that fails again (re-delivered, or reprocessed without a fix) updates
        its entry instead of adding one.
        """
        trace = "".join(traceback.format_exception(error))
        message = f"{type(error).__name__}: {error}"
        log.warning("quarantined source=%s stage=%s error=%s", source, stage, message)
        now = self._clock()
        outcome = Outcome("quarantined", reason=f"{stage}: {error}")
        try:
            async with self._sessions() as session, session.begin():
                earlier = (
                    await session.execute(
                        select(QuarantinedMessage.id, QuarantinedMessage.state)
                        .where(QuarantinedMessage.sha256 == digest)
                        .order_by(QuarantinedMessage.id.desc())
                        .limit(1)
                    )
                ).first()
                if earlier is not None and earlier.state == "discarded":
                    # Seen and thrown away by an agent: a new copy (a rescan) stays away.
                    outcome = Outcome(
                        "quarantined", reason=f"discarded before as quarantine entry {earlier.id}"
                    )
                elif earlier is None or earlier.state != "held":
                    session.add(
                        QuarantinedMessage(
                            sha256=digest,
                            source=source,
                            stage=stage,
                            error=message,
                            traceback=trace,
                            state="held",
                            created_at=now,
                            size=len(raw) if size is None else size,
                            truncated=truncated,
                            attempts=1,
                            raw=raw,
                        )
                    )
                else:
                    await session.execute(
                        update(QuarantinedMessage)
                        .where(QuarantinedMessage.id == earlier.id)
                        .values(
                            stage=stage,
                            error=message,
                            traceback=trace,
                            attempts=QuarantinedMessage.attempts + 1,
                        )
                    )
                if ack is not None:
                    await ack.record(session, outcome, now)
        except Exception as exc:
            raise TemporaryFailure(f"cannot quarantine: {exc}") from exc
        return outcome
