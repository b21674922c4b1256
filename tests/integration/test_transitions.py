"""Agents' status changes go through the transition table: a refused one is refused
before anything is written, on the CLI with the statuses that are allowed; a scheduled
date is kept in the history. On SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.domain.model import Status
from gateway.service import agent_reply, change_status, get_ticket
from gateway.service.desk import StatusRefused
from tests.conftest import GatewayFactory
from tests.integration.helpers import detail, outbox_rows
from tests.integration.test_cli import cli, cli_json, ingest
from tests.support.mails import make_mail
from tests.support.settings import Clock, settings_dict, to_toml

REF = "VTM-2026-000001"
AGENT = "anna@vtm.example"
REFUSED = f"{REF}: cannot go from closed to on_hold (agent); allowed from closed: in_progress"


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(to_toml(settings_dict(db_url, maildir=tmp_path / "sent")))
    return path


async def opened(make_gateway: GatewayFactory) -> Any:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    return gateway


async def set_status(gateway: Any, status: Status, now: datetime, **kw: Any) -> Any:
    async with gateway.sessions() as session, session.begin():
        ticket = await get_ticket(session, REF)
        return await change_status(session, gateway.desk, ticket, status, by=AGENT, now=now, **kw)


def test_ticket_set_on_a_closed_ticket_exits_1_naming_what_is_allowed(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    ingest(db_url, tmp_path, make_mail())
    assert cli(config, "ticket", "set", REF, "--status", "closed").exit_code == 0
    before = cli_json(config, "ticket", "show", REF)
    sent = cli_json(config, "outbox", "list")
    result = cli(config, "ticket", "set", REF, "--status", "on_hold")
    assert result.exit_code == 1
    assert REFUSED in result.output
    assert cli_json(config, "ticket", "show", REF) == before
    assert cli_json(config, "outbox", "list") == sent


async def test_a_refused_reply_is_refused_before_the_answer_is_written(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await opened(make_gateway)
    await set_status(gateway, Status.CLOSED, clock.now)
    async with gateway.sessions() as session, session.begin():
        ticket = await get_ticket(session, REF)
        with pytest.raises(StatusRefused, match=re.escape(REFUSED)):
            await agent_reply(
                session,
                gateway.desk,
                ticket,
                agent=AGENT,
                body="We parkeren dit.",
                now=clock.now,
                status=Status.ON_HOLD,
            )
        assert not session.new and not session.dirty
    assert (await detail(gateway, REF))["article_count"] == 1


async def test_scheduling_a_closed_ticket_is_refused_and_keeps_its_date(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await opened(make_gateway)
    await set_status(gateway, Status.CLOSED, clock.now)
    async with gateway.sessions() as session, session.begin():
        ticket = await get_ticket(session, REF)
        with pytest.raises(StatusRefused, match="cannot go from closed to scheduled"):
            await change_status(
                session,
                gateway.desk,
                ticket,
                Status.SCHEDULED,
                by=AGENT,
                now=clock.now,
                scheduled_for=datetime(2026, 3, 10, 7, 0, tzinfo=UTC),
            )
        assert ticket.scheduled_for is None
        assert not session.new and not session.dirty


async def test_the_same_date_again_changes_nothing_and_a_new_one_is_in_the_history(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await opened(make_gateway)
    first, second = (datetime(2026, 3, day, 7, 0, tzinfo=UTC) for day in (10, 12))
    assert await set_status(gateway, Status.SCHEDULED, clock.now, scheduled_for=first)
    assert await set_status(gateway, Status.SCHEDULED, clock.now, scheduled_for=first) is None
    assert await set_status(gateway, Status.SCHEDULED, clock.now, scheduled_for=second)
    history = [
        (h["field"], h["old"], h["new"])
        for h in (await detail(gateway, REF))["history"]
        if h["field"] in ("status", "scheduled_for")
    ]
    assert history == [
        ("status", None, "open"),
        ("scheduled_for", None, first.isoformat()),
        ("status", "open", "scheduled"),
        ("scheduled_for", first.isoformat(), second.isoformat()),
        ("status", "scheduled", "scheduled"),
    ]
    assert [r.event for r in await outbox_rows(gateway)].count("scheduled") == 2
