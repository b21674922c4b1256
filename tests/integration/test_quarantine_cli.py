"""Quarantine and outbox from the CLI: reprocess once after a fix, discard, retry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import update

from gateway.app import build
from gateway.pipeline import Outcome
from gateway.store.models import OutboxMessage
from tests.integration.test_cli import cli, cli_json
from tests.support.mails import make_mail
from tests.support.settings import Clock, make_settings, settings_dict, to_toml


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(to_toml(settings_dict(db_url, maildir=tmp_path / "sent")))
    return path


def broken_templates(tmp_path: Path) -> Path:
    broken = tmp_path / "broken-templates"
    (broken / "nl").mkdir(parents=True)
    (broken / "nl" / "created.txt").write_text("{% block subject %}{{ missing }}{% endblock %}")
    return broken


def ingest(db_url: str, tmp_path: Path, *mails: bytes, **desk: str) -> list[Outcome]:
    async def run() -> list[Outcome]:
        settings = make_settings(db_url, maildir=tmp_path / "sent", **desk)
        gateway = build(settings, clock=Clock())
        try:
            return [await gateway.pipeline.ingest(raw, "imap:desk:7") for raw in mails]
        finally:
            await gateway.close()

    return asyncio.run(run())


def test_reprocess_after_a_fix_takes_the_message_in_once(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    raw = make_mail()
    (failed,) = ingest(db_url, tmp_path, raw, templates_dir=str(broken_templates(tmp_path)))
    assert failed.kind == "quarantined"
    (entry,) = cli_json(config, "quarantine", "list")
    assert (entry["stage"], entry["state"], entry["attempts"]) == ("template", "held", 1)

    (result,) = cli_json(config, "quarantine", "reprocess", str(entry["id"]))
    assert (result["outcome"], result["reference"]) == ("ticket", "VTM-2026-000001")
    again = cli(config, "quarantine", "reprocess", str(entry["id"]))
    assert again.exit_code == 1
    assert "already reprocessed" in again.stderr

    assert cli_json(config, "quarantine", "list") == []
    (closed,) = cli_json(config, "quarantine", "list", "--all")
    assert (closed["state"], closed["resolution"]) == ("reprocessed", "ticket VTM-2026-000001")
    assert len(cli_json(config, "tickets")) == 1
    assert len(cli_json(config, "outbox", "list")) == 1
    # The same mail fetched again later (a crash before \Seen) is a duplicate.
    (redelivered,) = ingest(db_url, tmp_path, raw)
    assert redelivered.kind == "duplicate"


def test_reprocess_without_a_fix_keeps_it_held_with_one_more_attempt(
    db_url: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.toml"
    templates = str(broken_templates(tmp_path))
    broken.write_text(
        to_toml(settings_dict(db_url, maildir=tmp_path / "sent", templates_dir=templates))
    )
    ingest(db_url, tmp_path, make_mail(), templates_dir=templates)
    result = cli(broken, "quarantine", "reprocess", "--all", "--json")
    assert result.exit_code == 1
    (entry,) = cli_json(broken, "quarantine", "list")
    assert (entry["state"], entry["attempts"]) == ("held", 2)
    assert cli_json(broken, "tickets") == []


def test_reprocess_all_takes_every_held_entry(config: Path, db_url: str, tmp_path: Path) -> None:
    templates = str(broken_templates(tmp_path))
    ingest(db_url, tmp_path, make_mail(), make_mail(subject="Tweede"), templates_dir=templates)
    results = cli_json(config, "quarantine", "reprocess", "--all")
    assert [r["outcome"] for r in results] == ["ticket", "ticket"]
    assert cli_json(config, "quarantine", "reprocess", "--all") == []


def test_discard_closes_an_entry_for_good(config: Path, db_url: str, tmp_path: Path) -> None:
    ingest(db_url, tmp_path, b"Subject: kapot\r\n\r\nzonder afzender\r\n")
    (entry,) = cli_json(config, "quarantine", "list")
    done = cli_json(config, "quarantine", "discard", str(entry["id"]), "--agent", "Marieke")
    assert (done["state"], done["resolution"]) == ("discarded", "discarded by marieke")
    (closed,) = cli_json(config, "quarantine", "list", "--all")
    assert closed == done
    refused = cli(config, "quarantine", "reprocess", str(entry["id"]))
    assert refused.exit_code == 1 and "already discarded" in refused.stderr
    # The same bytes again (a mailbox rescan) do not bring the junk back.
    (again,) = ingest(db_url, tmp_path, b"Subject: kapot\r\n\r\nzonder afzender\r\n")
    assert again.kind == "quarantined" and "discarded before" in (again.reason or "")
    assert cli_json(config, "quarantine", "list", "--all") == [closed]
    assert cli(config, "quarantine", "discard", "999").exit_code == 1


def test_reprocess_needs_an_id_or_all(config: Path) -> None:
    assert cli(config, "quarantine", "reprocess").exit_code == 2
    assert cli(config, "quarantine", "reprocess", "1", "--all").exit_code == 2


def test_outbox_list_filters_by_state_and_retry_requeues_a_doubtful_row(
    config: Path, db_url: str, tmp_path: Path
) -> None:
    ingest(db_url, tmp_path, make_mail(), make_mail(subject="Tweede"))

    async def mark_first_unknown() -> None:
        gateway = build(make_settings(db_url, maildir=tmp_path / "sent"))
        try:
            async with gateway.sessions() as session, session.begin():
                await session.execute(
                    update(OutboxMessage)
                    .where(OutboxMessage.id == 1)
                    .values(state="unknown", last_error="the relay stopped during delivery")
                )
        finally:
            await gateway.close()

    asyncio.run(mark_first_unknown())
    (doubtful,) = cli_json(config, "outbox", "list", "--state", "unknown")
    documented = {"id", "ticket", "to", "subject", "state", "attempts", "last_error"}
    assert set(doubtful) >= documented
    assert (doubtful["id"], doubtful["ticket"]) == (1, "VTM-2026-000001")
    assert len(cli_json(config, "outbox", "list", "--state", "pending")) == 1

    queued = cli(config, "outbox", "retry", "1")
    assert queued.exit_code == 0, queued.output
    assert "queued" in queued.stdout
    assert len(cli_json(config, "outbox", "list", "--state", "pending")) == 2
    assert cli(config, "outbox", "retry", "99").exit_code == 1
    assert cli(config, "outbox", "list", "--state", "bogus").exit_code == 2
