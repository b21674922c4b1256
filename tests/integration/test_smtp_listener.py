"""The SMTP listener: 250 only after the commit, hostile mail kept, oversize refused."""

from __future__ import annotations

import aiosmtplib
import pytest

from gateway.intake.smtp import SmtpListener
from tests.conftest import GatewayFactory
from tests.integration.helpers import counts, detail
from tests.support.mails import make_mail


async def start_listener(make_gateway: GatewayFactory, **settings: object):  # type: ignore[no-untyped-def]
    gateway = await make_gateway(listeners=[{"kind": "smtp", "port": 0, **settings}])
    listener: SmtpListener = gateway.listeners[0]
    await listener.start()
    return gateway, listener


async def test_mail_to_listener_is_committed_before_the_250(make_gateway: GatewayFactory) -> None:
    gateway, listener = await start_listener(make_gateway)
    try:
        _errors, reply = await aiosmtplib.send(
            make_mail(to="iot@vtm.example"),
            sender="jan@klant.example",
            recipients=["iot@vtm.example"],
            hostname="127.0.0.1",
            port=listener.port,
        )
        assert "Accepted (ticket VTM-2026-000001)" in reply
        assert (await detail(gateway, "VTM-2026-000001"))["team"] == "iot"
    finally:
        await listener.stop()


async def test_message_without_sender_is_accepted_and_quarantined(
    make_gateway: GatewayFactory,
) -> None:
    gateway, listener = await start_listener(make_gateway)
    try:
        _errors, reply = await aiosmtplib.send(
            b"Subject: kapot\r\n\r\ngeen afzender\r\n",
            sender="x@klant.example",
            recipients=["noc@vtm.example"],
            hostname="127.0.0.1",
            port=listener.port,
        )
        assert "quarantined" in reply
        assert (await counts(gateway))["quarantine"] == 1
    finally:
        await listener.stop()


async def test_oversize_message_is_refused_with_552(make_gateway: GatewayFactory) -> None:
    gateway, listener = await start_listener(make_gateway, max_message_bytes=2048)
    try:
        with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
            await aiosmtplib.send(
                make_mail(body="x" * 5000),
                sender="jan@klant.example",
                recipients=["noc@vtm.example"],
                hostname="127.0.0.1",
                port=listener.port,
            )
        assert refused.value.code == 552
        assert (await counts(gateway))["inbound"] == 0
    finally:
        await listener.stop()
