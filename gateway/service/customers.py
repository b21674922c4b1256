"""Mail from customers: find the ticket it is about and apply the process rules."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.domain.access import Standing, domain_of
from gateway.domain.model import Status
from gateway.domain.reference import find_reference
from gateway.domain.rules import ReplyEffect, ReplyOutcome, customer_reply_outcome
from gateway.domain.workflow import Actor
from gateway.mail.parse import ParsedMail
from gateway.notify.render import human_size
from gateway.service.attachments import store_attachments
from gateway.service.desk import Desk
from gateway.service.notices import Thread, customer_side, notify, notify_team
from gateway.service.oncall import page_if_urgent, support_context
from gateway.service.organisations import (
    Customer,
    HeldForReview,
    customer_for,
)
from gateway.service.tickets import (
    add_article,
    add_participants,
    apply_status,
    open_ticket,
    participants_of,
)
from gateway.store import prepared
from gateway.store.models import Article, Contact, Ticket


@dataclass(frozen=True)
class Received:
    """What a mail did: the ticket it made or touched, and how.

    `outcome` is ticket (a new one), article (added to `ticket`) or ignored (recorded
    only; `ticket` is the one it named, for the agents).
    """

    ticket: Ticket
    outcome: str
    reason: str | None = None
    effect: ReplyEffect | None = None
    article: Article | None = None


def team_for_mail(desk: Desk, mail: ParsedMail, envelope_recipients: Iterable[str]) -> str:
    """The team whose desk address the mail was sent to; the default team otherwise."""
    by_address = {t.address: t.key for t in desk.settings.teams}
    for address in (*mail.delivered_to, *envelope_recipients, *mail.to, *mail.cc):
        if address.lower() in by_address:
            return by_address[address.lower()]
    return desk.settings.default_team.key


async def ticket_for_thread(
    session: AsyncSession, desk: Desk, message_ids: Iterable[str]
) -> Ticket | None:
    """The ticket one of these Message-IDs belongs to, nearest first.

    Ours are signed and name their ticket; one in our domain that does not verify is
    forged and names nothing. Others are looked up among the mail received.
    """
    signer = await desk.message_ids.signer(session)
    foreign: list[str] = []
    for mid in list(message_ids)[:50]:
        if not signer.looks_own(mid):
            foreign.append(mid)
            continue
        own = signer.verify(mid)
        if own is not None and own.reference is not None:
            ticket = await _locked_ticket(session, own.reference)
            if ticket is not None:
                return ticket
    if not foreign:
        return None
    found: Ticket | None = await prepared.load_one(
        session, _ticket_of_thread(len(foreign)), prepared.numbered("id", foreign), Ticket
    )
    return found


# Locked (PostgreSQL) until the transaction ends: two replies to one ticket at once
# (two daemons, LMTP and IMAP) are applied one after the other, not both to the same
# old status.
_TICKET_BY_REFERENCE = (
    select(Ticket).where(Ticket.reference == bindparam("reference")).with_for_update()
)


@functools.cache
def _ticket_of_thread(count: int) -> Select[Ticket]:
    """The ticket of the first of `count` Message-IDs (id0, id1, …) found among the
    articles, locked: one statement per count, so each compiles once."""
    thread_ticket = (
        select(Article.ticket_id).where(prepared.in_list(Article.message_id, "id", count)).limit(1)
    )
    return select(Ticket).where(Ticket.id == thread_ticket.scalar_subquery()).with_for_update()


async def _locked_ticket(session: AsyncSession, reference: str) -> Ticket | None:
    ticket: Ticket | None = await prepared.load_one(
        session, _TICKET_BY_REFERENCE, {"reference": reference}, Ticket
    )
    return ticket


async def match_ticket(session: AsyncSession, desk: Desk, mail: ParsedMail) -> Ticket | None:
    """The ticket a mail is about: our Message-IDs first, then the reference in the subject."""
    ticket = await ticket_for_thread(session, desk, mail.thread_ids)
    if ticket is not None:
        return ticket
    reference = find_reference(mail.subject, desk.settings.desk.reference_prefix)
    if reference is None:
        return None
    return await _locked_ticket(session, reference)


NO_AUTO_REPLIES = "the sender asked for no automatic answers (X-Auto-Response-Suppress)"


async def receive_customer_mail(
    session: AsyncSession,
    desk: Desk,
    mail: ParsedMail,
    *,
    inbound_id: int,
    now: datetime,
    envelope_recipients: Iterable[str] = (),
    suppress_auto_reply: bool = False,
    auth: str | None = None,
) -> Received:
    """Apply a customer's mail: a new ticket, or an article on the ticket it is about.

    Only the requester, participants, their organisation and agents add to a ticket;
    what mail from anyone else naming it does is `access.strangers`. Attachments are
    kept on the article; when some are over the limits, the sender is told.
    """
    incoming = _Incoming(mail, inbound_id, now, envelope_recipients, suppress_auto_reply, auth)
    received = await _receive(session, desk, incoming)
    if received.article is None or not mail.attachments:
        return received
    refused = await store_attachments(
        session, desk, received.ticket, received.article, mail.attachments
    )
    if refused and received.reason != "stranger_note":
        limits = desk.settings.attachments
        await notify(
            session,
            desk,
            received.ticket,
            "attachment_refused",
            [mail.sender],
            source=f"inbound:{inbound_id}",
            now=now,
            thread=incoming.thread,
            suppressed=incoming.held,
            recipient_name=mail.sender_name,
            files=[{"name": a.filename, "size": human_size(a.size)} for a in refused],
            limits={
                "attachment": human_size(limits.max_attachment_bytes),
                "message": human_size(limits.max_message_attachment_bytes),
            },
        )
    return received


@dataclass(frozen=True)
class _Incoming:
    """A customer's mail on its way through the rules, with what came with it."""

    mail: ParsedMail
    inbound_id: int
    now: datetime
    envelope_recipients: Iterable[str]
    suppress_auto_reply: bool
    auth: str | None

    @property
    def source(self) -> str:
        return f"inbound:{self.inbound_id}"

    @property
    def thread(self) -> Thread:
        return Thread(in_reply_to=self.mail.message_id, references=self.mail.references)

    @property
    def held(self) -> dict[str, str] | None:
        """The sender's automatic answers held back, when they asked for none."""
        return {self.mail.sender: NO_AUTO_REPLIES} if self.suppress_auto_reply else None

    def others(self, exclude: set[str]) -> list[str]:
        """Everyone in To and Cc but the sender and the desk: participants."""
        mail = self.mail
        return [a for a in (*mail.to, *mail.cc) if a not in exclude and a != mail.sender]

    async def article(
        self,
        session: AsyncSession,
        ticket: Ticket,
        kind: str = "customer",
        public: bool = True,
        *,
        counted: bool = False,
    ) -> Article:
        mail = self.mail
        return await add_article(
            session,
            ticket,
            direction="in",
            author=mail.sender,
            kind=kind,
            public=public,
            subject=mail.subject,
            body=mail.new_text,
            full_body=mail.text,
            now=self.now,
            message_id=mail.message_id,
            inbound_id=self.inbound_id,
            auth=self.auth,
            counted=counted,
        )


async def _receive(session: AsyncSession, desk: Desk, incoming: _Incoming) -> Received:
    mail = incoming.mail
    ticket = await match_ticket(session, desk, mail)
    if ticket is None:
        return await _new_ticket(session, desk, incoming)
    participants = await participants_of(session, ticket)
    standing = desk.access.standing(mail.sender, ticket.requester, participants)
    if standing is None:
        policy = desk.settings.access.strangers
        if policy == "internal_note":
            note = await incoming.article(session, ticket, "stranger", public=False)
            return Received(ticket, "article", "stranger_note", article=note)
        if policy == "ignore":
            return Received(ticket, "ignored", "stranger")
        # A reference is not a key: a stranger's mail becomes a ticket of its own,
        # linked for the agents; the stranger learns nothing about the other ticket.
        reason = f"from {mail.sender}, who is not on {ticket.reference}"
        return await _new_ticket(session, desk, incoming, linked=ticket, link_reason=reason)
    if standing is Standing.AGENT:
        # An agent's copy (CC or BCC to the desk) of what they wrote: kept on the
        # ticket, no status change, nobody told (the recipients have the mail).
        copy = await incoming.article(session, ticket, "agent")
        return Received(ticket, "article", "agent", article=copy)
    outcome = customer_reply_outcome(
        Status(ticket.status),
        mail.new_text,  # the quoted question must not count as the answer
        closed_at=ticket.closed_at,
        now=incoming.now,
        reopen_window=timedelta(days=desk.settings.desk.reopen_days),
    )
    if outcome.effect is ReplyEffect.NEW_TICKET:
        return await _new_ticket(session, desk, incoming, linked=ticket)
    return await _follow_up(session, desk, incoming, ticket, participants, outcome)


async def _new_ticket(
    session: AsyncSession,
    desk: Desk,
    incoming: _Incoming,
    *,
    linked: Ticket | None = None,
    link_reason: str | None = None,
) -> Received:
    """A new ticket for the mail (linked to the one it named, if any), its customer,
    SLA, participants and article; the customer told, the on-call paged if need be."""
    mail, now = incoming.mail, incoming.now
    exclude = desk.settings.desk_addresses
    customer = await _known_customer(session, desk, mail, now)
    if linked is not None:
        team = linked.team
    else:
        team = team_for_mail(desk, mail, incoming.envelope_recipients)
    ticket = await open_ticket(
        session,
        desk,
        subject=mail.subject or "",
        requester=mail.sender,
        team=team,
        now=now,
        language=None if customer.contact is None else customer.contact.language,
        linked_to=linked,
        link_reason=link_reason,
        first_line=next((line for line in mail.new_text.splitlines() if line.strip()), ""),
        organisation=customer.organisation,
        with_article=True,
    )
    await add_participants(session, ticket, incoming.others(exclude), known=[], exclude=exclude)
    created = await incoming.article(session, ticket, counted=True)
    await notify(
        session,
        desk,
        ticket,
        "created",
        [ticket.requester],
        source=incoming.source,
        now=now,
        thread=incoming.thread,
        suppressed=incoming.held,
        first=True,
        recipient_name=mail.sender_name,
        support=support_context(desk, customer.organisation, now, ticket.language),
    )
    await page_if_urgent(session, desk, ticket, customer.organisation, mail, now)
    reason = None if link_reason is None else "stranger"
    return Received(ticket, "ticket", reason, article=created)


async def _follow_up(
    session: AsyncSession,
    desk: Desk,
    incoming: _Incoming,
    ticket: Ticket,
    participants: list[str],
    outcome: ReplyOutcome,
) -> Received:
    """A mail from someone on the ticket: its article, the status change PROCESS.md
    gives it, the answer to the sender (or everyone, when closed) and the team notice."""
    mail, now, effect = incoming.mail, incoming.now, outcome.effect
    exclude = desk.settings.desk_addresses
    participants = await add_participants(
        session, ticket, incoming.others(exclude), known=participants, exclude=exclude
    )
    added = await incoming.article(session, ticket)
    if outcome.new_status is not None and outcome.new_status is not Status(ticket.status):
        await apply_status(
            session,
            desk,
            ticket,
            outcome.new_status,
            actor=Actor.CUSTOMER,
            by=mail.sender,
            now=now,
            reason=effect.value,
        )
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
        source=incoming.source,
        now=now,
        thread=incoming.thread,
        suppressed=incoming.held,
        recipient_name="" if event == "closed" else mail.sender_name,
        effect=effect.value,
    )
    await notify_team(session, desk, ticket, effect, mail, source=incoming.source, now=now)
    return Received(ticket, "article", effect.value, effect=effect, article=added)


async def _known_customer(
    session: AsyncSession, desk: Desk, mail: ParsedMail, now: datetime
) -> Customer:
    """The sender as a customer; a first mail makes them a contact (of the organisation
    their domain belongs to, else of none), or is held when `customers.unknown_domain`
    says so."""
    customer = await customer_for(session, mail.sender)
    if customer.contact is not None:
        return customer
    if customer.organisation is None and desk.settings.customers.unknown_domain == "hold":
        raise HeldForReview(
            f"{mail.sender}: no organisation has domain {domain_of(mail.sender)}; held for "
            "review (customers.unknown_domain = hold): import the customer, then reprocess"
        )
    contact = Contact(
        address=mail.sender,
        name=mail.sender_name[:255],
        organisation_id=None if customer.organisation is None else customer.organisation.id,
        language=desk.settings.desk.language,
        created_at=now,
    )
    await prepared.add(session, contact)
    return Customer(contact=contact, organisation=customer.organisation)


async def receive_auto_reply(
    session: AsyncSession, desk: Desk, mail: ParsedMail, *, inbound_id: int, now: datetime
) -> Ticket | None:
    """An automatic reply (out of office) about a ticket: kept on it as a note for the
    agents, changing nothing and telling nobody. None when it names no ticket, or one
    its sender is a stranger to."""
    ticket = await match_ticket(session, desk, mail)
    if ticket is None:
        return None
    participants = await participants_of(session, ticket)
    if desk.access.standing(mail.sender, ticket.requester, participants) is None:
        return None
    incoming = _Incoming(mail, inbound_id, now, (), suppress_auto_reply=False, auth=None)
    await incoming.article(session, ticket, "auto_reply", public=False)
    return ticket
