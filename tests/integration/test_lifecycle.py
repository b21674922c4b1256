"""A ticket's life on the clock: status changes through the table, the SLA clock that
stops and runs, reminders, closing for silence and wake-ups; on both databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.app import fire_timers
from gateway.domain.model import Impact, Status, Urgency
from gateway.service import agent_reply, change_status, get_ticket, set_impact_urgency
from gateway.service.desk import StatusRefused
from tests.conftest import GatewayFactory
from tests.integration.helpers import detail, outbox_rows
from tests.integration.test_timers import with_customers
from tests.support.mails import make_mail
from tests.support.settings import Clock

AMS = ZoneInfo("Europe/Amsterdam")
REF = "VTM-2026-000001"
AGENT = "anna@vtm.example"


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS).astimezone(UTC)  # type: ignore[misc]


async def opened(make_gateway: GatewayFactory, clock: Clock, **kwargs: Any) -> Any:
    """A ticket from the port (SLA, office hours), Monday 23 Nov 2026 09:00."""
    gateway = await with_customers(make_gateway, **kwargs)
    clock.now = local(2026, 11, 23, 9, 0)
    await gateway.pipeline.ingest(make_mail(sender="ops@havennoord.example"), "t")
    return gateway


async def set_status(gateway: Any, status: Status, now: datetime, **kw: Any) -> None:
    async with gateway.sessions() as session, session.begin():
        ticket = await get_ticket(session, REF)
        await change_status(session, gateway.desk, ticket, status, by=AGENT, now=now, **kw)


async def events(gateway: Any) -> list[str]:
    return [r.event for r in await outbox_rows(gateway)]


async def test_a_refused_change_names_what_is_allowed_and_writes_nothing(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await opened(make_gateway, clock)
    await set_status(gateway, Status.CLOSED, clock.now)
    before = await detail(gateway, REF)
    with pytest.raises(StatusRefused, match=f"{REF}: cannot go from closed to on_hold"):
        await set_status(gateway, Status.ON_HOLD, clock.now)
    assert await detail(gateway, REF) == before


async def test_the_clock_stops_while_the_customer_is_awaited_and_runs_on_after(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await opened(make_gateway, clock)
    first = await detail(gateway, REF)
    assert first["resolution_due"] == local(2026, 11, 25, 9, 0).isoformat()  # 17 office hours
    due = datetime.fromisoformat(first["resolution_due"])
    clock.now = local(2026, 11, 23, 10, 0)
    await set_status(gateway, Status.AWAITING_CUSTOMER, clock.now)
    waiting = await detail(gateway, REF)
    assert waiting["resolution_due"] is None
    assert waiting["sla_stopped_since"] == clock.now.isoformat()
    clock.now = local(2026, 11, 24, 10, 0)  # one office day (8.5 h) later the answer comes
    await gateway.pipeline.ingest(
        make_mail(sender="ops@havennoord.example", subject=f"Re: [{REF}] hier is het"), "t"
    )
    answered = await detail(gateway, REF)
    assert answered["status"] == "in_progress"
    assert answered["sla_stopped_since"] is None
    moved = datetime.fromisoformat(answered["resolution_due"])
    assert gateway.desk.calendar.business_time_between(due, moved).total_seconds() == 8.5 * 3600


async def test_silence_brings_a_reminder_then_closing_each_once(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await opened(make_gateway, clock)
    await set_status(gateway, Status.AWAITING_CUSTOMER, clock.now)  # Monday 09:00
    clock.now = local(2026, 11, 26, 9, 0)  # Thursday: 3 working days
    await fire_timers(gateway)
    assert await fire_timers(await make_gateway()) == 0  # a restarted daemon: nothing again
    assert (await events(gateway)).count("reminder") == 1
    reminder = next(r for r in await outbox_rows(gateway) if r.event == "reminder")
    assert "2026-12-02 09:00" in reminder.body_text  # 4 working days after the reminder
    clock.now = local(2026, 12, 2, 9, 0)
    await fire_timers(gateway)
    await fire_timers(gateway)
    closed = await detail(gateway, REF)
    assert closed["status"] == "closed"
    assert closed["history"][-1]["by"] == "system"
    assert (await events(gateway)).count("closed") == 1
    assert (await events(gateway)).count("reminder") == 1


async def test_an_answer_before_the_reminder_takes_the_timers_away(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await opened(make_gateway, clock)
    await set_status(gateway, Status.AWAITING_CUSTOMER, clock.now)
    clock.now = local(2026, 11, 24, 9, 0)
    await gateway.pipeline.ingest(
        make_mail(sender="ops@havennoord.example", subject=f"Re: [{REF}] antwoord"), "t"
    )
    clock.now = local(2026, 12, 10, 9, 0)
    await fire_timers(gateway)
    assert "reminder" not in await events(gateway)
    assert (await detail(gateway, REF))["status"] == "in_progress"


async def test_acceptance_by_silence_closes_after_five_working_days(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await opened(make_gateway, clock)
    await set_status(gateway, Status.AWAITING_ACCEPTANCE, clock.now)
    clock.now = local(2026, 11, 27, 9, 0)  # four working days: not yet
    await fire_timers(gateway)
    assert (await detail(gateway, REF))["status"] == "awaiting_acceptance"
    clock.now = local(2026, 11, 30, 9, 0)
    await fire_timers(gateway)
    assert (await detail(gateway, REF))["status"] == "closed"
    closing = [r for r in await outbox_rows(gateway) if r.event == "closed"]
    assert len(closing) == 1 and "closed as accepted" in closing[0].body_text  # ops@ reads en


async def test_a_scheduled_ticket_wakes_at_its_date_and_the_team_is_told(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await opened(make_gateway, clock)
    when = local(2026, 11, 25, 14, 0)
    await set_status(gateway, Status.SCHEDULED, clock.now, scheduled_for=when)
    clock.now = local(2026, 11, 25, 14, 0)
    await fire_timers(gateway)
    woke = await detail(gateway, REF)
    assert woke["status"] == "in_progress"
    assert woke["history"][-1]["reason"] == "scheduled date"


async def test_the_first_answer_meets_the_first_response_target_and_stops_its_timers(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await opened(make_gateway, clock)
    clock.now = local(2026, 11, 23, 10, 0)
    async with gateway.sessions() as session, session.begin():
        ticket = await get_ticket(session, REF)
        await agent_reply(
            session, gateway.desk, ticket, agent=AGENT, body="Wij kijken", now=clock.now
        )
    clock.now = local(2026, 11, 23, 16, 0)  # past the 4 h first-response target
    await fire_timers(gateway)
    shown = await detail(gateway, REF)
    assert shown["first_response_at"] == local(2026, 11, 23, 10, 0).isoformat()
    assert not [t for t in shown["timers"] if t["kind"].startswith("first_response")]


async def test_a_higher_priority_brings_the_due_times_forward(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await opened(make_gateway, clock)
    async with gateway.sessions() as session, session.begin():
        ticket = await get_ticket(session, REF)
        await set_impact_urgency(
            session, gateway.desk, ticket, impact=Impact.COMPANY, urgency=Urgency.HIGH,
            by=AGENT, now=clock.now,
        )  # fmt: skip
    shown = await detail(gateway, REF)
    assert shown["priority"] == 1
    # The port's own priority-1 targets (tests/data/customers): 30 minutes and 4 hours.
    assert shown["first_response_due"] == local(2026, 11, 23, 9, 30).isoformat()
    assert shown["resolution_due"] == local(2026, 11, 23, 13, 0).isoformat()
