"""`ticket-gateway deliver`: an MTA pipe. Exit 0 only after the commit, 75 to retry."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gateway.cli import EX_DATAERR, EX_TEMPFAIL, main
from tests.integration.test_cli import cli_json
from tests.support.dovecot import free_port
from tests.support.mails import make_mail
from tests.support.settings import settings_dict, to_toml


@pytest.fixture
def config(db_url: str, tmp_path: Path) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(to_toml(settings_dict(db_url, maildir=tmp_path / "sent")))
    return path


def deliver(config: Path, raw: bytes, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), "deliver", *args], input=raw)


def test_delivered_mail_is_committed_before_exit_0(config: Path) -> None:
    result = deliver(config, make_mail(), "--recipient", "noc@vtm.example")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "ticket VTM-2026-000001"
    (ticket,) = cli_json(config, "tickets")
    assert ticket["team"] == "noc"  # the envelope recipient picked the team
    assert len(cli_json(config, "outbox", "list", "--state", "pending")) == 1


def test_same_mail_delivered_twice_is_one_ticket(config: Path) -> None:
    raw = make_mail()
    assert deliver(config, raw).exit_code == 0
    again = deliver(config, raw)
    assert again.exit_code == 0
    assert again.stdout.startswith("duplicate")
    assert len(cli_json(config, "tickets")) == 1


def test_broken_mail_is_quarantined_and_exits_0(config: Path) -> None:
    result = deliver(config, b"Subject: kapot\r\n\r\nzonder afzender\r\n")
    assert result.exit_code == 0
    assert result.stdout.startswith("quarantined")
    assert len(cli_json(config, "quarantine", "list")) == 1


def test_oversize_mail_is_refused_and_its_head_quarantined(config: Path) -> None:
    raw = make_mail(body="regel met tekst\n" * 20_000)
    result = deliver(config, raw, "--max-bytes", "100000")
    assert result.exit_code == EX_DATAERR
    assert "over the limit of 100000 bytes" in result.stderr
    (entry,) = cli_json(config, "quarantine", "list")
    assert (entry["stage"], entry["size"], entry["truncated"]) == ("intake", len(raw), True)
    assert cli_json(config, "tickets") == []


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_unreachable_database_exits_75_so_the_mta_keeps_the_mail(
    backend: str, tmp_path: Path
) -> None:
    url = {
        "sqlite": f"sqlite+aiosqlite:///{tmp_path}/missing-dir/gateway.db",
        "postgresql": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test",
    }[backend]
    config = tmp_path / "gateway.toml"
    config.write_text(to_toml(settings_dict(url, maildir=tmp_path / "sent")))
    result = deliver(config, make_mail())
    assert result.exit_code == EX_TEMPFAIL
    assert "temporary failure" in result.stderr


def test_bad_config_exits_75_not_2(tmp_path: Path) -> None:
    """A typo in the config must not bounce customers' mail: the MTA retries later."""
    config = tmp_path / "gateway.toml"
    config.write_text("[desk]\nlanguage = 'fr'\n")
    result = deliver(config, make_mail())
    assert result.exit_code == EX_TEMPFAIL
    assert "desk.language" in result.stderr


def test_usage_error_exits_75_so_the_mta_does_not_bounce(config: Path) -> None:
    result = deliver(config, make_mail(), "--recipent", "noc@vtm.example")
    assert result.exit_code == EX_TEMPFAIL
    assert "No such option" in result.stderr
