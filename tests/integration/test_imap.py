"""IMAP intake against a real Dovecot on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aioimaplib
import pytest

from gateway.app import Gateway, run_once
from gateway.config import MailboxSettings
from gateway.intake import imap
from gateway.intake.imap import ImapError, ImapMailbox
from gateway.pipeline import TemporaryFailure
from tests.conftest import GatewayFactory
from tests.integration.helpers import counts, detail, outbox_rows
from tests.support.dovecot import Dovecot, ImapAccount, free_port
from tests.support.mails import make_mail
from tests.support.settings import imap_mailbox
from tests.support.sink import SmtpSink

pytestmark = pytest.mark.imap


async def test_new_mail_in_mailbox_becomes_ticket_and_notification_reaches_sink(
    make_gateway: GatewayFactory, imap_account: ImapAccount, sink: SmtpSink
) -> None:
    imap_account.append(make_mail(to="noc@vtm.example", subject="Storing Leiden"))
    gateway = await make_gateway(mailboxes=[imap_mailbox(imap_account)])
    summary = await run_once(gateway)
    assert (summary.messages, summary.sent, summary.errors) == (1, 1, [])
    ticket = await detail(gateway, "VTM-2026-000001")
    assert (ticket["team"], ticket["subject"]) == ("noc", "Storing Leiden")
    (received,) = await sink.wait_for(1)
    assert "[VTM-2026-000001]" in str(received.message["Subject"])
    assert imap_account.flags() == {1: "\\Seen"}


async def test_reply_with_re_aw_tag_in_mailbox_is_added_to_the_same_ticket(
    make_gateway: GatewayFactory, imap_account: ImapAccount, sink: SmtpSink
) -> None:
    gateway = await make_gateway(mailboxes=[imap_mailbox(imap_account)])
    imap_account.append(make_mail())
    await run_once(gateway)
    imap_account.append(make_mail(subject="RE: AW: [VTM-2026-000001] Uw melding", body="Meer"))
    summary = await run_once(gateway)
    assert summary.messages == 1
    c = await counts(gateway)
    assert (c["tickets"], c["articles"]) == (1, 2)
    await sink.wait_for(2)


async def test_reply_threaded_by_in_reply_to_with_rewritten_subject(
    make_gateway: GatewayFactory, imap_account: ImapAccount
) -> None:
    gateway = await make_gateway(mailboxes=[imap_mailbox(imap_account)])
    imap_account.append(make_mail())
    await run_once(gateway)
    (notice,) = await outbox_rows(gateway)
    imap_account.append(make_mail(subject="Nieuwe titel", in_reply_to=notice.message_id))
    await run_once(gateway)
    assert (await detail(gateway, "VTM-2026-000001"))["article_count"] == 2
    assert (await counts(gateway))["tickets"] == 1


async def test_running_once_twice_doubles_nothing(
    make_gateway: GatewayFactory, imap_account: ImapAccount, sink: SmtpSink
) -> None:
    imap_account.append(*(make_mail(subject=f"Melding {i}") for i in range(5)))
    gateway = await make_gateway(mailboxes=[imap_mailbox(imap_account, fetch_batch=2)])
    first = await run_once(gateway)
    after_first = await counts(gateway)
    second = await run_once(gateway)
    assert (first.messages, second.messages) == (5, 0)
    assert await counts(gateway) == after_first
    assert after_first["tickets"] == 5
    await sink.wait_for(5)
    assert len(sink.messages) == 5


async def test_unparseable_mail_in_mailbox_is_kept_and_the_next_is_processed(
    make_gateway: GatewayFactory, imap_account: ImapAccount
) -> None:
    imap_account.append(b"Subject: kapot\r\n\r\ngeen afzender\r\n", make_mail())
    gateway = await make_gateway(mailboxes=[imap_mailbox(imap_account)])
    summary = await run_once(gateway)
    assert summary.messages == 2
    c = await counts(gateway)
    assert (c["quarantine"], c["tickets"]) == (1, 1)
    assert imap_account.flags() == {1: "\\Seen", 2: "\\Seen"}


async def test_wrong_password_is_a_clear_login_error(lone_dovecot: Dovecot) -> None:
    account = lone_dovecot.new_account()
    account.password = "wrong"
    settings = MailboxSettings.model_validate(imap_mailbox(account))
    mailbox = ImapMailbox(settings, sessions=None, pipeline=None, engine=None)  # type: ignore[arg-type]
    with pytest.raises(ImapError, match="LOGIN failed"):
        await mailbox.connect()


async def test_unreachable_mailbox_is_reported_and_the_relay_still_runs(
    make_gateway: GatewayFactory, sink: SmtpSink
) -> None:
    gateway = await make_gateway(
        mailboxes=[{"name": "gone", "host": "127.0.0.1", "port": free_port(), "security": "none",
                    "username": "x", "password": "y", "timeout_seconds": 2}]
    )  # fmt: skip
    await gateway.pipeline.ingest(make_mail(), "test")
    summary = await run_once(gateway)
    assert summary.messages == 0
    assert summary.errors and "gone" in summary.errors[0]
    assert summary.sent == 1


# Taking in over several ranges and FETCH groups, and leaving off midway.


def same_size_mails(n: int) -> list[bytes]:
    return [
        make_mail(subject=f"Melding {i:02d}", message_id=f"ahead-{i:02d}@klant.example")
        for i in range(1, n + 1)
    ]


async def ten_mails_two_per_group(
    make_gateway: GatewayFactory, account: ImapAccount, monkeypatch: pytest.MonkeyPatch
) -> tuple[Gateway, ImapMailbox]:
    """Ten mails of one size in `account`, taken in by ranges of five UIDs and FETCH
    groups of two; the gateway and its mailbox."""
    mails = same_size_mails(10)
    account.append(*mails)
    two_per_group(monkeypatch, mails)
    gateway = await make_gateway(mailboxes=[imap_mailbox(account, fetch_batch=5)])
    return gateway, gateway.mailboxes[0]


def two_per_group(monkeypatch: pytest.MonkeyPatch, mails: list[bytes]) -> None:
    """FETCH groups of two of these mails: two fit in FETCH_BYTES, three do not."""
    monkeypatch.setattr(imap, "FETCH_BYTES", max(map(len, mails)) * 5 // 2)


def record(
    gateway: Gateway,
    monkeypatch: pytest.MonkeyPatch,
    before_commit: Callable[[int], Awaitable[None]] | None = None,
) -> list[str]:
    """What the mailbox asks the server for and commits, in order: "sizes 1:5",
    "bodies 3:4", "head 7" (over the size limit), "commit 3". `before_commit(uid)`
    runs before a message is handed to the pipeline (to stop, fail or drop there)."""
    trace: list[str] = []
    pipeline = gateway.pipeline

    def committing(real: Callable[..., Awaitable[object]]) -> Callable[..., Awaitable[object]]:
        async def wrapper(*args: Any, **kwargs: Any) -> object:
            uid = int(kwargs["ack"].uid)
            if before_commit is not None:
                await before_commit(uid)
            result = await real(*args, **kwargs)
            trace.append(f"commit {uid}")
            return result

        return wrapper

    monkeypatch.setattr(pipeline, "ingest", committing(pipeline.ingest))
    monkeypatch.setattr(pipeline, "quarantine_oversize", committing(pipeline.quarantine_oversize))
    real_uid = aioimaplib.IMAP4.uid

    async def uid(client: aioimaplib.IMAP4, command: str, *criteria: str) -> aioimaplib.Response:
        if command == "fetch":
            what = {"(UID RFC822.SIZE)": "sizes", "(UID BODY.PEEK[])": "bodies"}
            trace.append(f"{what.get(criteria[1], 'head')} {criteria[0]}")
        return await real_uid(client, command, *criteria)

    monkeypatch.setattr(aioimaplib.IMAP4, "uid", uid)
    return trace


def once_at(uid: int, action: Callable[[], Awaitable[object]]) -> Callable[[int], Awaitable[None]]:
    """A `before_commit` for `record`: runs `action` the first time `uid` comes up (a
    message that is taken in again after a failure does not run it twice)."""
    done = False

    async def hook(seen: int) -> None:
        nonlocal done
        if seen == uid and not done:
            done = True
            await action()

    return hook


def committed(trace: list[str]) -> list[int]:
    return [int(entry.split()[1]) for entry in trace if entry.startswith("commit ")]


async def assert_nothing_left_running(caplog: pytest.LogCaptureFixture) -> None:
    """No task outlives a take-in (a cancelled one ends at its next step), and asyncio
    reports no task destroyed while pending nor an exception never retrieved."""
    await asyncio.sleep(0)
    assert asyncio.all_tasks() == {asyncio.current_task()}
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_mail_over_several_ranges_and_groups_is_taken_in_once_in_uid_order(
    make_gateway: GatewayFactory,
    imap_account: ImapAccount,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    mails = same_size_mails(12)
    mails[6] = make_mail(subject="Logbestanden", body="regel\n" * 400)  # UID 7: oversize
    imap_account.append(*mails)
    two_per_group(monkeypatch, mails[:6])
    settings = imap_mailbox(imap_account, fetch_batch=5, max_message_bytes=1024)
    gateway = await make_gateway(mailboxes=[settings])
    trace = record(gateway, monkeypatch)
    summary = await run_once(gateway)
    assert (summary.messages, summary.errors) == (12, [])
    assert committed(trace) == list(range(1, 13))
    fetches = [entry for entry in trace if not entry.startswith("commit ")]
    assert fetches == [
        "sizes 1:5", "bodies 1:2", "bodies 3:4", "bodies 5",
        "sizes 6:10", "bodies 6", "head 7", "bodies 8:9", "bodies 10",
        "sizes 11:12", "bodies 11:12",
    ]  # fmt: skip
    c = await counts(gateway)
    assert (c["tickets"], c["quarantine"]) == (11, 1)
    assert imap_account.flags() == dict.fromkeys(range(1, 13), "\\Seen")


async def test_stop_midway_leaves_the_rest_unread_and_nothing_running(
    make_gateway: GatewayFactory,
    imap_account: ImapAccount,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway, mailbox = await ten_mails_two_per_group(make_gateway, imap_account, monkeypatch)
    stop = asyncio.Event()

    async def stop_now() -> None:
        stop.set()

    trace = record(gateway, monkeypatch, once_at(3, stop_now))  # the first of group 3:4
    try:
        assert await mailbox.drain(stop) == 3  # the message in hand is finished
        await assert_nothing_left_running(caplog)
        assert imap_account.flags() == {1: "\\Seen", 2: "\\Seen", 3: "\\Seen"} | dict.fromkeys(
            range(4, 11), ""
        )
        assert await mailbox.drain() == 7
    finally:
        await mailbox.close()
    assert committed(trace) == list(range(1, 11))
    assert imap_account.flags() == dict.fromkeys(range(1, 11), "\\Seen")


async def test_ingest_failing_midway_leaves_the_later_mail_for_next_time(
    make_gateway: GatewayFactory,
    imap_account: ImapAccount,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    gateway, mailbox = await ten_mails_two_per_group(make_gateway, imap_account, monkeypatch)

    async def fail() -> None:
        raise TemporaryFailure("database down")

    trace = record(gateway, monkeypatch, once_at(4, fail))  # the second of group 3:4
    try:
        with pytest.raises(TemporaryFailure):
            await asyncio.wait_for(mailbox.drain(), timeout=5)
        await assert_nothing_left_running(caplog)
        assert imap_account.flags() == dict.fromkeys(range(1, 4), "\\Seen") | dict.fromkeys(
            range(4, 11), ""
        )
        assert await mailbox.drain() == 7  # the same connection: it is still in order
    finally:
        await mailbox.close()
    assert committed(trace) == list(range(1, 11))
    assert (await counts(gateway))["tickets"] == 10


async def test_connection_dropped_midway_loses_nothing(
    make_gateway: GatewayFactory,
    dovecot: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    account = dovecot.new_account()
    gateway, mailbox = await ten_mails_two_per_group(make_gateway, account, monkeypatch)
    trace = record(
        gateway, monkeypatch, once_at(3, lambda: asyncio.to_thread(dovecot.kick, account.username))
    )
    with caplog.at_level(logging.INFO, logger="gateway.intake.imap"):
        try:
            with pytest.raises(ImapError, match="connection lost"):
                await mailbox.drain()
            await assert_nothing_left_running(caplog)
            assert committed(trace) == [1, 2, 3, 4]  # the group in hand was finished
            assert account.flags() == dict.fromkeys(range(1, 11), "")  # no ack got through
            await mailbox.close()
            assert await mailbox.drain() == 6  # acknowledges 1-4 first, then takes in 5-10
        finally:
            await mailbox.close()
    assert committed(trace) == list(range(1, 11))
    assert account.flags() == dict.fromkeys(range(1, 11), "\\Seen")
    assert any("acknowledging 4 message(s)" in r.getMessage() for r in caplog.records)


async def test_a_cancelled_take_in_leaves_nothing_running_and_loses_nothing(
    make_gateway: GatewayFactory,
    imap_account: ImapAccount,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As at the end of the shutdown time: what runs then is cancelled."""
    gateway, mailbox = await ten_mails_two_per_group(make_gateway, imap_account, monkeypatch)

    async def cancel() -> None:
        draining.cancel()
        await asyncio.sleep(0)  # raises CancelledError: 3 is not committed

    trace = record(gateway, monkeypatch, once_at(3, cancel))
    try:
        draining = asyncio.create_task(mailbox.drain())
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(draining), timeout=5)
        await assert_nothing_left_running(caplog)
        assert imap_account.flags() == {1: "\\Seen", 2: "\\Seen"} | dict.fromkeys(range(3, 11), "")
        assert await mailbox.drain() == 8
    finally:
        await mailbox.close()
    assert committed(trace) == list(range(1, 11))
