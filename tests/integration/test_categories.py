"""The category of a new ticket: named by the customer, else the team's default."""

from __future__ import annotations

from tests.conftest import GatewayFactory
from tests.integration.helpers import detail
from tests.support.mails import make_mail
from tests.support.settings import TEAMS


async def test_the_customer_names_the_category_in_the_subject(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(subject="Wijziging: extra VLAN"), "t")
    ticket = await detail(gateway, "VTM-2026-000001")
    assert (ticket["category"], ticket["subject"]) == ("change", "extra VLAN")
    entry = next(h for h in ticket["history"] if h["field"] == "category")
    assert (entry["new"], entry["reason"]) == ("change", "named by the customer")


async def test_or_in_the_first_line_of_the_text(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(
        make_mail(subject="Kraan 4", body="Storing: sinds 09:00 geen netwerk.\n"), "t"
    )
    ticket = await detail(gateway, "VTM-2026-000001")
    assert (ticket["category"], ticket["subject"]) == ("incident", "Kraan 4")


async def test_else_the_teams_default_and_else_none(make_gateway: GatewayFactory) -> None:
    teams = [
        {**team, "default_category": "incident"} if team["key"] == "noc" else team for team in TEAMS
    ]
    gateway = await make_gateway(sections={"teams": teams})
    await gateway.pipeline.ingest(make_mail(to="noc@vtm.example", subject="Traag"), "t")
    await gateway.pipeline.ingest(
        make_mail(to="business@vtm.example", subject="Factuur", message_id="b@k.example"), "t"
    )
    noc, business = [await detail(gateway, f"VTM-2026-00000{i}") for i in (1, 2)]
    assert noc["category"] == "incident"
    assert next(h for h in noc["history"] if h["field"] == "category")["reason"] == (
        "default of team noc"
    )
    assert business["category"] is None
