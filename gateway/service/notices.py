"""Notifications: written to the outbox in the ticket's transaction, never sent here."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Executable, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.config import TeamSettings
from gateway.domain.model import status_label
from gateway.domain.reference import subject_tag
from gateway.domain.rules import ReplyEffect
from gateway.mail.parse import ParsedMail
from gateway.service.desk import MAX_REFERENCES, Desk
from gateway.service.tickets import participants_of
from gateway.store import prepared
from gateway.store.db import dialect_of
from gateway.store.models import Article, OutboxMessage, Ticket


@dataclass(frozen=True)
class Thread:
    """Where a notification sits in the conversation: the message it answers."""

    in_reply_to: str | None = None
    references: tuple[str, ...] = ()


def _dedupe_key(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def _template_context(
    desk: Desk, ticket: Ticket, team: TeamSettings, language: str, **extra: Any
) -> dict[str, Any]:
    context: dict[str, Any] = {
        "language": language,
        "recipient_name": "",
        "body": "",
        "effect": "",
        "notice": "",
        "author": "",
        "scheduled_for": "",
        "support": {"desk_open": True, "next_opening": "", "oncall_phone": ""},
        "ticket": {
            "reference": ticket.reference,
            "tag": subject_tag(ticket.reference),
            "subject": ticket.subject,
            "status": ticket.status,
            "status_label": status_label(ticket.status, language),
            "priority": ticket.priority,
        },
        "team": {"key": team.key, "name": team.name, "phone": team.phone, "address": team.address},
        "desk": {
            "sender_name": desk.settings.desk.sender_name,
            "reopen_days": desk.settings.desk.reopen_days,
        },
    }
    context.update(extra)
    return context


AUTO_REPLIED = "auto-replied"  # an automatic answer to incoming mail: rate-limited


_OUTBOX = prepared.table_of(OutboxMessage)
_AUTOMATIC = (_OUTBOX.c.auto_submitted == AUTO_REPLIED, _OUTBOX.c.state != "suppressed")
# Automatic answers on one ticket in the last hour, and in the last 10 minutes.
_ANSWERS_ON_TICKET = select(
    func.count(), func.count().filter(_OUTBOX.c.created_at >= bindparam("minutes_ago"))
).where(
    *_AUTOMATIC,
    _OUTBOX.c.ticket_id == bindparam("ticket_id"),
    _OUTBOX.c.created_at >= bindparam("hour_ago"),
)


@functools.cache
def _answers_to_recipients(count: int) -> Executable:
    """Automatic answers to each of `count` recipients (r0, r1, …) in the last day: one
    statement per count, so each compiles once (an expanding IN list is compiled anew
    for every execution)."""
    return (
        select(_OUTBOX.c.recipient, func.count())
        .where(
            *_AUTOMATIC,
            prepared.in_list(_OUTBOX.c.recipient, "r", count),
            _OUTBOX.c.created_at >= bindparam("day_ago"),
        )
        .group_by(_OUTBOX.c.recipient)
    )


async def _over_limits(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    recipients: list[str],
    now: datetime,
    *,
    first: bool = False,
) -> dict[str, str]:
    """Recipients whose automatic answer would pass a limit, and which limit.

    Counted: automatic answers written (not suppressed) in the windows; each new one
    counts against the limits of those after it. The `first` notice of a new ticket
    has nothing to count on the ticket.
    """
    limits = desk.settings.limits
    ten_minutes = hour = 0
    if not first and (limits.per_ticket_10_minutes or limits.per_ticket_hour):
        recent = await prepared.execute(
            session,
            _ANSWERS_ON_TICKET,
            {
                "ticket_id": ticket.id,
                "hour_ago": now - timedelta(hours=1),
                "minutes_ago": now - timedelta(minutes=10),
            },
        )
        counts = recent.one()
        hour, ten_minutes = int(counts[0]), int(counts[1])
    per_recipient: dict[str, int] = {}
    if limits.per_recipient_day and recipients:
        rows = await prepared.execute(
            session,
            _answers_to_recipients(len(recipients)),
            {**prepared.numbered("r", recipients), "day_ago": now - timedelta(days=1)},
        )
        per_recipient = {row[0]: int(row[1]) for row in rows}
    over: dict[str, str] = {}
    for recipient in recipients:
        sent_to = per_recipient.get(recipient, 0)
        if limits.per_ticket_10_minutes and ten_minutes >= limits.per_ticket_10_minutes:
            over[recipient] = (
                f"rate limit: {limits.per_ticket_10_minutes} automatic answers per ticket "
                "in 10 minutes"
            )
        elif limits.per_ticket_hour and hour >= limits.per_ticket_hour:
            over[recipient] = (
                f"rate limit: {limits.per_ticket_hour} automatic answers per ticket per hour"
            )
        elif limits.per_recipient_day and sent_to >= limits.per_recipient_day:
            over[recipient] = (
                f"rate limit: {limits.per_recipient_day} automatic answers per recipient per day"
            )
        else:
            ten_minutes, hour = ten_minutes + 1, hour + 1
    return over


async def notify(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    event: str,
    recipients: Iterable[str],
    *,
    source: str,
    now: datetime,
    thread: Thread = Thread(),
    language: str | None = None,
    auto_submitted: str = AUTO_REPLIED,
    suppressed: dict[str, str] | None = None,
    first: bool = False,
    **context: Any,
) -> list[str]:
    """Write one outbox row per recipient; returns the new rows' Message-IDs.

    Automatic answers over a rate limit, and those in `suppressed` (recipient ->
    reason), are written as `suppressed` rows with the reason, never sent. `first`:
    the notice of a ticket made in this transaction (no per-ticket count needed).
    """
    language = language or ticket.language
    team = desk.settings.team(ticket.team)
    rendered = desk.renderer.render(
        event, language, _template_context(desk, ticket, team, language, **context)
    )
    references = (*thread.references, *([thread.in_reply_to] if thread.in_reply_to else ()))
    references = tuple(dict.fromkeys(references))[-MAX_REFERENCES:]
    signer = await desk.message_ids.signer(session)
    wanted = [r for r in dict.fromkeys(recipients) if r not in desk.settings.desk_addresses]
    held = dict(suppressed or {})
    if auto_submitted == AUTO_REPLIED:
        limited = [r for r in wanted if r not in held]
        held.update(await _over_limits(session, desk, ticket, limited, now, first=first))
    rows = [
        {
            "ticket_id": ticket.id,
            "event": event,
            "dedupe_key": _dedupe_key(ticket.id, event, source, recipient),
            "recipient": recipient,
            "reply_to": team.address,
            "subject": rendered.subject,
            "body_text": rendered.text,
            "body_html": rendered.html,
            "message_id": signer.new(ticket.reference),
            "in_reply_to": thread.in_reply_to,
            "references": " ".join(references) or None,
            "auto_submitted": auto_submitted,
            "state": "suppressed" if recipient in held else "pending",
            "last_error": held.get(recipient),
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for recipient in wanted  # never the desk itself
    ]
    if not rows:
        return []
    # The same event from the same source is written once, however often it is decided.
    stmt = _write_outbox(dialect_of(session))
    return list((await prepared.execute(session, stmt, rows)).scalars())


@functools.cache
def _write_outbox(dialect: str) -> Executable:
    """Outbox rows (as parameters); a row with a dedupe key written before is skipped."""
    return (
        prepared.upsert(dialect, OutboxMessage)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(_OUTBOX.c.message_id)
    )


async def customer_side(
    session: AsyncSession, ticket: Ticket, participants: list[str] | None = None
) -> list[str]:
    """The requester and the participants: everyone a public answer goes to."""
    if participants is None:
        participants = await participants_of(session, ticket)
    return [ticket.requester, *participants]


async def last_customer_message_id(session: AsyncSession, ticket: Ticket) -> str | None:
    return await session.scalar(
        select(Article.message_id)
        .where(Article.ticket_id == ticket.id, Article.direction == "in")
        .where(Article.message_id.is_not(None))
        .order_by(Article.id.desc())
        .limit(1)
    )


async def agent_thread(session: AsyncSession, ticket: Ticket) -> Thread:
    """Thread an agent's message under the customer's latest mail, if there is one."""
    return Thread(in_reply_to=await last_customer_message_id(session, ticket))


TEAM_NOTICES = {
    "nl": {
        ReplyEffect.ADDED: "Klant heeft gereageerd",
        ReplyEffect.ANSWERED: "Klant heeft geantwoord",
        ReplyEffect.ACCEPTED: "Klant akkoord, melding gesloten",
        ReplyEffect.NOT_ACCEPTED: "Klant niet akkoord",
        ReplyEffect.REOPENED: "Melding heropend door klant",
    },
    "en": {
        ReplyEffect.ADDED: "Customer replied",
        ReplyEffect.ANSWERED: "Customer answered",
        ReplyEffect.ACCEPTED: "Customer accepted, ticket closed",
        ReplyEffect.NOT_ACCEPTED: "Customer did not accept",
        ReplyEffect.REOPENED: "Ticket reopened by customer",
    },
}


async def notify_team(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    effect: ReplyEffect,
    mail: ParsedMail,
    *,
    source: str,
    now: datetime,
) -> None:
    """Tell the team's notification addresses that the customer wrote."""
    notices = TEAM_NOTICES[desk.settings.desk.language]
    await tell_team(
        session,
        desk,
        ticket,
        notices.get(effect, effect.value),
        source=source,
        now=now,
        author=mail.sender,
        body=mail.new_text,
    )


async def tell_team(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    notice: str,
    *,
    source: str,
    now: datetime,
    author: str = "",
    body: str = "",
) -> None:
    """A team notice (a customer wrote, an SLA warning, a wake-up) to the team's
    notification addresses, in the desk's language; nothing when it has none."""
    team = desk.settings.team(ticket.team)
    if not team.notify:
        return
    await notify(
        session,
        desk,
        ticket,
        "team_notice",
        team.notify,
        source=source,
        now=now,
        language=desk.settings.desk.language,
        auto_submitted="auto-generated",
        notice=notice,
        author=author,
        body=body,
    )
