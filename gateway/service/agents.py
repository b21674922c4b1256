"""Changes agents make: status, answers, category, impact/urgency, priority, team."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.domain.model import Category, Impact, Status, Urgency
from gateway.domain.priority import PRIORITIES, priority_for
from gateway.domain.rules import status_notice
from gateway.domain.workflow import Actor
from gateway.service.desk import Desk, TicketError
from gateway.service.notices import agent_thread, customer_side, notify
from gateway.service.sla import first_response, refresh_sla
from gateway.service.tickets import add_article, apply_status, check_status_change, record
from gateway.store.models import Article, HistoryEntry, Ticket


def check_agent_status(ticket: Ticket, new: Status, scheduled_for: datetime | None) -> None:
    """Refuse, before anything is written, a status an agent may not set: one the
    transition table does not allow from here, or scheduled without a date."""
    check_status_change(ticket, new, Actor.AGENT)
    if new is Status.SCHEDULED and scheduled_for is None:
        raise TicketError("status scheduled needs a date (--scheduled-for)")


def _changes_nothing(ticket: Ticket, new: Status, scheduled_for: datetime | None) -> bool:
    """The same status again; for scheduled, the same date too (a new date is a change)."""
    if new is not Status(ticket.status):
        return False
    return new is not Status.SCHEDULED or scheduled_for == ticket.scheduled_for


async def _agent_status(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    new: Status,
    *,
    by: str,
    now: datetime,
    reason: str | None = None,
    scheduled_for: datetime | None = None,
) -> HistoryEntry | None:
    """An agent's status change (None when nothing changes); scheduled needs a date,
    which is kept in the history beside the status."""
    check_agent_status(ticket, new, scheduled_for)
    if _changes_nothing(ticket, new, scheduled_for):
        return None
    if new is Status.SCHEDULED and scheduled_for != ticket.scheduled_for:
        await record(
            session,
            ticket,
            "scheduled_for",
            None if ticket.scheduled_for is None else ticket.scheduled_for.isoformat(),
            None if scheduled_for is None else scheduled_for.isoformat(),
            by=by,
            now=now,
            reason=reason,
        )
        ticket.scheduled_for = scheduled_for
    return await apply_status(
        session, desk, ticket, new, actor=Actor.AGENT, by=by, now=now, reason=reason
    )


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
    entry = await _agent_status(
        session, desk, ticket, new, by=by, now=now, reason=reason, scheduled_for=scheduled_for
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
    if status is not None:
        check_agent_status(ticket, status, scheduled_for)
    article = await add_article(
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
    await first_response(session, desk, ticket, now)
    template = "agent_reply"
    if status is not None and await _agent_status(
        session, desk, ticket, status, by=agent, now=now, scheduled_for=scheduled_for
    ):
        template = status_notice(status) or "agent_reply"
    message_ids = await _tell_customer(
        session, desk, ticket, template, source=f"article:{article.id}", now=now, body=body
    )
    if message_ids:
        article.message_id = message_ids[0]
    return article


async def set_category(
    session: AsyncSession, ticket: Ticket, category: Category, *, by: str, now: datetime
) -> None:
    if ticket.category != category.value:
        await record(session, ticket, "category", ticket.category, category.value, by=by, now=now)
        ticket.category = category.value
        ticket.updated_at = now


async def set_impact_urgency(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    *,
    impact: Impact | None,
    urgency: Urgency | None,
    by: str,
    now: datetime,
) -> None:
    """Set impact and/or urgency; the priority follows the matrix unless overridden."""
    if impact is not None and ticket.impact != impact.value:
        await record(session, ticket, "impact", ticket.impact, impact.value, by=by, now=now)
        ticket.impact = impact.value
    if urgency is not None and ticket.urgency != urgency.value:
        await record(session, ticket, "urgency", ticket.urgency, urgency.value, by=by, now=now)
        ticket.urgency = urgency.value
    ticket.updated_at = now
    if ticket.impact and ticket.urgency and not ticket.priority_overridden:
        computed = priority_for(ticket.impact, ticket.urgency)
        if computed != ticket.priority:
            await record(
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
            await refresh_sla(session, desk, ticket)


async def override_priority(
    session: AsyncSession,
    desk: Desk,
    ticket: Ticket,
    priority: int,
    *,
    reason: str,
    by: str,
    now: datetime,
) -> None:
    """An agent's override of the matrix; it needs a reason and is kept in the history."""
    if priority not in PRIORITIES:
        raise TicketError(f"priority must be 1-5 (got {priority})")
    if not reason.strip():
        raise TicketError("a priority override needs a reason (--reason)")
    await record(
        session, ticket, "priority", ticket.priority, priority, by=by, now=now, reason=reason
    )
    ticket.priority = priority
    ticket.priority_overridden = True
    ticket.updated_at = now
    await refresh_sla(session, desk, ticket)


async def set_team(
    session: AsyncSession, desk: Desk, ticket: Ticket, team: str, *, by: str, now: datetime
) -> None:
    desk.settings.team(team)  # raises StopIteration for an unknown key; the CLI checks first
    if ticket.team != team:
        await record(session, ticket, "team", ticket.team, team, by=by, now=now)
        ticket.team = team
        ticket.updated_at = now
