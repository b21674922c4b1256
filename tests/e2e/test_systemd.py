"""The systemd side: the unit file verifies, and the daemon speaks sd_notify (READY,
WATCHDOG from the event loop, STATUS with counts, STOPPING) on a real socket."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from gateway.app import run_forever
from gateway.config import PACKAGE_ROOT
from tests.conftest import GatewayFactory
from tests.support.mails import make_mail

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
