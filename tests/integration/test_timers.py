"""SLA due times and timers: set at creation, fired once, across restarts and daemons."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import select

from gateway.app import fire_timers
from gateway.domain.customers import parse_toml
from gateway.service.organisations import import_organisations
from gateway.store.models import OutboxMessage, Timer
from tests.conftest import GatewayFactory
from tests.integration.helpers import detail, outbox_rows
from tests.support.mails import make_mail
from tests.support.settings import Clock

AMS = ZoneInfo("Europe/Amsterdam")
REF = "VTM-2026-000001"
DATA = Path(__file__).resolve().parent.parent / "data" / "customers"


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS).astimezone(UTC)  # type: ignore[misc]


async def with_customers(make_gateway: GatewayFactory, **kwargs: object):  # type: ignore[no-untyped-def]
    gateway = await make_gateway(**kwargs)
    async with gateway.sessions() as session, session.begin():
        records = parse_toml((DATA / "vtm_customers.toml").read_text())
        await import_organisations(session, records, local(2026, 11, 1, 0, 0))
    return gateway


async def team_notices(gateway) -> list[str]:  # type: ignore[no-untyped-def]
    async with gateway.sessions() as session:
        rows = await session.scalars(
            select(OutboxMessage.subject)
            .where(OutboxMessage.event == "team_notice")
            .order_by(OutboxMessage.id)
        )
        return list(rows)


async def test_due_times_follow_the_contract_from_the_first_mail(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await with_customers(make_gateway)
    clock.now = local(2026, 11, 27, 16, 0)  # Friday 16:00
    await gateway.pipeline.ingest(make_mail(sender="piet@bakkerijdegraaf.example"), "t")
    await gateway.pipeline.ingest(
        make_mail(sender="ops@havennoord.example", message_id="p@h.example"), "t"
    )
    await gateway.pipeline.ingest(
        make_mail(sender="ic@zhwest.example", message_id="z@w.example"), "t"
    )
    none, sla, always = [await detail(gateway, f"VTM-2026-00000{i}") for i in (1, 2, 3)]
    # No contract: one working day, no resolution target.
    assert none["first_response_due"] == local(2026, 11, 30, 16, 0).isoformat()
    assert none["resolution_due"] is None
    # SLA, unprioritised (priority 3): 4 and 17 office hours.
    assert sla["first_response_due"] == local(2026, 11, 30, 11, 30).isoformat()
    assert sla["resolution_due"] == local(2026, 12, 1, 16, 0).isoformat()  # 1 + 8.5 + 7.5 h
    # 24/7: clock hours through the weekend.
    assert always["first_response_due"] == local(2026, 11, 27, 20, 0).isoformat()
    assert always["resolution_due"] == local(2026, 11, 28, 9, 0).isoformat()


async def test_warnings_and_breaches_fire_once_even_after_a_restart(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await with_customers(make_gateway)
    clock.now = local(2026, 11, 27, 16, 0)
    await gateway.pipeline.ingest(make_mail(sender="ic@zhwest.example", to="noc@vtm.example"), "t")
    clock.now = local(2026, 11, 27, 19, 30)  # past 80 % of the 4 h first response
    assert await fire_timers(gateway) == 1
    assert await fire_timers(gateway) == 0
    restarted = await make_gateway()
    assert await fire_timers(restarted) == 0
    clock.now = local(2026, 11, 28, 12, 0)  # past both 24/7 targets
    assert await fire_timers(restarted) == 3
    subjects = await team_notices(gateway)
    assert [s.split("] ", 1)[1].rsplit(": ", 1)[0] for s in subjects] == [
        "SLA: eerste reactie bijna te laat",
        "SLA: eerste reactie te laat",
        "SLA: oplossing bijna te laat",
        "SLA: oplossing te laat",
    ]
    timers = (await detail(gateway, REF))["timers"]
    assert all(t["fired_at"] is not None and t["outcome"] == "team told" for t in timers)


async def test_two_daemons_firing_at_once_fire_each_timer_once(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    first = await with_customers(make_gateway)
    second = await make_gateway()
    clock.now = local(2026, 11, 27, 16, 0)
    for i in range(5):
        await first.pipeline.ingest(
            make_mail(sender="ic@zhwest.example", to="noc@vtm.example", message_id=f"{i}@w"), "t"
        )
    clock.now = local(2026, 11, 30, 12, 0)
    fired = await asyncio.gather(fire_timers(first), fire_timers(second))
    assert sum(fired) == 20  # 5 tickets x 4 SLA timers
    assert len(await team_notices(first)) == 20
    async with first.sessions() as session:
        unfired = await session.scalars(select(Timer).where(Timer.fired_at.is_(None)))
        assert list(unfired) == []
    assert len({r.dedupe_key for r in await outbox_rows(first)}) == len(await outbox_rows(first))
