"""Structured logs from the real pipeline: every line about a message names its Message-ID
and ticket reference, in JSON and key=value, and nothing of it leaks past the message."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from gateway import logs
from gateway.logs import LogFormat
from tests.conftest import GatewayFactory
from tests.support.mails import make_mail


class Captured:
    def __init__(self, stream: io.StringIO) -> None:
        self._stream = stream

    @property
    def lines(self) -> list[str]:
        return self._stream.getvalue().splitlines()


def capture(log_format: LogFormat) -> Iterator[Captured]:
    """The gateway's log lines at INFO, as `log_format` writes them."""
    stream = io.StringIO()
    handler = logs.make_handler(log_format, stream)
    logger = logging.getLogger("gateway")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield Captured(stream)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def json_lines() -> Iterator[Captured]:
    yield from capture("json")


@pytest.fixture
def keyvalue_lines() -> Iterator[Captured]:
    yield from capture("keyvalue")


async def test_json_lines_about_a_message_carry_its_reference_and_message_id(
    make_gateway: GatewayFactory, json_lines: Captured
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(message_id="eerste@klant.example"), "imap:desk:1")
    reply = make_mail(subject="Re: [VTM-2026-000001] Storing", message_id="tweede@klant.example")
    await gateway.pipeline.ingest(reply, "imap:desk:2")
    away = make_mail(
        subject="Re: [VTM-2026-000001] Afwezig",
        message_id="afwezig@klant.example",
        headers={"Auto-Submitted": "auto-replied"},
    )
    await gateway.pipeline.ingest(away, "imap:desk:3")
    await gateway.pipeline.ingest(b"Message-ID: <kapot@x>\r\n\r\nzonder afzender\r\n", "deliver")
    logging.getLogger("gateway.app").info("after the messages")

    events = [json.loads(line) for line in json_lines.lines]  # every line is one object
    by_message = {e.get("message_id"): e for e in events if e["logger"] == "gateway.pipeline"}
    created = by_message["eerste@klant.example"]
    assert created["msg"].startswith("created ref=VTM-2026-000001")
    assert (created["ref"], created["source"], created["level"]) == (
        "VTM-2026-000001",
        "imap:desk:1",
        "info",
    )
    assert by_message["tweede@klant.example"]["ref"] == "VTM-2026-000001"
    assert by_message["afwezig@klant.example"]["ref"] == "VTM-2026-000001"
    quarantined = by_message["kapot@x"]  # known from the header before any parsing
    assert quarantined["msg"].startswith("quarantined") and "ref" not in quarantined
    assert quarantined["ts"].endswith("Z")
    after = events[-1]
    assert after["msg"] == "after the messages"
    assert not {"ref", "message_id", "source"} & set(after)  # nothing left bound
    assert logs.current() == {}


async def test_keyvalue_lines_quote_what_needs_quoting(
    make_gateway: GatewayFactory, keyvalue_lines: Captured
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(
        make_mail(sender='"de Vries, Jan" <jan@klant.example>', message_id="kv@klant.example"),
        "smtp:127.0.0.1:2525",
    )
    (line,) = [line for line in keyvalue_lines.lines if "logger=gateway.pipeline" in line]
    assert line.startswith("ts=")
    assert ' level=info logger=gateway.pipeline msg="created ref=VTM-2026-000001 ' in line
    assert line.endswith(
        " ref=VTM-2026-000001 message_id=kv@klant.example source=smtp:127.0.0.1:2525"
    )
