"""The service layer: every rule that changes a ticket lives here, once.

Mail intake, the CLI and (later) the web portal call these functions with an open
session; the caller owns the transaction. Notifications are only ever written to the
outbox here, never sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.config import Settings, TeamSettings
from gateway.domain.access import may_write
from gateway.domain.model import Category, Impact, Status, Urgency, status_label
from gateway.domain.priority import PRIORITIES, priority_for
from gateway.domain.reference import (
    find_reference,
    format_reference,
    strip_reply_prefixes,
    subject_tag,
)
from gateway.domain.rules import ReplyEffect, customer_reply_outcome, status_notice
from gateway.mail.compose import new_message_id
from gateway.mail.parse import ParsedMail
from gateway.notify.render import Renderer
from gateway.store.models import (
    Article,
    HistoryEntry,
    OutboxMessage,
    Participant,
    ReferenceCounter,
    Ticket,
)

SYSTEM = "system"
MAX_REFERENCES = 10


class TicketError(Exception):
    """A request the service refuses; the message says why, for the person who asked."""


class UnknownTicket(TicketError):
    pass


@dataclass(frozen=True)
class Desk:
    """What the service needs besides a session: settings and the template renderer."""

    settings: Settings
    renderer: Renderer

    @property
    def domain(self) -> str:
        return self.settings.desk.sender.rpartition("@")[2]

    @property
    def loop_token(self) -> str:
        return self.settings.desk.sender


# ---------------------------------------------------------------- references and lookups


def _insert(session: AsyncSession) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


async def next_reference(session: AsyncSession, prefix: str, year: int) -> str:
    """The next free reference for a year; one atomic statement, safe under concurrency."""
    stmt = (
        _insert(session)(ReferenceCounter)
        .values(prefix=prefix, year=year, last=1)
        .on_conflict_do_update(
            index_elements=["prefix", "year"], set_={"last": ReferenceCounter.last + 1}
        )
        .returning(ReferenceCounter.last)
    )
    sequence = (await session.execute(stmt)).scalar_one()
    return format_reference(prefix, year, sequence)


async def get_ticket(session: AsyncSession, reference: str) -> Ticket:
    """The ticket with this reference (case-insensitive); UnknownTicket if none."""
    ticket = await session.scalar(select(Ticket).where(Ticket.reference == reference.upper()))
    if ticket is None:
        raise UnknownTicket(f"no ticket with reference {reference}")
    return ticket


async def participants_of(session: AsyncSession, ticket: Ticket) -> list[str]:
    rows = await session.scalars(
        select(Participant.address)
        .where(Participant.ticket_id == ticket.id)
        .order_by(Participant.id)
    )
    return list(rows)


def add_participants(
    session: AsyncSession,
    ticket: Ticket,
    addresses: Iterable[str],
    *,
    known: list[str],
    exclude: set[str],
) -> list[str]:
    """Add new addresses as participants; returns the participants after adding."""
    participants = list(known)
    skip = set(known) | {ticket.requester} | exclude
    for address in addresses:
        if address not in skip:
            session.add(Participant(ticket_id=ticket.id, address=address))
            participants.append(address)
            skip.add(address)
    return participants


async def ticket_for_thread(session: AsyncSession, message_ids: Iterable[str]) -> Ticket | None:
    """The ticket one of these Message-IDs belongs to (ours first, then received ones)."""
    ids = list(message_ids)[:50]
    if not ids:
        return None
    ticket_id = await session.scalar(
        select(OutboxMessage.ticket_id).where(OutboxMessage.message_id.in_(ids)).limit(1)
    )
    if ticket_id is None:
        ticket_id = await session.scalar(
            select(Article.ticket_id).where(Article.message_id.in_(ids)).limit(1)
        )
    return None if ticket_id is None else await session.get(Ticket, ticket_id)


# ---------------------------------------------------------------- history and articles


def record(
    session: AsyncSession,
    ticket: Ticket,
    field: str,
    old: object,
    new: object,
    *,
    by: str,
    now: datetime,
    reason: str | None = None,
) -> HistoryEntry:
    entry = HistoryEntry(
        ticket_id=ticket.id,
        at=now,
        field=field,
        old=None if old is None else str(old),
        new=None if new is None else str(new),
        by=by,
        reason=reason,
    )
    session.add(entry)
    return entry


def add_article(
    session: AsyncSession,
    ticket: Ticket,
    *,
    direction: str,
    author: str,
    kind: str,
    subject: str,
    body: str,
    now: datetime,
    message_id: str | None = None,
    inbound_id: int | None = None,
    public: bool = True,
) -> Article:
    article = Article(
        ticket_id=ticket.id,
        direction=direction,
        author=author,
        kind=kind,
        public=public,
        subject=subject,
        body=body,
        message_id=message_id,
        inbound_id=inbound_id,
        created_at=now,
    )
    session.add(article)
    ticket.article_count += 1
    ticket.updated_at = now
    return article


# ---------------------------------------------------------------- notifications (outbox)


@dataclass(frozen=True)
class Thread:
    """Where a notification sits in the conversation: the message it answers."""

    in_reply_to: str | None = None
    references: tuple[str, ...] = ()


def _dedupe_key(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()


def _template_context(desk: Desk, ticket: Ticket, language: str, **extra: Any) -> dict[str, Any]:
    team = desk.settings.team(ticket.team)
    context: dict[str, Any] = {
        "language": language,
        "recipient_name": "",
        "body": "",
        "effect": "",
        "notice": "",
        "author": "",
        "scheduled_for": "",
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
    auto_submitted: str = "auto-replied",
    **context: Any,
) -> list[str]:
    """Write one outbox row per recipient; returns the new rows' Message-IDs."""
    language = language or ticket.language
    team = desk.settings.team(ticket.team)
    rendered = desk.renderer.render(
        event, language, _template_context(desk, ticket, language, **context)
    )
    references = (*thread.references, *([thread.in_reply_to] if thread.in_reply_to else ()))
    references = tuple(dict.fromkeys(references))[-MAX_REFERENCES:]
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
            "message_id": new_message_id(desk.domain, ticket.reference),
            "in_reply_to": thread.in_reply_to,
            "references": " ".join(references) or None,
            "auto_submitted": auto_submitted,
            "state": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for recipient in dict.fromkeys(recipients)
        if recipient not in desk.settings.desk_addresses  # never mail the desk itself
    ]
    if not rows:
        return []
    # The same event from the same source is written once, however often it is decided.
    stmt = (
        _insert(session)(OutboxMessage)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(OutboxMessage.message_id)
    )
    return list((await session.scalars(stmt)).all())


async def customer_side(
    session: AsyncSession, ticket: Ticket, participants: list[str] | None = None
) -> list[str]:
    """The requester and the participants: everyone a public answer goes to."""
    if participants is None:
        participants = await participants_of(session, ticket)
    return [ticket.requester, *participants]


def team_of(desk: Desk, ticket: Ticket) -> TeamSettings:
    return desk.settings.team(ticket.team)


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


# ---------------------------------------------------------------- changes by agents


def _set_status(
    session: AsyncSession,
    ticket: Ticket,
    new: Status,
    *,
    by: str,
    now: datetime,
    reason: str | None = None,
) -> HistoryEntry:
    """Change the status, keep closed_at right and record who did it."""
    old = ticket.status
    ticket.status = new.value
    ticket.updated_at = now
    if new is Status.CLOSED:
        ticket.closed_at = now
    elif ticket.closed_at is not None:
        ticket.closed_at = None
    return record(session, ticket, "status", old, new.value, by=by, now=now, reason=reason)


def _agent_status(
    session: AsyncSession,
    ticket: Ticket,
    new: Status,
    *,
    by: str,
    now: datetime,
    reason: str | None = None,
    scheduled_for: datetime | None = None,
) -> HistoryEntry | None:
    """An agent's status change (None when nothing changes); scheduled needs a date."""
    if new is Status.SCHEDULED:
        if scheduled_for is None:
            raise TicketError("status scheduled needs a date (--scheduled-for)")
        ticket.scheduled_for = scheduled_for
    elif new is Status(ticket.status):
        return None
    return _set_status(session, ticket, new, by=by, now=now, reason=reason)


async def _tell_customer(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    template: str,
    *,
    source: str,
    now: datetime,
    body: str,
) -> list[str]:
    """Mail the requester and participants about an agent's action, in the thread."""
    when = ticket.scheduled_for if ticket.status == Status.SCHEDULED else None
    return await notify(
        session,
        desk,
        ticket,
        template,
        await customer_side(session, ticket),
        source=source,
        now=now,
        thread=await agent_thread(session, ticket),
        auto_submitted="auto-generated",
        body=body,
        scheduled_for=_local_time(when) if when else "",
    )


async def change_status(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    new: Status,
    *,
    by: str,
    now: datetime,
    body: str = "",
    reason: str | None = None,
    scheduled_for: datetime | None = None,
) -> HistoryEntry | None:
    """An agent's status change; the customer is told where PROCESS.md says so."""
    entry = _agent_status(
        session, ticket, new, by=by, now=now, reason=reason, scheduled_for=scheduled_for
    )
    if entry is None:
        return None
    await session.flush()
    template = status_notice(new)
    if template is not None:
        await _tell_customer(
            session, desk, ticket, template, source=f"history:{entry.id}", now=now, body=body
        )
    return entry


def _local_time(when: datetime) -> str:
    return when.strftime("%Y-%m-%d %H:%M %Z").strip()


async def agent_reply(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    *,
    agent: str,
    body: str,
    now: datetime,
    status: Status | None = None,
    scheduled_for: datetime | None = None,
) -> Article:
    """A public answer from an agent, mailed to the requester and participants.

    With a status that PROCESS.md announces, the answer and the announcement go out
    as one message.
    """
    if not body.strip():
        raise TicketError("the reply is empty")
    article = add_article(
        session,
        ticket,
        direction="out",
        author=agent,
        kind="agent",
        subject=ticket.subject,
        body=body,
        now=now,
    )
    await session.flush()
    template = "agent_reply"
    if status is not None and _agent_status(
        session, ticket, status, by=agent, now=now, scheduled_for=scheduled_for
    ):
        template = status_notice(status) or "agent_reply"
    message_ids = await _tell_customer(
        session, desk, ticket, template, source=f"article:{article.id}", now=now, body=body
    )
    if message_ids:
        article.message_id = message_ids[0]
    return article


def set_category(
    session: AsyncSession, ticket: Ticket, category: Category, *, by: str, now: datetime
) -> None:
    if ticket.category != category.value:
        record(session, ticket, "category", ticket.category, category.value, by=by, now=now)
        ticket.category = category.value
        ticket.updated_at = now


def set_impact_urgency(
    session: AsyncSession,
    ticket: Ticket,
    *,
    impact: Impact | None,
    urgency: Urgency | None,
    by: str,
    now: datetime,
) -> None:
    """Set impact and/or urgency; the priority follows the matrix unless overridden."""
    if impact is not None and ticket.impact != impact.value:
        record(session, ticket, "impact", ticket.impact, impact.value, by=by, now=now)
        ticket.impact = impact.value
    if urgency is not None and ticket.urgency != urgency.value:
        record(session, ticket, "urgency", ticket.urgency, urgency.value, by=by, now=now)
        ticket.urgency = urgency.value
    ticket.updated_at = now
    if ticket.impact and ticket.urgency and not ticket.priority_overridden:
        computed = priority_for(ticket.impact, ticket.urgency)
        if computed != ticket.priority:
            record(
                session,
                ticket,
                "priority",
                ticket.priority,
                computed,
                by=by,
                now=now,
                reason="impact x urgency",
            )
            ticket.priority = computed


def override_priority(
    session: AsyncSession, ticket: Ticket, priority: int, *, reason: str, by: str, now: datetime
) -> None:
    """An agent's override of the matrix; it needs a reason and is kept in the history."""
    if priority not in PRIORITIES:
        raise TicketError(f"priority must be 1-5 (got {priority})")
    if not reason.strip():
        raise TicketError("a priority override needs a reason (--reason)")
    record(session, ticket, "priority", ticket.priority, priority, by=by, now=now, reason=reason)
    ticket.priority = priority
    ticket.priority_overridden = True
    ticket.updated_at = now


def set_team(
    session: AsyncSession, desk: Desk, ticket: Ticket, team: str, *, by: str, now: datetime
) -> None:
    desk.settings.team(team)  # raises StopIteration for an unknown key; the CLI checks first
    if ticket.team != team:
        record(session, ticket, "team", ticket.team, team, by=by, now=now)
        ticket.team = team
        ticket.updated_at = now


# ---------------------------------------------------------------- mail from customers


@dataclass(frozen=True)
class Received:
    """What a customer's mail did: the ticket, and whether it was new."""

    ticket: Ticket
    created: bool
    effect: ReplyEffect | None
    article: Article


def team_for_mail(desk: Desk, mail: ParsedMail, envelope_recipients: Iterable[str]) -> str:
    """The team whose desk address the mail was sent to; the default team otherwise."""
    by_address = {t.address: t.key for t in desk.settings.teams}
    for address in (*mail.delivered_to, *envelope_recipients, *mail.to, *mail.cc):
        if address.lower() in by_address:
            return by_address[address.lower()]
    return desk.settings.default_team.key


def clean_subject(subject: str, prefix: str, language: str) -> str:
    """A new ticket's subject: no reply prefixes, no other ticket's tag."""
    while (reference := find_reference(subject, prefix)) is not None:
        start = subject.upper().find(reference)
        if start < 0:  # the tag was mangled; keep the subject as it is
            break
        end = start + len(reference)
        if start > 0 and subject[start - 1] == "[" and subject[end : end + 1] == "]":
            start, end = start - 1, end + 1
        subject = (subject[:start] + subject[end:]).strip()
    subject = strip_reply_prefixes(subject)
    return subject or ("(geen onderwerp)" if language == "nl" else "(no subject)")


async def match_ticket(session: AsyncSession, desk: Desk, mail: ParsedMail) -> Ticket | None:
    """The ticket a mail is about: our Message-IDs first, then the reference in the subject."""
    ticket = await ticket_for_thread(session, mail.thread_ids)
    if ticket is not None:
        return ticket
    reference = find_reference(mail.subject, desk.settings.desk.reference_prefix)
    if reference is None:
        return None
    return await session.scalar(select(Ticket).where(Ticket.reference == reference))


async def open_ticket(
    session: AsyncSession,
    desk: Desk,
    *,
    subject: str,
    requester: str,
    team: str,
    now: datetime,
    language: str | None = None,
    linked_to: Ticket | None = None,
    by: str = SYSTEM,
) -> Ticket:
    settings = desk.settings
    language = language or settings.desk.language
    ticket = Ticket(
        reference=await next_reference(session, settings.desk.reference_prefix.upper(), now.year),
        subject=clean_subject(subject, settings.desk.reference_prefix, language),
        status=Status.OPEN.value,
        team=team,
        requester=requester,
        language=language,
        linked_ticket_id=None if linked_to is None else linked_to.id,
        created_at=now,
        updated_at=now,
        article_count=0,
        priority_overridden=False,
    )
    session.add(ticket)
    await session.flush()
    reason = None if linked_to is None else f"follow-up of {linked_to.reference}"
    record(session, ticket, "status", None, Status.OPEN.value, by=by, now=now, reason=reason)
    return ticket


async def receive_customer_mail(
    session: AsyncSession,
    desk: Desk,
    mail: ParsedMail,
    *,
    inbound_id: int,
    now: datetime,
    envelope_recipients: Iterable[str] = (),
) -> Received:
    """Apply a customer's mail: a new ticket, or an article on the ticket it is about."""
    settings = desk.settings
    exclude = settings.desk_addresses
    others = [a for a in (*mail.to, *mail.cc) if a not in exclude and a != mail.sender]
    thread = Thread(in_reply_to=mail.message_id, references=mail.references)
    subject = mail.subject or ""

    ticket = await match_ticket(session, desk, mail)
    linked: Ticket | None = None
    effect: ReplyEffect | None = None
    participants: list[str] = []
    if ticket is not None:
        participants = await participants_of(session, ticket)
        if not may_write(mail.sender, ticket.requester, participants):
            # A reference is not a key: a stranger's mail becomes a ticket of its own,
            # linked for the agents; the stranger learns nothing about the other ticket.
            linked, ticket = ticket, None
    if ticket is not None:
        outcome = customer_reply_outcome(
            Status(ticket.status),
            mail.text,
            closed_at=ticket.closed_at,
            now=now,
            reopen_window=timedelta(days=settings.desk.reopen_days),
        )
        effect = outcome.effect
        if effect is ReplyEffect.NEW_TICKET:
            linked, ticket = ticket, None

    if ticket is None:
        team = linked.team if linked is not None else team_for_mail(desk, mail, envelope_recipients)
        ticket = await open_ticket(
            session,
            desk,
            subject=subject,
            requester=mail.sender,
            team=team,
            now=now,
            linked_to=linked,
        )
        add_participants(session, ticket, others, known=[], exclude=exclude)
        article = _customer_article(session, ticket, mail, inbound_id, now)
        await notify(
            session,
            desk,
            ticket,
            "created",
            [ticket.requester],
            source=f"inbound:{inbound_id}",
            now=now,
            thread=thread,
            recipient_name=mail.sender_name,
        )
        return Received(ticket=ticket, created=True, effect=None, article=article)

    assert effect is not None
    participants = add_participants(session, ticket, others, known=participants, exclude=exclude)
    article = _customer_article(session, ticket, mail, inbound_id, now)
    if outcome.new_status is not None and outcome.new_status is not Status(ticket.status):
        _set_status(
            session, ticket, outcome.new_status, by=mail.sender, now=now, reason=effect.value
        )
    source = f"inbound:{inbound_id}"
    if effect is ReplyEffect.ACCEPTED:
        event, recipients = "closed", await customer_side(session, ticket, participants)
    elif effect is ReplyEffect.REOPENED:
        event, recipients = "reopened", [mail.sender]
    else:
        event, recipients = "info_added", [mail.sender]
    await notify(
        session,
        desk,
        ticket,
        event,
        recipients,
        source=source,
        now=now,
        thread=thread,
        recipient_name="" if event == "closed" else mail.sender_name,
        effect=effect.value,
    )
    await notify_team(session, desk, ticket, effect, mail, source=source, now=now)
    return Received(ticket=ticket, created=False, effect=effect, article=article)


def _customer_article(
    session: AsyncSession, ticket: Ticket, mail: ParsedMail, inbound_id: int, now: datetime
) -> Article:
    return add_article(
        session,
        ticket,
        direction="in",
        author=mail.sender,
        kind="customer",
        subject=mail.subject,
        body=mail.text,
        now=now,
        message_id=mail.message_id,
        inbound_id=inbound_id,
    )


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
    team = team_of(desk, ticket)
    if not team.notify:
        return
    language = desk.settings.desk.language
    await notify(
        session,
        desk,
        ticket,
        "team_notice",
        team.notify,
        source=source,
        now=now,
        language=language,
        auto_submitted="auto-generated",
        notice=TEAM_NOTICES[language].get(effect, effect.value),
        author=mail.sender,
        body=mail.text,
    )


async def ticket_counts(session: AsyncSession) -> dict[str, int]:
    rows = await session.execute(select(Ticket.status, func.count()).group_by(Ticket.status))
    return {status: count for status, count in rows.all()}
