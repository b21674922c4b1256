"""The systemd side: the unit file verifies, the daemon speaks sd_notify (READY,
WATCHDOG from the event loop, STATUS with counts, STOPPING, RELOADING) on a real
socket, and SIGHUP (ExecReload) reloads the real daemon or refuses a broken config."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import pytest

from gateway.app import run_forever
from gateway.config import PACKAGE_ROOT
from tests.conftest import GatewayFactory
from tests.support.dovecot import free_port
from tests.support.mails import make_mail
from tests.support.settings import settings_dict, to_toml

UNIT = PACKAGE_ROOT / "systemd" / "ticket-gateway.service"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_unit_file_verifies_without_a_warning(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this checkout's entry point.
    venv_bin = Path(shutil.which("ticket-gateway") or PACKAGE_ROOT / ".venv/bin/ticket-gateway")
    text = UNIT.read_text().replace("/opt/ticket-gateway/.venv/bin/ticket-gateway", str(venv_bin))
    unit = tmp_path / "ticket-gateway.service"
    unit.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    problems = [line for line in (result.stdout + result.stderr).splitlines() if str(unit) in line]
    assert result.returncode == 0 and problems == [], result.stdout + result.stderr


def test_the_unit_file_has_the_hardening_ops_expect() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify", "WatchdogSec=", "Restart=on-failure", "User=ticket-gateway",
        "StateDirectory=", "RuntimeDirectory=", "LogsDirectory=", "NoNewPrivileges=yes",
        "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
        "RestrictAddressFamilies=", "SystemCallFilter=@system-service", "CapabilityBoundingSet=\n",
        "ExecReload=/bin/kill -HUP $MAINPID\n",
    ):  # fmt: skip
        assert line in text, line


async def test_the_daemon_speaks_sd_notify_from_its_event_loop(
    make_gateway: GatewayFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 50 ms
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "test")
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_forever(gateway, stop))
    loop = asyncio.get_running_loop()
    seen: list[str] = []

    async def receive() -> str:
        data = await asyncio.wait_for(loop.sock_recv(server, 4096), 10)
        seen.append(data.decode())
        return seen[-1]

    try:
        while seen.count("WATCHDOG=1") < 3:
            await receive()
        stop.set()
        while "STOPPING=1" not in seen:
            await receive()
        await asyncio.wait_for(daemon, 15)
    finally:
        stop.set()
        server.close()
    assert seen[0] == "READY=1"
    status = next(s for s in seen if s.startswith("STATUS="))
    # The relay may or may not have sent the ticket's notice by the first line.
    assert re.fullmatch(
        r"STATUS=taken in 1 \(ticket 1\); notifications sent [01], failed 0", status
    )


class NotifySocket:
    """The systemd end of sd_notify, for a daemon started as a process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(60)

    def wait_for(self, prefix: str) -> str:
        """The next message that starts with `prefix` (earlier ones are passed over)."""
        while not (message := self._sock.recv(4096).decode()).startswith(prefix):
            pass
        return message

    def close(self) -> None:
        self._sock.close()


def wait_for_files(directory: Path, count: int, daemon: subprocess.Popen[bytes]) -> list[Path]:
    """The files in `directory` once there are `count`, oldest first."""
    deadline = time.monotonic() + 30
    while len(files := sorted(directory.glob("*"), key=lambda p: p.name)) < count:
        assert daemon.poll() is None, "the daemon exited"
        assert time.monotonic() < deadline, f"no {count} file(s) in {directory}"
        time.sleep(0.02)
    return files


def send_mail(port: int, subject: str) -> None:
    message = EmailMessage()
    message["From"] = "Jan de Vries <jan@klant.example>"
    message["To"] = "business@vtm.example"
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@klant.example>"
    message.set_content("Onze verbinding ligt eruit.\n")
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.send_message(message)


def test_sighup_reloads_the_real_daemon_and_refuses_a_broken_config(
    db_url: str, tmp_path: Path
) -> None:
    smtp_port, http_port = free_port(), free_port()
    config = settings_dict(
        db_url,
        maildir=tmp_path / "sent",
        listeners=[{"kind": "smtp", "host": "127.0.0.1", "port": smtp_port}],
        sections={"http": {"listen": f"127.0.0.1:{http_port}"}, "logging": {"format": "json"}},
    )
    path = tmp_path / "gateway.toml"
    path.write_text(to_toml(config))
    notify = NotifySocket(tmp_path / "notify")
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(path), "run"],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "NOTIFY_SOCKET": str(notify.path)},
        )
    sent = tmp_path / "sent" / "new"
    try:
        notify.wait_for("READY=1")
        send_mail(smtp_port, "Voor de reload")
        assert "Business Servicedesk" in wait_for_files(sent, 1, daemon)[-1].read_text()

        teams = [{**t, "name": "Zakelijke Servicedesk"} if t["key"] == "business" else t
                 for t in config["teams"]]  # fmt: skip
        path.write_text(to_toml({**config, "teams": teams}))
        daemon.send_signal(signal.SIGHUP)
        assert "MONOTONIC_USEC=" in notify.wait_for("RELOADING=1")
        notify.wait_for("READY=1")
        send_mail(smtp_port, "Na de reload")
        assert "Zakelijke Servicedesk" in wait_for_files(sent, 2, daemon)[-1].read_text()

        path.write_text(to_toml(config) + "\n[desk\n")  # broken: refused, the above kept
        daemon.send_signal(signal.SIGHUP)
        notify.wait_for("RELOADING=1")
        notify.wait_for("READY=1")
        assert daemon.poll() is None
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=30) as r:
            assert (r.status, json.load(r)["status"]) == (200, "ok")
        send_mail(smtp_port, "Na de mislukte reload")
        assert "Zakelijke Servicedesk" in wait_for_files(sent, 3, daemon)[-1].read_text()

        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    finally:
        notify.close()
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
    events = [json.loads(line) for line in log.read_text().splitlines()]  # all JSON lines
    messages = [(e["level"], e["msg"]) for e in events if e["logger"] == "gateway.app"]
    assert ("info", f"reloaded {path}: changed teams[1].name") in messages
    refused = [m for level, m in messages if level == "error" and "reload refused" in m]
    assert len(refused) == 1 and refused[0].endswith("; keeping the running configuration")
    created = [e for e in events if e["msg"].startswith("created ")]
    assert [e["message_id"] for e in created] == [
        "Voor-de-reload@klant.example",
        "Na-de-reload@klant.example",
        "Na-de-mislukte-reload@klant.example",
    ]
    assert [e["ref"][-6:] for e in created] == ["000001", "000002", "000003"]
    assert all(e["msg"].startswith(f"created ref={e['ref']} ") for e in created)
