"""Reload (SIGHUP): a good config takes effect for the next message, a bad one is refused
and the running one kept, and what needs a restart is named and left as it runs."""

from __future__ import annotations

import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway, build, reload_config
from gateway.config import PACKAGE_ROOT, load_settings
from tests.support.mails import make_mail
from tests.support.settings import Clock, settings_dict, to_toml
from tests.support.sink import SmtpSink

RENAMED = "Zakelijke Servicedesk"


class Desk:
    """A config file on disk and the gateway built from it."""

    def __init__(self, path: Path, config: dict[str, Any], gateway: Gateway) -> None:
        self.path, self.config, self.gateway = path, config, gateway

    def write(self, config: dict[str, Any] | None = None) -> None:
        self.path.write_text(to_toml(config or self.config))

    async def notice_text(self, sink: SmtpSink, subject: str) -> str:
        """Take in a new matter; the text of the notification the relay then sends."""
        await self.gateway.pipeline.ingest(make_mail(subject=subject), "test")
        before = len(sink.messages)
        await self.gateway.relay.send_due()
        received = await sink.wait_for(before + 1)
        body = received[-1].message.get_body(("plain",))
        assert body is not None
        text: str = body.get_content()
        return text


@pytest.fixture
async def desk(db_url: str, sink: SmtpSink, clock: Clock, tmp_path: Path) -> AsyncIterator[Desk]:
    config = settings_dict(db_url, sink_port=sink.port, sections={"http": {"listen": ""}})
    path = tmp_path / "gateway.toml"
    path.write_text(to_toml(config))
    gateway = build(load_settings(path), clock=clock, config_path=path)
    try:
        yield Desk(path, config, gateway)
    finally:
        await gateway.close()


def renamed(config: dict[str, Any], name: str = RENAMED) -> dict[str, Any]:
    teams = [{**t, "name": name} if t["key"] == "business" else t for t in config["teams"]]
    return {**config, "teams": teams}


async def test_a_good_reload_changes_what_the_next_notification_says(
    desk: Desk, sink: SmtpSink, caplog: pytest.LogCaptureFixture
) -> None:
    assert "Business Servicedesk" in await desk.notice_text(sink, "Voor de reload")
    desk.write(renamed(desk.config))
    with caplog.at_level(logging.INFO, logger="gateway.app"):
        assert reload_config(desk.gateway)
    assert f"reloaded {desk.path}: changed teams[1].name" in caplog.messages
    text = await desk.notice_text(sink, "Na de reload")
    assert RENAMED in text and "Business Servicedesk" not in text
    assert desk.gateway.desk.settings is desk.gateway.settings


async def test_a_broken_config_is_refused_and_the_running_one_kept(
    desk: Desk, sink: SmtpSink, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    running = desk.gateway.settings
    broken_templates = tmp_path / "templates"
    shutil.copytree(PACKAGE_ROOT / "templates", broken_templates)
    (broken_templates / "nl" / "created.txt").write_text(
        "{% block subject %}{{ oops {% endblock %}"
    )
    mistakes: list[tuple[str, str]] = [
        (to_toml(renamed(desk.config)) + "\n[desk\n", "not valid TOML"),
        (to_toml({**desk.config, "desk": {**desk.config["desk"], "reopen_days": -1}}),
         "desk.reopen_days: Input should be greater than or equal to 0"),
        (to_toml({**renamed(desk.config), "desk": {**desk.config["desk"],
                                                   "templates_dir": str(broken_templates)}}),
         "template nl/created.txt:1: "),
        (to_toml({**desk.config, "desk": {**desk.config["desk"],
                                          "templates_dir": str(tmp_path / "none")}}),
         "none for desk.language 'nl'"),
    ]  # fmt: skip
    for text, why in mistakes:
        desk.path.write_text(text)
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="gateway.app"):
            assert not reload_config(desk.gateway)
        (line,) = caplog.messages
        assert line.startswith("reload refused: "), line
        assert why in line, line
        assert line.endswith("; keeping the running configuration"), line
        assert caplog.records[0].levelno == logging.ERROR
        assert desk.gateway.settings is running
    desk.path.unlink()
    assert not reload_config(desk.gateway)
    # Still taking mail in, and still under the old configuration.
    assert "Business Servicedesk" in await desk.notice_text(sink, "Na de mislukte reloads")


async def test_what_needs_a_restart_is_named_and_kept_as_it_runs(
    desk: Desk, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    running = desk.gateway.settings
    config = renamed(desk.config)
    config["database"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'elsewhere.db'}"}
    config["mailboxes"] = [{"name": "extra", "username": "x", "password": "y"}]
    config["listeners"] = [{"kind": "lmtp", "port": 2424}]
    config["desk"] = {**config["desk"], "sender": "desk@vtm.example"}
    config["http"] = {"listen": "127.0.0.1:9"}
    config["logging"] = {"level": "debug", "format": "json"}
    config["limits"] = {"per_ticket_hour": 3}
    desk.write(config)
    with caplog.at_level(logging.INFO, logger="gateway.app"):
        assert reload_config(desk.gateway)
    reloaded, restart = caplog.records[-2:]
    assert reloaded.getMessage() == (
        f"reloaded {desk.path}: changed teams[1].name, limits.per_ticket_hour, "
        "logging.level, logging.format"
    )
    assert restart.levelno == logging.WARNING
    assert restart.getMessage() == (
        "needs a restart: database.url, mailboxes, listeners, desk.sender, http.listen "
        "(running as before until then)"
    )
    now = desk.gateway.settings
    assert (now.database, now.mailboxes, now.listeners) == (
        running.database,
        running.mailboxes,
        running.listeners,
    )
    assert (now.desk.sender, now.http.listen) == (running.desk.sender, "")
    assert now.team("business").name == RENAMED
    assert (now.limits.per_ticket_hour, now.logging.format) == (3, "json")
    assert desk.gateway.mailboxes == [] and desk.gateway.desk.settings is now


async def test_a_changed_outbound_server_and_sender_name_take_effect_at_the_next_batch(
    desk: Desk, sink: SmtpSink
) -> None:
    assert "Business Servicedesk" in await desk.notice_text(sink, "Naar de eerste server")
    other = SmtpSink()
    await other.start()
    try:
        config = {**desk.config, "outbound": {**desk.config["outbound"], "port": other.port}}
        config["desk"] = {**config["desk"], "sender_name": "VTM Klantenservice"}
        desk.write(config)
        assert reload_config(desk.gateway)
        text = await desk.notice_text(other, "Naar de tweede server")
        assert "VTM Klantenservice" in text
        assert other.messages[-1].message["From"] == "VTM Klantenservice <servicedesk@vtm.example>"
        assert len(sink.messages) == 1
    finally:
        await desk.gateway.relay.close()
        await other.stop()
