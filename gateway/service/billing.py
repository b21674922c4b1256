"""Time on tickets and the monthly reports: billing per customer, SLA per team."""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.domain.billing import (
    CustomerBill,
    SlaLine,
    SlaRow,
    TimeKind,
    TimeRow,
    bills,
    month_bounds,
    sla_report,
)
from gateway.service.desk import Desk
from gateway.service.organisations import get_organisation
from gateway.service.tickets import record
from gateway.store.models import Organisation, Ticket, TimeEntry

NO_ORGANISATION = "-"


def format_minutes(minutes: int) -> str:
    return f"{minutes // 60}h{minutes % 60:02d}"


async def add_time(
    session: AsyncSession,
    ticket: Ticket,
    minutes: int,
    *,
    kind: TimeKind,
    work_date: date,
    by: str,
    now: datetime,
    note: str = "",
) -> TimeEntry:
    """Register time on a ticket; kept in its history too."""
    entry = TimeEntry(
        ticket_id=ticket.id,
        minutes=minutes,
        kind=kind.value,
        work_date=work_date,
        note=note,
        by=by,
        created_at=now,
    )
    session.add(entry)
    what = f"{format_minutes(minutes)} {kind.value} on {work_date.isoformat()}"
    await record(session, ticket, "time", None, what, by=by, now=now, reason=note or None)
    return entry


def _month_in_utc(desk: Desk, period: str) -> tuple[date, date, datetime, datetime]:
    first, after = month_bounds(period)
    zone = desk.calendar.timezone
    return (
        first,
        after,
        datetime.combine(first, time(0), tzinfo=zone),
        datetime.combine(after, time(0), tzinfo=zone),
    )


async def billing_report(
    session: AsyncSession, desk: Desk, period: str, customer: str | None = None
) -> list[CustomerBill]:
    """Per customer: time per ticket worked in the month (by work date), the included
    hours used and the overage, and the fees of the tickets submitted in the month."""
    first, after, start, end = _month_in_utc(desk, period)
    orgs = list(await session.scalars(select(Organisation).order_by(Organisation.number)))
    if customer is not None:
        orgs = [await get_organisation(session, customer)]
    counts = await session.execute(
        select(Ticket.organisation_id, func.count())
        .where(Ticket.created_at >= start, Ticket.created_at < end)
        .group_by(Ticket.organisation_id)
    )
    submitted = {org_id: count for org_id, count in counts}
    customers = [
        CustomerBill(
            o.number,
            o.name,
            o.billing,
            o.included_minutes,
            o.submission_fee_cents,
            submitted.get(o.id, 0),
        )
        for o in orgs
    ]
    if customer is None:
        customers.append(CustomerBill(NO_ORGANISATION, "(no organisation)", "invoice", 0, 0, 0))
    numbers = {o.id: o.number for o in orgs}
    query = (
        select(
            Ticket.organisation_id,
            Ticket.reference,
            Ticket.subject,
            TimeEntry.kind,
            TimeEntry.minutes,
        )
        .join(Ticket, Ticket.id == TimeEntry.ticket_id)
        .where(TimeEntry.work_date >= first, TimeEntry.work_date < after)
        .order_by(TimeEntry.id)
    )
    rows = [
        TimeRow(
            NO_ORGANISATION if org_id is None else numbers.get(org_id, "?"),
            reference,
            subject,
            TimeKind(kind),
            minutes,
        )
        for org_id, reference, subject, kind, minutes in (await session.execute(query))
    ]
    return bills(customers, rows)


async def sla_month(session: AsyncSession, desk: Desk, period: str, now: datetime) -> list[SlaLine]:
    """The SLA report of the tickets created in the month."""
    _, _, start, end = _month_in_utc(desk, period)
    query = select(
        Ticket.team,
        Ticket.priority,
        Ticket.created_at,
        Ticket.first_response_at,
        Ticket.first_response_due,
        Ticket.closed_at,
        Ticket.resolution_due,
    ).where(Ticket.created_at >= start, Ticket.created_at < end)
    return sla_report((SlaRow(*r) for r in (await session.execute(query))), now)
