"""The relay in a process of its own: woken by the daemon, it delivers what the ticket
transactions queued, reports its totals, drains on SIGTERM and is started again when
it dies."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.app import Gateway, build, run_forever, run_once, status_line
from gateway.config import Settings
from gateway.relay_process import RelayProcess
from tests.support.mails import make_mail
from tests.support.settings import make_settings, settings_dict, to_toml
from tests.support.sink import SmtpSink


def _setup(db_url: str, sink: SmtpSink, tmp_path: Path) -> tuple[Gateway, Path]:
    """A gateway that takes mail in (its own relay unused) and the config file the
    relay process reads: the same database and SMTP server."""
    config = tmp_path / "gateway.toml"
    config.write_text(to_toml(settings_dict(db_url, sink_port=sink.port)))
    return build(make_settings(db_url, sink_port=sink.port)), config


async def _mail_through(
    gateway: Gateway, relay: RelayProcess, sink: SmtpSink, count: int = 1
) -> None:
    """Take in `count` mails, waking the relay after each, until the sink has them."""
    for n in range(count):
        await gateway.pipeline.ingest(make_mail(subject=f"Storing {n}"), "test")
        relay.wake()
    await sink.wait_for(count, within=30)


@pytest.fixture
async def started(
    db_url: str, sink: SmtpSink, tmp_path: Path
) -> AsyncIterator[tuple[Gateway, RelayProcess]]:
    """A gateway taking mail in and a running relay process; both stopped afterwards."""
    gateway, config = _setup(db_url, sink, tmp_path)
    relay = RelayProcess(config)
    await relay.start()
    try:
        yield gateway, relay
    finally:
        await relay.stop(patience=10)
        await gateway.close()


async def test_queued_notifications_are_sent_by_the_relay_process(
    started: tuple[Gateway, RelayProcess], sink: SmtpSink
) -> None:
    gateway, relay = started
    await _mail_through(gateway, relay, sink, 3)
    assert [m.recipients for m in sink.messages] == [["jan@klant.example"]] * 3
    assert await relay.finish() == 0  # end of input: what is due is sent, then exit
    assert relay.totals.sent == 3 and relay.totals.failed == 0


async def test_end_of_input_sends_what_is_due_before_the_process_exits(
    db_url: str, sink: SmtpSink, tmp_path: Path
) -> None:
    gateway, config = _setup(db_url, sink, tmp_path)
    try:
        for n in range(2):
            await gateway.pipeline.ingest(make_mail(subject=f"Vraag {n}"), "test")
        relay = RelayProcess(config)
        await relay.start()  # never woken: `run --once` closes its input when done
        assert await relay.finish() == 0
        assert len(sink.messages) == 2 and relay.totals.sent == 2
    finally:
        await gateway.close()


async def test_sigterm_stops_the_relay_process_cleanly(
    started: tuple[Gateway, RelayProcess], sink: SmtpSink
) -> None:
    gateway, relay = started
    await _mail_through(gateway, relay, sink)
    await relay.stop(patience=10)
    assert not relay.running and relay.returncode == 0


async def test_a_relay_process_that_dies_is_started_again(
    started: tuple[Gateway, RelayProcess], sink: SmtpSink
) -> None:
    gateway, relay = started
    stop = asyncio.Event()
    keeper = asyncio.create_task(relay.keep_running(stop))
    first = relay.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    await asyncio.wait_for(relay.restarted.wait(), 30)
    assert relay.pid != first and relay.running
    await _mail_through(gateway, relay, sink)
    assert relay.restarts == 1
    stop.set()
    await keeper


def _daemon(db_url: str, sink: SmtpSink, tmp_path: Path) -> Gateway:
    """A daemon configured to send from a relay process."""
    config = settings_dict(db_url, sink_port=sink.port, sections={"http": {"listen": ""}})
    config["outbound"]["relay_process"] = True
    path = tmp_path / "gateway.toml"
    path.write_text(to_toml(config))
    return build(Settings.model_validate(config), config_path=path)


async def test_run_once_sends_through_the_relay_process(
    db_url: str, sink: SmtpSink, tmp_path: Path
) -> None:
    gateway = _daemon(db_url, sink, tmp_path)
    try:
        assert gateway.relay_process is not None
        for n in range(2):
            await gateway.pipeline.ingest(make_mail(subject=f"Storing {n}"), "test")
        summary = await run_once(gateway)
        assert (summary.sent, summary.failed, summary.retrying) == (2, 0, 0)
        assert len(sink.messages) == 2
        assert not gateway.relay_process.running
    finally:
        await gateway.close()


async def test_the_daemon_wakes_its_relay_process_and_stops_it_on_shutdown(
    db_url: str, sink: SmtpSink, tmp_path: Path
) -> None:
    gateway = _daemon(db_url, sink, tmp_path)
    stop = asyncio.Event()
    daemon = asyncio.create_task(run_forever(gateway, stop))
    try:
        await asyncio.wait_for(gateway.ready.wait(), 30)
        await gateway.pipeline.ingest(make_mail(), "test")  # its commit wakes the relay
        await sink.wait_for(1, within=30)
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 30)
        await gateway.close()
    process = gateway.relay_process
    assert process is not None and not process.running and process.returncode == 0
    # The parent knows what the relay process sent (STATUS=, /metrics).
    assert gateway.relay_totals.sent == 1
    assert "notifications sent 1, failed 0" in status_line(gateway)
