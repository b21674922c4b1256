"""Mail from customers: find the ticket it is about and apply the process rules."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.domain.access import may_write
from gateway.domain.model import Status
from gateway.domain.reference import find_reference
from gateway.domain.rules import ReplyEffect, customer_reply_outcome
from gateway.mail.parse import ParsedMail
from gateway.service.desk import Desk
from gateway.service.notices import Thread, customer_side, notify, notify_team
from gateway.service.tickets import (
    add_article,
    add_participants,
    apply_status,
    open_ticket,
    participants_of,
)
from gateway.store.models import Article, OutboxMessage, Ticket


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
    if ticket_id is None:
        return None
    # Locked (PostgreSQL) until the transaction ends: two replies to one ticket at once
    # (two daemons, LMTP and IMAP) are applied one after the other, not both to the
    # same old status.
    return await session.get(Ticket, ticket_id, with_for_update=True)


async def match_ticket(session: AsyncSession, desk: Desk, mail: ParsedMail) -> Ticket | None:
    """The ticket a mail is about: our Message-IDs first, then the reference in the subject."""
    ticket = await ticket_for_thread(session, mail.thread_ids)
    if ticket is not None:
        return ticket
    reference = find_reference(mail.subject, desk.settings.desk.reference_prefix)
    if reference is None:
        return None
    return await session.scalar(
        select(Ticket).where(Ticket.reference == reference).with_for_update()
    )


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
            mail.new_text,  # the quoted question must not count as the answer
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
        apply_status(
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
        body=mail.new_text,
        full_body=mail.text,
        now=now,
        message_id=mail.message_id,
        inbound_id=inbound_id,
    )
