"""The SLA clock of each ticket: due times kept current, timers armed and disarmed.

Every change that moves a due time (a new ticket, a status, a priority, the first
answer) calls in here, in the change's own transaction, so the due times and the
timers never disagree with the ticket.
"""

from __future__ import annotations

import functools
from datetime import datetime, timedelta

from sqlalchemy import Executable, delete
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.domain.model import Status
from gateway.domain.sla import (
    CLOCK_STOPPED,
    ClockState,
    SlaClock,
    Targets,
    due,
    targets_for,
    warning,
)
from gateway.service.desk import Desk
from gateway.service.organisations import own_targets
from gateway.store import prepared
from gateway.store.db import dialect_of
from gateway.store.models import Organisation, Ticket, Timer

FIRST_RESPONSE_KINDS = ("first_response_warning", "first_response_breach")
RESOLUTION_KINDS = ("resolution_warning", "resolution_breach")
SLA_KINDS = (*FIRST_RESPONSE_KINDS, *RESOLUTION_KINDS)
SLA_EPISODE = "sla"  # SLA warnings fire once per ticket
# Timers that belong to a stay in one status; armed when it is entered.
STATUS_KINDS: dict[Status, tuple[str, ...]] = {
    Status.AWAITING_CUSTOMER: ("customer_reminder", "customer_close"),
    Status.AWAITING_ACCEPTANCE: ("acceptance_close",),
    Status.SCHEDULED: ("scheduled_wake",),
}


async def sla_of(session: AsyncSession, desk: Desk, ticket: Ticket) -> tuple[SlaClock, Targets]:
    """The ticket's clock (office or clock hours) and targets (contract, priority)."""
    org = None
    if ticket.organisation_id is not None:
        org = await session.get(Organisation, ticket.organisation_id)
    return _sla(desk, ticket, org)


def _sla(desk: Desk, ticket: Ticket, org: Organisation | None) -> tuple[SlaClock, Targets]:
    contract = "none" if org is None else org.contract
    own = None if org is None else own_targets(org)
    targets = targets_for(desk.settings.sla.rules(), contract, ticket.priority, own)
    return SlaClock(desk.calendar, targets.business_hours), targets


def clock_state(ticket: Ticket) -> ClockState:
    return ClockState(
        ticket.created_at, ticket.sla_stopped_at, timedelta(seconds=ticket.sla_stopped_seconds)
    )


def _keep(ticket: Ticket, state: ClockState) -> None:
    ticket.sla_stopped_at = state.stopped_at
    ticket.sla_stopped_seconds = round(state.stopped_for.total_seconds())


async def _arm(
    session: AsyncSession,
    ticket: Ticket,
    episode: str,
    plan: dict[str, datetime | None],
    *,
    fresh: bool = False,
) -> None:
    """Set unfired timers to their moments; take away those planned for None (none to
    take away on a `fresh` ticket). A fired timer stays as it is. One statement for
    each half."""
    gone = [kind for kind, at in plan.items() if at is None]
    if gone and not fresh:
        await session.execute(
            delete(Timer).where(
                Timer.ticket_id == ticket.id,
                Timer.kind.in_(gone),
                Timer.episode == episode,
                Timer.fired_at.is_(None),
            )
        )
    due = [
        {"ticket_id": ticket.id, "kind": kind, "episode": episode, "due_at": at}
        for kind, at in plan.items()
        if at is not None
    ]
    if due:
        await prepared.execute(session, _set_timers(dialect_of(session)), due)


@functools.cache
def _set_timers(dialect: str) -> Executable:
    """Arm timers (rows as parameters); a fired one stays as it is."""
    table = prepared.table_of(Timer)
    insert = prepared.upsert(dialect, Timer)
    return insert.on_conflict_do_update(
        index_elements=["ticket_id", "kind", "episode"],
        set_={"due_at": insert.excluded.due_at},
        where=table.c.fired_at.is_(None),
    )


async def refresh_sla(session: AsyncSession, desk: Desk, ticket: Ticket) -> None:
    """Due times from the clock, the targets and the status; SLA timers to match.

    A closed ticket keeps the due times it had (what the reports measure against).
    """
    if ticket.id is None:
        await session.flush()
    if Status(ticket.status) is Status.CLOSED:
        await _arm(session, ticket, SLA_EPISODE, dict.fromkeys(SLA_KINDS))
        return
    await _plan_sla(session, desk, ticket, *await sla_of(session, desk, ticket))


async def start_clock(
    session: AsyncSession, desk: Desk, ticket: Ticket, organisation: Organisation | None
) -> None:
    """A new ticket, not yet written: its due times are set before its row is written
    (one INSERT, no UPDATE after), its SLA timers armed once it has an id."""
    plan = _plan(desk, ticket, *_sla(desk, ticket, organisation))
    await prepared.add(session, ticket)
    await _arm(session, ticket, SLA_EPISODE, plan, fresh=True)


async def _plan_sla(
    session: AsyncSession, desk: Desk, ticket: Ticket, clock: SlaClock, targets: Targets
) -> None:
    """Due times and SLA timers of a ticket that is not closed, from its clock."""
    await _arm(session, ticket, SLA_EPISODE, _plan(desk, ticket, clock, targets))


def _plan(
    desk: Desk, ticket: Ticket, clock: SlaClock, targets: Targets
) -> dict[str, datetime | None]:
    """Set the due times of a ticket that is not closed; its SLA timers' moments."""
    state = clock_state(ticket)
    fraction = desk.settings.sla.warn_fraction
    answered = ticket.first_response_at is not None
    if not answered:
        ticket.first_response_due = due(clock, state, targets.first_response)
    ticket.resolution_due = due(clock, state, targets.resolution)
    plan = {
        "first_response_warning": None
        if answered
        else warning(clock, state, targets.first_response, fraction),
        "first_response_breach": None if answered else ticket.first_response_due,
        "resolution_warning": warning(clock, state, targets.resolution, fraction),
        "resolution_breach": ticket.resolution_due,
    }
    return plan


async def status_changed(
    session: AsyncSession, desk: Desk, ticket: Ticket, old: Status | None, now: datetime
) -> None:
    """Stop or run the clock for the new status; its own timers armed, the old ones'
    taken away; due times refreshed."""
    new = Status(ticket.status)
    clock, targets = await sla_of(session, desk, ticket)
    state = clock_state(ticket)
    if new in CLOCK_STOPPED or new is Status.CLOSED:
        state = state.stop(now)
    else:
        state = state.resume(clock, now)
    _keep(ticket, state)
    if old is not None and old in STATUS_KINDS:
        await session.execute(
            delete(Timer).where(
                Timer.ticket_id == ticket.id,
                Timer.kind.in_(STATUS_KINDS[old]),
                Timer.fired_at.is_(None),
            )
        )
    episode = now.isoformat()
    timers = desk.settings.timers
    calendar = desk.calendar
    plan: dict[str, datetime | None] = {}
    if new is Status.AWAITING_CUSTOMER:
        remind = calendar.add_working_days(now, timers.reminder_working_days)
        plan["customer_reminder"] = remind
        plan["customer_close"] = calendar.add_working_days(remind, timers.close_after_working_days)
    elif new is Status.AWAITING_ACCEPTANCE:
        plan["acceptance_close"] = calendar.add_working_days(now, timers.acceptance_working_days)
    elif new is Status.SCHEDULED and ticket.scheduled_for is not None:
        plan["scheduled_wake"] = ticket.scheduled_for
    await _arm(session, ticket, episode, plan)
    if new is Status.CLOSED:
        await _arm(session, ticket, SLA_EPISODE, dict.fromkeys(SLA_KINDS))
    else:
        await _plan_sla(session, desk, ticket, clock, targets)


async def first_response(session: AsyncSession, desk: Desk, ticket: Ticket, now: datetime) -> None:
    """The first public answer of an agent: the first-response target is met or not."""
    if ticket.first_response_at is not None:
        return
    ticket.first_response_at = now
    await _arm(session, ticket, SLA_EPISODE, dict.fromkeys(FIRST_RESPONSE_KINDS))
