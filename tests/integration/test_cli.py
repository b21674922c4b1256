"""The agent's CLI on SQLite and PostgreSQL: JSON shapes, changes, refusals."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from gateway.app import build
from gateway.cli import main
from tests.support.mails import make_mail
from tests.support.settings import Clock, make_settings, settings_dict, to_toml


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(to_toml(settings_dict(db_url, maildir=tmp_path / "sent")))
    return path


def cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), *args], catch_exceptions=False)


def cli_json(config: Path, *args: str) -> Any:
    result = cli(config, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def ingest(db_url: str, tmp_path: Path, *mails: bytes) -> None:
    async def run() -> None:
        gateway = build(make_settings(db_url, maildir=tmp_path / "sent"), clock=Clock())
        try:
            for raw in mails:
                await gateway.pipeline.ingest(raw, "test")
        finally:
            await gateway.close()

    asyncio.run(run())


def test_tickets_json_lists_the_documented_fields(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    ingest(db_url, tmp_path, make_mail(to="noc@vtm.example"), make_mail(subject="Tweede"))
    rows = cli_json(config, "tickets")
    assert [r["reference"] for r in rows] == ["VTM-2026-000002", "VTM-2026-000001"]
    first = rows[1]
    documented = "reference subject status category impact urgency priority team requester"
    assert set(first) >= {*documented.split(), "created_at", "updated_at", "article_count"}
    assert (first["status"], first["team"], first["priority"]) == ("open", "noc", None)
    assert datetime.fromisoformat(first["created_at"]).utcoffset() is not None
    assert cli_json(config, "tickets", "--team", "business")[0]["subject"] == "Tweede"


def test_ticket_show_json_has_articles_and_history(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    ingest(db_url, tmp_path, make_mail(message_id="x1@klant.example"))
    ticket = cli_json(config, "ticket", "show", "vtm-2026-000001")
    (article,) = ticket["articles"]
    assert article["direction"] == "in"
    assert article["kind"] == "customer"
    assert article["author"] == "jan@klant.example"
    assert article["public"] is True
    assert article["message_id"] == "x1@klant.example"
    assert article["body"] == "Onze verbinding ligt eruit sinds 9:00."
    (entry,) = ticket["history"]
    assert (entry["field"], entry["old"], entry["new"], entry["by"]) == (
        "status",
        None,
        "open",
        "system",
    )
    assert set(entry) == {"at", "field", "old", "new", "by", "reason"}


def test_reply_with_status_is_queued_and_recorded(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    ingest(db_url, tmp_path, make_mail())
    result = cli(
        config,
        "ticket",
        "reply",
        "VTM-2026-000001",
        "--body",
        "Welke poort?",
        "--status",
        "awaiting_customer",
        "--agent",
        "Eva@vtm.example",
    )
    assert result.exit_code == 0, result.output
    ticket = cli_json(config, "ticket", "show", "VTM-2026-000001")
    assert ticket["status"] == "awaiting_customer"
    reply = ticket["articles"][-1]
    assert (reply["direction"], reply["kind"], reply["author"]) == (
        "out",
        "agent",
        "eva@vtm.example",
    )
    assert ticket["history"][-1]["by"] == "eva@vtm.example"
    outbox = cli_json(config, "outbox", "list")
    assert [(r["ticket"], r["to"], r["state"]) for r in outbox][-1] == (
        "VTM-2026-000001",
        "jan@klant.example",
        "pending",
    )
    assert set(outbox[0]) >= {"id", "ticket", "to", "subject", "state", "attempts", "last_error"}


def test_reply_body_from_a_file(config: Path, db_url: str, tmp_path: Path) -> None:
    ingest(db_url, tmp_path, make_mail())
    body = tmp_path / "answer.txt"
    body.write_text("Opgelost: de modem is vervangen.\n")
    result = cli(config, "ticket", "reply", "VTM-2026-000001", "--body-file", str(body))
    assert result.exit_code == 0, result.output
    ticket = cli_json(config, "ticket", "show", "VTM-2026-000001")
    assert ticket["articles"][-1]["body"].startswith("Opgelost")


def test_impact_and_urgency_set_priority_and_override_needs_a_reason(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    ingest(db_url, tmp_path, make_mail())
    ref = "VTM-2026-000001"
    assert (
        cli(
            config,
            "ticket",
            "set",
            ref,
            "--category",
            "incident",
            "--impact",
            "department",
            "--urgency",
            "high",
        ).exit_code
        == 0
    )
    assert cli_json(config, "ticket", "show", ref)["priority"] == 2

    refused = cli(config, "ticket", "set", ref, "--priority", "1")
    assert refused.exit_code == 2
    assert "--reason" in refused.output

    ok = cli(
        config,
        "ticket",
        "set",
        ref,
        "--priority",
        "1",
        "--reason",
        "ziekenhuis",
        "--agent",
        "eva@vtm.example",
    )
    assert ok.exit_code == 0, ok.output
    ticket = cli_json(config, "ticket", "show", ref)
    assert (ticket["priority"], ticket["priority_overridden"]) == (1, True)
    override = ticket["history"][-1]
    assert (override["field"], override["old"], override["new"]) == ("priority", "2", "1")
    assert (override["by"], override["reason"]) == ("eva@vtm.example", "ziekenhuis")
    # The matrix no longer moves an overridden priority.
    cli(config, "ticket", "set", ref, "--urgency", "low")
    assert cli_json(config, "ticket", "show", ref)["priority"] == 1


@pytest.mark.parametrize(
    ("args", "listed"),
    [
        (["--status", "done"], "'open', 'in_progress', 'awaiting_customer'"),
        (["--category", "bug"], "'incident', 'service_request', 'change'"),
        (["--impact", "planet"], "'company', 'department', 'individual'"),
        (["--team", "sales"], "'noc', 'business', 'iot'"),
    ],
)
def test_unknown_values_are_refused_with_the_valid_ones(
    config: Path, db_url: str, tmp_path: Path, args: list[str], listed: str
) -> None:
    ingest(db_url, tmp_path, make_mail())
    result = cli(config, "ticket", "set", "VTM-2026-000001", *args)
    assert result.exit_code == 2
    assert listed in result.output


def test_unknown_reference_is_an_error(config: Path) -> None:
    result = cli(config, "ticket", "show", "VTM-2026-999999")
    assert result.exit_code == 1
    assert "no ticket with reference VTM-2026-999999" in result.output


def test_scheduled_needs_a_date_and_announces_it(config: Path, db_url: str, tmp_path: Path) -> None:
    ingest(db_url, tmp_path, make_mail())
    ref = "VTM-2026-000001"
    assert cli(config, "ticket", "set", ref, "--status", "scheduled").exit_code == 1
    ok = cli(
        config,
        "ticket",
        "set",
        ref,
        "--status",
        "scheduled",
        "--scheduled-for",
        "2026-03-10T08:00+01:00",
    )
    assert ok.exit_code == 0, ok.output
    ticket = cli_json(config, "ticket", "show", ref)
    assert ticket["status"] == "scheduled"
    assert ticket["scheduled_for"].startswith("2026-03-10T07:00")
    notice = [r for r in cli_json(config, "outbox", "list") if "gepland" in r["subject"].lower()]
    assert len(notice) == 1


def test_quarantine_lists_failed_messages(config: Path, db_url: str, tmp_path: Path) -> None:
    ingest(db_url, tmp_path, b"Subject: kapot\r\n\r\nzonder afzender\r\n")
    (entry,) = cli_json(config, "quarantine", "list")
    assert entry["stage"] == "parse"
    assert "no sender" in entry["error"]
    shown = cli_json(config, "quarantine", "show", str(entry["id"]))
    assert "Traceback" in shown["traceback"]


def test_check_config_reports_each_problem_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[desk]\nreopen_days = "soon"\n[[teams]]\nkey = "Bad Key"\n')
    result = CliRunner().invoke(main, ["--config", str(bad), "check-config"])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert any("desk.reopen_days" in line for line in lines)
    assert any("teams[0].key" in line for line in lines)
    assert any("teams[0].name" in line for line in lines)


def test_check_config_accepts_a_good_file(config: Path) -> None:
    result = cli(config, "check-config")
    assert result.exit_code == 0
    assert "OK" in result.output
