"""The daemon as a real process: the shipped demo config and burst mode over IMAP."""

from __future__ import annotations

import json
import signal
import smtplib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.config import PACKAGE_ROOT
from tests.support.dovecot import ImapAccount, free_port
from tests.support.mails import make_mail
from tests.support.settings import imap_mailbox, settings_dict, to_toml

GATEWAY = [sys.executable, "-m", "gateway"]
# These tests run the real daemon on the real clock: references carry this year.
FIRST = f"VTM-{datetime.now(UTC).year}-000001"


def gateway_cli(
    cwd: Path, *args: str, config: str = "config.toml"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*GATEWAY, "--config", config, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start_daemon(workdir: Path) -> subprocess.Popen[str]:
    """`ticket-gateway run` on workdir/config.toml, output collected for the assertions."""
    return subprocess.Popen(
        [*GATEWAY, "--config", "config.toml", "run"],
        cwd=workdir,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def wait_until(predicate, what: str, within: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Poll a condition another process makes true; fail with `what` after `within` s."""
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[Path, int, subprocess.Popen[str]]]:
    """`make run`: the shipped demo config, in a scratch directory, on a free port."""
    port = free_port()
    text = (PACKAGE_ROOT / "config" / "demo.toml").read_text()
    assert "port = 2525" in text
    text = text.replace("port = 2525", f"port = {port}")
    text = text.replace('maildir = "var/sent"', 'maildir = "var/sent"\npoll_seconds = 0.2')
    (tmp_path / "config.toml").write_text(text)
    process = start_daemon(tmp_path)
    try:
        wait_until(lambda: port_open(port) or process.poll() is not None, "the SMTP listener")
        assert process.poll() is None, process.communicate()[0]
        yield tmp_path, port, process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_demo_mail_to_listener_becomes_ticket_and_notification_file(
    demo: tuple[Path, int, subprocess.Popen[str]],
) -> None:
    workdir, port, process = demo
    message = EmailMessage()
    message["From"] = "Jan de Vries <jan@klant.example>"
    message["To"] = "iot@vtm.example"
    message["Subject"] = "Simkaart M2M werkt niet"
    message.set_content("Sinds vanochtend geen data.\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message)

    sent = workdir / "var" / "sent" / "new"
    wait_until(lambda: sent.is_dir() and any(sent.iterdir()), "a notification in var/sent/new")
    (notice,) = list(sent.iterdir())
    text = notice.read_text()
    mail = message_from_bytes(notice.read_bytes(), policy=default)
    assert mail["Subject"].startswith(f"[{FIRST}] ")
    assert mail["To"] == "jan@klant.example"

    listing = gateway_cli(workdir, "tickets", "--json")
    assert listing.returncode == 0, listing.stderr
    (ticket,) = json.loads(listing.stdout)
    assert (ticket["team"], ticket["subject"]) == ("iot", "Simkaart M2M werkt niet")
    assert ticket["reference"] == FIRST
    assert "0174 22 66 92" in text  # the IoT desk's phone number

    # An agent answers from the CLI (another process): the daemon picks it up and mails it.
    reply = gateway_cli(
        workdir,
        "ticket",
        "reply",
        FIRST,
        "--body",
        "Welke simkaart?",
        "--status",
        "awaiting_customer",
    )
    assert reply.returncode == 0, reply.stderr
    wait_until(lambda: len(list(sent.iterdir())) == 2, "the agent's answer in var/sent/new")
    answer = next(p for p in sent.iterdir() if p != notice)
    assert (
        "Welke simkaart?"
        in message_from_bytes(answer.read_bytes(), policy=default)
        .get_body(("plain",))
        .get_content()
    )

    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "stopping" in output


def test_run_once_over_imap_processes_the_mailbox_and_exits_0(
    tmp_path: Path, db_url: str, imap_account: ImapAccount
) -> None:
    imap_account.append(make_mail(), make_mail(subject="Tweede"))
    config = settings_dict(
        db_url, maildir=tmp_path / "sent", mailboxes=[imap_mailbox(imap_account)]
    )
    (tmp_path / "config.toml").write_text(to_toml(config))
    result = gateway_cli(tmp_path, "run", "--once")
    assert result.returncode == 0, result.stderr
    assert "processed 2 message(s); notifications sent 2" in result.stdout
    assert len(list((tmp_path / "sent" / "new").iterdir())) == 2
    again = gateway_cli(tmp_path, "run", "--once")
    assert "processed 0 message(s); notifications sent 0" in again.stdout


def test_daemon_refuses_an_unmigrated_database_until_migrate_is_run(tmp_path: Path) -> None:
    config = settings_dict(f"sqlite+aiosqlite:///{tmp_path}/fresh.db", maildir=tmp_path / "sent")
    (tmp_path / "config.toml").write_text(to_toml(config))
    refused = gateway_cli(tmp_path, "run", "--once")
    assert refused.returncode == 1
    assert "ticket-gateway migrate" in refused.stderr
    migrated = gateway_cli(tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert gateway_cli(tmp_path, "run", "--once").returncode == 0


def test_bad_config_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('[database]\nurl = "mysql://x"\n')
    result = gateway_cli(tmp_path, "run")
    assert result.returncode == 2
    assert "database.url: must start with" in result.stderr
    assert "teams: Field required" in result.stderr


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """Every command of the CLI, found by walking it, so a new one cannot be missed."""
    paths = [list(prefix)]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths.extend(_command_paths(command, (*prefix, name)))
        else:
            paths.append([*prefix, name])
    return paths


@pytest.mark.parametrize("command", _command_paths(main), ids=" ".join)
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert len(result.output.splitlines()) > 3


def test_daemon_polls_the_mailbox_and_mails_while_running(
    tmp_path: Path, db_url: str, imap_account: ImapAccount
) -> None:
    mailbox = imap_mailbox(imap_account, poll_seconds=0.2)
    config = settings_dict(db_url, maildir=tmp_path / "sent", mailboxes=[mailbox])
    (tmp_path / "config.toml").write_text(to_toml(config))
    process = start_daemon(tmp_path)
    try:
        imap_account.append(make_mail(subject="Eerste"))
        sent = tmp_path / "sent" / "new"
        wait_until(lambda: sent.is_dir() and len(list(sent.iterdir())) == 1, "the first notice")
        imap_account.append(make_mail(subject=f"Re: [{FIRST}] Eerste", body="Aanvulling"))
        wait_until(lambda: len(list(sent.iterdir())) == 2, "the second notice")
        assert imap_account.flags() == {1: "\\Seen", 2: "\\Seen"}
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    subjects = sorted(
        message_from_bytes(p.read_bytes(), policy=default)["Subject"] for p in sent.iterdir()
    )
    assert subjects == [
        f"[{FIRST}] Uw aanvulling is ontvangen: Eerste",
        f"[{FIRST}] Uw melding is ontvangen: Eerste",
    ]
