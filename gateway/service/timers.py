"""Timers: SLA warnings, reminders, closing for silence and wake-ups; each fires once.

A timer fires in a transaction of its own that also does what it is for (the team
notice, the reminder, the status change and its notification) and marks it fired, so
a crash either does both or neither. Two daemons take different timers (PostgreSQL:
FOR UPDATE SKIP LOCKED); a timer found no longer needed (the customer answered, the
ticket was closed) is marked fired with that outcome and does nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.domain.model import Status
from gateway.domain.sla import CLOCK_STOPPED
from gateway.domain.workflow import Actor
from gateway.service.desk import SYSTEM, Desk
from gateway.service.notices import agent_thread, customer_side, notify, tell_team
from gateway.service.tickets import apply_status
from gateway.store.models import Ticket, Timer

TEAM_TEXT = {
    "nl": {
        "first_response_warning": "SLA: eerste reactie bijna te laat",
        "first_response_breach": "SLA: eerste reactie te laat",
        "resolution_warning": "SLA: oplossing bijna te laat",
        "resolution_breach": "SLA: oplossing te laat",
        "scheduled_wake": "Geplande melding is aan de beurt",
        "due": "Uiterlijk",
        "was_due": "Was uiterlijk",
    },
    "en": {
        "first_response_warning": "SLA: first response almost late",
        "first_response_breach": "SLA: first response late",
        "resolution_warning": "SLA: resolution almost late",
        "resolution_breach": "SLA: resolution late",
        "scheduled_wake": "Scheduled ticket is due",
        "due": "Due",
        "was_due": "Was due",
    },
}

Action = Callable[[AsyncSession, Desk, Timer, Ticket, datetime], Awaitable[str]]


async def fire_due(
    sessions: async_sessionmaker[AsyncSession], desk: Desk, now: datetime, *, limit: int = 100
) -> int:
    """Fire the timers due by `now`, oldest first, one transaction each; returns how many."""
    fired = 0
    while fired < limit:
        async with sessions() as session, session.begin():
            timer = await session.scalar(
                select(Timer)
                .where(Timer.fired_at.is_(None), Timer.due_at <= now)
                .order_by(Timer.due_at, Timer.id)
                .limit(1)
                .with_for_update(skip_locked=True)
            )
            if timer is None:
                return fired
            ticket = await session.get(Ticket, timer.ticket_id, with_for_update=True)
            assert ticket is not None
            action = ACTIONS.get(timer.kind, _unknown)
            timer.outcome = (await action(session, desk, timer, ticket, now))[:255]
            timer.fired_at = now
        fired += 1
    return fired


def _local(desk: Desk, when: datetime | None) -> str:
    if when is None:
        return "-"
    return when.astimezone(desk.calendar.timezone).strftime("%Y-%m-%d %H:%M")


async def _sla_notice(
    session: AsyncSession, desk: Desk, timer: Timer, ticket: Ticket, now: datetime
) -> str:
    if Status(ticket.status) is Status.CLOSED or Status(ticket.status) in CLOCK_STOPPED:
        return f"not needed: ticket is {ticket.status}"
    first = timer.kind.startswith("first_response")
    if first and ticket.first_response_at is not None:
        return "not needed: answered"
    text = TEAM_TEXT[desk.settings.desk.language]
    target = ticket.first_response_due if first else ticket.resolution_due
    label = text["was_due"] if timer.kind.endswith("breach") else text["due"]
    await tell_team(
        session,
        desk,
        ticket,
        text[timer.kind],
        source=f"timer:{timer.id}",
        now=now,
        body=f"{label}: {_local(desk, target)}",
    )
    return "team told"


async def _remind_customer(
    session: AsyncSession, desk: Desk, timer: Timer, ticket: Ticket, now: datetime
) -> str:
    if Status(ticket.status) is not Status.AWAITING_CUSTOMER:
        return f"not needed: ticket is {ticket.status}"
    close = await session.scalar(
        select(Timer.due_at).where(
            Timer.ticket_id == ticket.id,
            Timer.kind == "customer_close",
            Timer.episode == timer.episode,
        )
    )
    await notify(
        session,
        desk,
        ticket,
        "reminder",
        await customer_side(session, ticket),
        source=f"timer:{timer.id}",
        now=now,
        thread=await agent_thread(session, ticket),
        auto_submitted="auto-generated",
        close_on=_local(desk, close),
    )
    return "customer reminded"


async def _close(
    session: AsyncSession,
    desk: Desk,
    timer: Timer,
    ticket: Ticket,
    now: datetime,
    *,
    waiting_for: Status,
    effect: str,
) -> str:
    if Status(ticket.status) is not waiting_for:
        return f"not needed: ticket is {ticket.status}"
    await apply_status(
        session, desk, ticket, Status.CLOSED, actor=Actor.SYSTEM, by=SYSTEM, now=now, reason=effect
    )
    await notify(
        session,
        desk,
        ticket,
        "closed",
        await customer_side(session, ticket),
        source=f"timer:{timer.id}",
        now=now,
        thread=await agent_thread(session, ticket),
        auto_submitted="auto-generated",
        effect=effect,
    )
    return f"closed ({effect})"


async def _wake(
    session: AsyncSession, desk: Desk, timer: Timer, ticket: Ticket, now: datetime
) -> str:
    if Status(ticket.status) is not Status.SCHEDULED:
        return f"not needed: ticket is {ticket.status}"
    await apply_status(
        session,
        desk,
        ticket,
        Status.IN_PROGRESS,
        actor=Actor.SYSTEM,
        by=SYSTEM,
        now=now,
        reason="scheduled date",
    )
    text = TEAM_TEXT[desk.settings.desk.language]
    await tell_team(
        session,
        desk,
        ticket,
        text["scheduled_wake"],
        source=f"timer:{timer.id}",
        now=now,
        body=f"{text['due']}: {_local(desk, ticket.scheduled_for)}",
    )
    return "woke up: in_progress, team told"


async def _unknown(
    session: AsyncSession, desk: Desk, timer: Timer, ticket: Ticket, now: datetime
) -> str:
    return f"unknown timer kind {timer.kind!r}: nothing done"


ACTIONS: dict[str, Action] = {
    "first_response_warning": _sla_notice,
    "first_response_breach": _sla_notice,
    "resolution_warning": _sla_notice,
    "resolution_breach": _sla_notice,
    "customer_reminder": _remind_customer,
    "customer_close": partial(_close, waiting_for=Status.AWAITING_CUSTOMER, effect="no_answer"),
    "acceptance_close": partial(
        _close, waiting_for=Status.AWAITING_ACCEPTANCE, effect="accepted_by_silence"
    ),
    "scheduled_wake": _wake,
}
