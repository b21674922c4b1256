"""The LMTP listener: one reply per recipient, after the commit; 4xx so the MTA retries."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.app import build
from gateway.intake.smtp import SmtpListener
from tests.conftest import GatewayFactory
from tests.integration.helpers import counts, detail
from tests.support.dovecot import free_port
from tests.support.mails import make_mail
from tests.support.settings import make_settings


async def lmtp_session(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes, rcpts: list[str]
) -> list[str]:
    """Speak LMTP by hand (RFC 2033): the replies to each RCPT and those after DATA."""

    async def reply() -> str:
        lines = []
        while True:
            line = (await reader.readline()).decode().rstrip("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines[-1]

    async def command(text: str) -> str:
        writer.write(text.encode() + b"\r\n")
        await writer.drain()
        return await reply()

    await reply()  # greeting
    assert (await command("LHLO mta.vtm.example")).startswith("250")
    assert (await command("MAIL FROM:<jan@klant.example>")).startswith("250")
    accepted = []
    replies = []
    for rcpt in rcpts:
        answer = await command(f"RCPT TO:<{rcpt}>")
        replies.append(f"rcpt {rcpt}: {answer}")
        if answer.startswith("250"):
            accepted.append(rcpt)
    if accepted:
        assert (await command("DATA")).startswith("354")
        writer.write(raw.replace(b"\r\n.", b"\r\n..") + b"\r\n.\r\n")
        await writer.drain()
        replies.extend([f"data: {await reply()}" for _ in accepted])
    await command("QUIT")
    writer.close()
    await writer.wait_closed()
    return replies


async def test_each_recipient_gets_a_reply_after_the_commit(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(
        listeners=[{"kind": "lmtp", "port": 0,
                    "recipients": ["noc@vtm.example", "Business@VTM.example"]}]
    )  # fmt: skip
    listener: SmtpListener = gateway.listeners[0]
    await listener.start()
    try:
        replies = await lmtp_session(
            *await asyncio.open_connection("127.0.0.1", listener.port),
            make_mail(to="noc@vtm.example"),
            ["noc@vtm.example", "nobody@vtm.example", "business@vtm.example"],
        )
    finally:
        await listener.stop()
    assert replies[1].startswith("rcpt nobody@vtm.example: 550 5.1.1")
    data = [r for r in replies if r.startswith("data:")]
    assert data == ["data: 250 2.0.0 Accepted (ticket VTM-2026-000001)"] * 2
    assert (await counts(gateway))["tickets"] == 1
    assert (await detail(gateway, "VTM-2026-000001"))["team"] == "noc"


async def test_listener_on_a_unix_socket_takes_mail_in(
    make_gateway: GatewayFactory, tmp_path: Path
) -> None:
    path = tmp_path / "lmtp.sock"
    path.write_text("left by a daemon that died")
    gateway = await make_gateway(listeners=[{"kind": "lmtp", "path": str(path)}])
    listener: SmtpListener = gateway.listeners[0]
    await listener.start()
    try:
        replies = await lmtp_session(
            *await asyncio.open_unix_connection(str(path)), make_mail(), ["desk@vtm.example"]
        )
    finally:
        await listener.stop()
    assert replies[-1].startswith("data: 250")
    assert not path.exists()
    assert (await counts(gateway))["tickets"] == 1


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_database_down_answers_451_for_every_recipient(backend: str, tmp_path: Path) -> None:
    url = {
        "sqlite": f"sqlite+aiosqlite:///{tmp_path}/missing-dir/gateway.db",
        "postgresql": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/test",
    }[backend]
    gateway = build(make_settings(url, listeners=[{"kind": "lmtp", "port": 0}]))
    listener = gateway.listeners[0]
    await listener.start()
    try:
        replies = await lmtp_session(
            *await asyncio.open_connection("127.0.0.1", listener.port),
            make_mail(),
            ["noc@vtm.example", "iot@vtm.example"],
        )
    finally:
        await listener.stop()
        await gateway.close()
    data = [r for r in replies if r.startswith("data:")]
    assert len(data) == 2 and all(r.startswith("data: 451 4.3.0") for r in data)
