"""The 24/7 line: pages only for 24/7 customers outside office hours; the customer is
told when the desk picks the ticket up, and only 24/7 customers get the on-call number."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import select

from gateway.store.models import OutboxMessage
from tests.conftest import GatewayFactory
from tests.integration.helpers import detail
from tests.integration.test_timers import with_customers
from tests.support.mails import make_mail
from tests.support.settings import Clock

AMS = ZoneInfo("Europe/Amsterdam")
ONCALL = {"oncall": {"address": "sms@pager.vtm-oncall.example"}}
SATURDAY = datetime(2026, 11, 28, 3, 15, tzinfo=AMS).astimezone(UTC)
TUESDAY = datetime(2026, 11, 24, 10, 0, tzinfo=AMS).astimezone(UTC)


async def rows(gateway) -> list[OutboxMessage]:  # type: ignore[no-untyped-def]
    async with gateway.sessions() as session:
        return list(await session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


async def test_an_urgent_mail_from_a_24x7_customer_at_night_pages_once(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await with_customers(make_gateway, sections=ONCALL)
    clock.now = SATURDAY
    mail = make_mail(sender="ic@zhwest.example", subject="SPOED: netwerk OK-complex plat")
    await gateway.pipeline.ingest(mail, "t")
    await gateway.pipeline.ingest(mail, "t")  # the same mail again changes nothing
    created, page = await rows(gateway)
    assert (page.event, page.recipient) == ("page", "sms@pager.vtm-oncall.example")
    assert "Ziekenhuis West" in page.subject and "VTM-2026-000001" in page.subject
    assert "085 489 09 73" in created.body_text
    assert "op maandag 30 november om 08:30" in created.body_text
    history = (await detail(gateway, "VTM-2026-000001"))["history"]
    assert [h["field"] for h in history].count("page") == 1


async def test_during_office_hours_nobody_is_paged_and_no_on_call_number_is_given(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await with_customers(make_gateway, sections=ONCALL)
    clock.now = TUESDAY
    await gateway.pipeline.ingest(make_mail(sender="ic@zhwest.example", subject="SPOED"), "t")
    (created,) = await rows(gateway)
    assert "085 489 09 73" not in created.body_text
    assert "gesloten" not in created.body_text


async def test_customers_without_24x7_are_told_the_next_working_day_never_the_number(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await with_customers(make_gateway, sections=ONCALL)
    clock.now = SATURDAY
    await gateway.pipeline.ingest(
        make_mail(sender="ops@havennoord.example", subject="SPOED kraan 4"), "t"
    )
    (created,) = await rows(gateway)
    assert created.event == "created"
    assert "085 489 09 73" not in created.body_text + created.body_html
    assert "on Monday 30 November at 08:30" in created.body_text  # ops@ reads English


async def test_a_24x7_question_at_night_waits_for_office_hours(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await with_customers(make_gateway, sections=ONCALL)
    clock.now = SATURDAY
    await gateway.pipeline.ingest(
        make_mail(sender="ic@zhwest.example", subject="Vraag over de factuur"), "t"
    )
    assert [r.event for r in await rows(gateway)] == ["created"]
