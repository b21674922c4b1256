"""Tickets, their references, participants, articles and history."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Executable, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from gateway.domain.categories import category_from_mail
from gateway.domain.model import Category, Status
from gateway.domain.reference import find_reference, format_reference, strip_reply_prefixes
from gateway.domain.workflow import Actor, InvalidTransition, check_transition
from gateway.service.desk import SYSTEM, Desk, StatusRefused, UnknownTicket
from gateway.service.sla import start_clock, status_changed
from gateway.store import prepared
from gateway.store.db import dialect_of
from gateway.store.models import (
    Article,
    HistoryEntry,
    Organisation,
    Participant,
    ReferenceCounter,
    Ticket,
)


@functools.cache
def _count_up(dialect: str) -> Executable:
    last = prepared.table_of(ReferenceCounter).c.last
    return (
        prepared.upsert(dialect, ReferenceCounter)
        .on_conflict_do_update(index_elements=["prefix", "year"], set_={"last": last + 1})
        .returning(last)
    )


async def next_reference(session: AsyncSession, prefix: str, year: int) -> str:
    """The next free reference for a year; one atomic statement, safe under concurrency."""
    result = await prepared.execute(
        session,
        _count_up(dialect_of(session)),
        {"prefix": prefix, "year": year, "last": 1},
    )
    return format_reference(prefix, year, result.scalar_one())


async def get_ticket(session: AsyncSession, reference: str) -> Ticket:
    """The ticket with this reference (case-insensitive); UnknownTicket if none.

    Locked for the rest of the transaction (PostgreSQL), so that a change by an agent
    and a customer's mail arriving at the same moment do not overwrite each other."""
    ticket = await session.scalar(
        select(Ticket).where(Ticket.reference == reference.upper()).with_for_update()
    )
    if ticket is None:
        raise UnknownTicket(f"no ticket with reference {reference}")
    return ticket


_PARTICIPANTS = (
    select(Participant.address)
    .where(Participant.ticket_id == bindparam("ticket_id"))
    .order_by(Participant.id)
)


async def participants_of(session: AsyncSession, ticket: Ticket) -> list[str]:
    # On the driver: participants are only ever added with prepared.add (written at
    # once), so there is nothing in the session to flush first.
    rows = await prepared.execute(session, _PARTICIPANTS, {"ticket_id": ticket.id})
    return list(rows.scalars())


async def add_participants(
    session: AsyncSession,
    ticket: Ticket,
    addresses: Iterable[str],
    *,
    known: list[str],
    exclude: set[str],
) -> list[str]:
    """Add new addresses as participants (written at once, no flush at commit); returns
    the participants after adding."""
    participants = list(known)
    skip = set(known) | {ticket.requester} | exclude
    for address in addresses:
        if address not in skip:
            await prepared.add(session, Participant(ticket_id=ticket.id, address=address))
            participants.append(address)
            skip.add(address)
    return participants


async def record(
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
    await prepared.add(session, entry)
    return entry


_TICKET = prepared.table_of(Ticket)
_COUNT_ARTICLE = (
    update(_TICKET)
    .where(_TICKET.c.id == bindparam("ticket_id"))
    .values(article_count=_TICKET.c.article_count + 1, updated_at=bindparam("now"))
)


async def add_article(
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
    full_body: str | None = None,
    auth: str | None = None,
    counted: bool = False,
) -> Article:
    """An article on the ticket, counted on it (`counted`: the ticket's own INSERT
    already counted it, see open_ticket)."""
    article = Article(
        ticket_id=ticket.id,
        direction=direction,
        author=author,
        kind=kind,
        public=public,
        subject=subject,
        body=body,
        full_body=full_body if full_body != body else None,
        message_id=message_id,
        inbound_id=inbound_id,
        created_at=now,
        auth=auth,
    )
    await prepared.add(session, article)
    if counted:
        return article
    # The ticket's counter in the same way; the loaded ticket is told, not flushed.
    await prepared.execute(session, _COUNT_ARTICLE, {"ticket_id": ticket.id, "now": now})
    set_committed_value(ticket, "article_count", ticket.article_count + 1)
    set_committed_value(ticket, "updated_at", now)
    return article


def check_status_change(ticket: Ticket, new: Status, actor: Actor) -> None:
    """Refuse (StatusRefused, naming the ticket and the statuses allowed) a change the
    transition table does not give `actor`; the same status again always passes."""
    old = Status(ticket.status)
    if new is old:
        return
    try:
        check_transition(old, new, actor)
    except InvalidTransition as exc:
        raise StatusRefused(f"{ticket.reference}: {exc}") from exc


async def apply_status(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    new: Status,
    *,
    actor: Actor,
    by: str,
    now: datetime,
    reason: str | None = None,
) -> HistoryEntry:
    """The one way a status changes: checked against the transition table, kept in the
    history with who, when and why, and the SLA clock and timers moved along.

    The same status again is allowed (a scheduled ticket's new date) and recorded.
    """
    check_status_change(ticket, new, actor)
    old = Status(ticket.status)
    ticket.status = new.value
    ticket.updated_at = now
    if new is Status.CLOSED:
        ticket.closed_at = now
    elif ticket.closed_at is not None:
        ticket.closed_at = None
    entry = await record(
        session, ticket, "status", old.value, new.value, by=by, now=now, reason=reason
    )
    await status_changed(session, desk, ticket, old, now)
    return entry


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
    link_reason: str | None = None,
    by: str = SYSTEM,
    first_line: str = "",
    organisation: Organisation | None = None,
    with_article: bool = False,
) -> Ticket:
    """A new ticket: its reference, cleaned subject, category (named by the customer at
    the start of the subject or `first_line`, else the team's default), its customer's
    SLA clock and its history."""
    settings = desk.settings
    language = language or settings.desk.language
    subject = clean_subject(subject, settings.desk.reference_prefix, language)
    named, subject = category_from_mail(subject, first_line)
    category = named or (Category(d) if (d := settings.team(team).default_category) else None)
    ticket = Ticket(
        reference=await next_reference(session, settings.desk.reference_prefix.upper(), now.year),
        subject=subject or clean_subject("", settings.desk.reference_prefix, language),
        category=None if category is None else category.value,
        status=Status.OPEN.value,
        team=team,
        requester=requester,
        language=language,
        linked_ticket_id=None if linked_to is None else linked_to.id,
        created_at=now,
        updated_at=now,
        # The article the caller adds next (with counted=True), counted in this INSERT.
        article_count=1 if with_article else 0,
        priority_overridden=False,
        organisation_id=None if organisation is None else organisation.id,
        sla_stopped_seconds=0,
    )
    await start_clock(session, desk, ticket, organisation)
    reason = link_reason
    if linked_to is not None and reason is None:
        reason = f"follow-up of {linked_to.reference}"
    await record(session, ticket, "status", None, Status.OPEN.value, by=by, now=now, reason=reason)
    if category is not None:
        why = "named by the customer" if named else f"default of team {team}"
        await record(session, ticket, "category", None, category.value, by=by, now=now, reason=why)
    return ticket
