"""IMAP intake as the daemon runs it: IDLE, renewals, moves, acks after a crash,
oversize mail, reconnect logging and the mailbox lock, against a real Dovecot."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import undefer

from gateway.app import Gateway, run_once
from gateway.intake.imap import ImapMailbox
from gateway.pipeline import Pipeline, UidSeen
from gateway.store.locks import MailboxLock
from gateway.store.models import MailboxUid, QuarantinedMessage
from tests.conftest import GatewayFactory
from tests.integration.helpers import counts
from tests.support.dovecot import Dovecot, ImapAccount, free_port
from tests.support.mails import make_mail
from tests.support.settings import Clock, imap_mailbox
from tests.support.sink import SmtpSink

pytestmark = pytest.mark.imap


async def wait_for(predicate: Callable[[], object], what: str, within: float = 10.0) -> None:
    """Wait until a condition the running mailbox makes true holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not (await predicate() if asyncio.iscoroutinefunction(predicate) else predicate()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(mailbox: ImapMailbox) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(mailbox.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def tickets_reach(gateway: Gateway, n: int) -> Callable[[], object]:
    async def check() -> bool:
        return (await counts(gateway))["tickets"] >= n

    return check


async def test_idle_takes_in_new_mail_at_once_without_polling(
    make_gateway: GatewayFactory, imap_account: ImapAccount
) -> None:
    imap_account.append(make_mail(subject="Eerste"))
    gateway = await make_gateway(mailboxes=[imap_mailbox(imap_account, poll_seconds=600)])
    mailbox = gateway.mailboxes[0]
    async with running(mailbox):
        await wait_for(tickets_reach(gateway, 1), "the waiting mail")
        await wait_for(lambda: mailbox.idles >= 1, "IDLE to start")
        imap_account.append(make_mail(subject="Tweede"))
        await wait_for(tickets_reach(gateway, 2), "the pushed mail (no poll for 600 s)")
    assert imap_account.flags() == {1: "\\Seen", 2: "\\Seen"}


async def test_idle_is_renewed_before_the_server_would_end_it(
    make_gateway: GatewayFactory, imap_account: ImapAccount
) -> None:
    settings = imap_mailbox(imap_account, poll_seconds=600, idle_renew_seconds=0.2)
    gateway = await make_gateway(mailboxes=[settings])
    mailbox = gateway.mailboxes[0]
    async with running(mailbox):
        await wait_for(lambda: mailbox.idles >= 4, "three renewals")
        imap_account.append(make_mail())
        await wait_for(tickets_reach(gateway, 1), "mail after the renewals")
    assert mailbox.health.failures == 0


async def test_without_idle_the_mailbox_is_polled(
    make_gateway: GatewayFactory, imap_account: ImapAccount
) -> None:
    settings = imap_mailbox(imap_account, idle=False, poll_seconds=0.1)
    gateway = await make_gateway(mailboxes=[settings])
    mailbox = gateway.mailboxes[0]
    async with running(mailbox):
        await wait_for(lambda: mailbox.connected, "the connection")
        imap_account.append(make_mail())
        await wait_for(tickets_reach(gateway, 1), "the polled mail")
    assert mailbox.idles == 0


async def test_processed_mail_is_moved_to_the_configured_folder(
    make_gateway: GatewayFactory, imap_account: ImapAccount
) -> None:
    imap_account.append(make_mail(), make_mail(subject="Tweede"))
    settings = imap_mailbox(imap_account, processed_folder="Verwerkt")
    gateway = await make_gateway(mailboxes=[settings])
    summary = await run_once(gateway)
    assert summary.messages == 2 and not summary.errors
    assert imap_account.flags() == {}
    assert len(imap_account.flags("Verwerkt")) == 2
    imap_account.append(make_mail(subject="Derde"))
    assert (await run_once(gateway)).messages == 1  # the folder exists now: no error
    assert len(imap_account.flags("Verwerkt")) == 3


async def test_mail_committed_but_not_flagged_before_a_crash_is_flagged_not_taken_again(
    make_gateway: GatewayFactory, imap_account: ImapAccount, sink: SmtpSink
) -> None:
    raw = make_mail()
    imap_account.append(raw)
    gateway = await make_gateway(mailboxes=[imap_mailbox(imap_account)])
    mailbox = gateway.mailboxes[0]
    await mailbox.connect()
    uidvalidity = mailbox._uidvalidity
    await mailbox.close()
    # The daemon committed UID 1 and died before storing \Seen.
    await gateway.pipeline.ingest(raw, "imap:desk:1", ack=UidSeen("desk", uidvalidity, 1))
    before = await counts(gateway)
    assert imap_account.flags() == {1: ""}
    summary = await run_once(gateway)
    assert summary.messages == 0
    assert imap_account.flags() == {1: "\\Seen"}
    assert await counts(gateway) == before
    assert len(sink.messages) == 1


async def test_oversize_mail_is_quarantined_with_its_head_and_stays_on_the_server(
    make_gateway: GatewayFactory, imap_account: ImapAccount
) -> None:
    big = make_mail(subject="Logbestanden", body="logregel 12:00:01 link down\n" * 400)
    imap_account.append(big, make_mail(subject="Klein"))
    settings = imap_mailbox(imap_account, max_message_bytes=4096)
    gateway = await make_gateway(mailboxes=[settings])
    summary = await run_once(gateway)
    assert summary.messages == 2
    c = await counts(gateway)
    assert (c["tickets"], c["quarantine"]) == (1, 1)
    async with gateway.sessions() as session:
        entry = await session.scalar(
            select(QuarantinedMessage).options(undefer(QuarantinedMessage.raw))
        )
    assert entry is not None
    assert (entry.stage, entry.truncated, entry.size) == ("intake", True, len(big))
    assert b"Subject: Logbestanden" in entry.raw
    assert "over the limit of 4096" in entry.error
    assert imap_account.flags() == {1: "\\Seen", 2: "\\Seen"}  # still there, flagged


async def test_unreachable_server_is_logged_once_however_often_it_is_retried(
    make_gateway: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    gone = {"name": "gone", "host": "127.0.0.1", "port": free_port(), "security": "none",
            "username": "x", "password": "y", "reconnect_max_seconds": 0.02}  # fmt: skip
    gateway = await make_gateway(mailboxes=[gone])
    mailbox = gateway.mailboxes[0]
    with caplog.at_level(logging.INFO, logger="gateway.intake.imap"):
        async with running(mailbox):
            await wait_for(lambda: mailbox.health.failures >= 5, "five failed connects")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "gone" in errors[0].getMessage() and "retrying with backoff" in errors[0].getMessage()


async def test_one_daemon_holds_a_mailbox_and_another_takes_over_when_it_goes(
    make_gateway: GatewayFactory,
) -> None:
    """PostgreSQL: an advisory lock per mailbox. SQLite: one daemon, always granted."""
    first, second = await make_gateway(), await make_gateway()
    mine = MailboxLock(first.engine, "desk")
    theirs = MailboxLock(second.engine, "desk")
    other_mailbox = MailboxLock(second.engine, "other")
    try:
        assert await mine.acquire()
        assert await other_mailbox.acquire()
        single_host = first.engine.dialect.name == "sqlite"
        assert await theirs.acquire() is single_host
        await mine.check()
        await mine.release()
        assert await theirs.acquire()
    finally:
        for lock in (mine, theirs, other_mailbox):
            await lock.release()


async def test_mailbox_reconnects_when_the_server_drops_the_connection_in_idle(
    make_gateway: GatewayFactory, dovecot: Dovecot, caplog: pytest.LogCaptureFixture
) -> None:
    account = dovecot.new_account()
    account.append(make_mail(subject="Voor de onderbreking"))
    settings = imap_mailbox(account, poll_seconds=600, reconnect_max_seconds=0.2)
    gateway = await make_gateway(mailboxes=[settings])
    mailbox = gateway.mailboxes[0]
    with caplog.at_level(logging.INFO, logger="gateway.intake.imap"):
        async with running(mailbox):
            await wait_for(tickets_reach(gateway, 1), "the first mail")
            await wait_for(lambda: mailbox.idles >= 1, "IDLE")
            await asyncio.to_thread(dovecot.kick, account.username)
            await wait_for(lambda: mailbox.health.failures >= 1, "the lost connection")
            account.append(make_mail(subject="Na de onderbreking"))
            await wait_for(tickets_reach(gateway, 2), "mail after reconnecting")
    messages = [r.getMessage() for r in caplog.records]
    assert sum("retrying with backoff" in m for m in messages) == 1
    assert any("connected again" in m for m in messages)


async def test_new_uidvalidity_rescans_the_mailbox_without_doubling_anything(
    make_gateway: GatewayFactory,
    imap_account: ImapAccount,
    sink: SmtpSink,
    caplog: pytest.LogCaptureFixture,
) -> None:
    imap_account.append(make_mail(), make_mail(subject="Tweede"))
    gateway = await make_gateway(mailboxes=[imap_mailbox(imap_account)])
    await run_once(gateway)
    before = await counts(gateway)
    # As if the server rebuilt its index: our ledger speaks of another UIDVALIDITY.
    async with gateway.sessions() as session, session.begin():
        await session.execute(update(MailboxUid).values(uidvalidity=MailboxUid.uidvalidity - 1))
    imap_account.append(make_mail(subject="Derde"))
    with caplog.at_level(logging.WARNING, logger="gateway.intake.imap"):
        summary = await run_once(gateway)
    assert summary.messages == 3  # all read again ...
    after = await counts(gateway)
    assert after["tickets"] == before["tickets"] + 1  # ... and only the new one is new
    assert after["inbound"] == before["inbound"] + 1
    assert any("UIDVALIDITY changed" in r.getMessage() for r in caplog.records)
    await sink.wait_for(3)
    assert len(sink.messages) == 3


async def test_oversize_mail_before_a_small_one_is_never_passed_over(
    make_gateway: GatewayFactory, imap_account: ImapAccount, clock: Clock
) -> None:
    """UIDs are taken in order: the cursor (the highest UID done) never skips one."""
    big = make_mail(subject="Logbestanden", body="logregel\n" * 800)
    imap_account.append(big, make_mail(subject="Klein"))
    gateway = await make_gateway(mailboxes=[imap_mailbox(imap_account, max_message_bytes=4096)])
    stop = asyncio.Event()  # set by the first commit, as a SIGTERM at that moment would
    stopping = Pipeline(gateway.sessions, gateway.desk, clock=clock, on_commit=stop.set)
    settings = gateway.mailboxes[0].settings
    mailbox = ImapMailbox(settings, gateway.sessions, stopping, gateway.engine)
    assert await mailbox.drain(stop) == 1  # the stop came after UID 1, the big one
    await mailbox.close()
    assert imap_account.flags() == {1: "\\Seen", 2: ""}
    assert (await run_once(gateway)).messages == 1
    c = await counts(gateway)
    assert (c["quarantine"], c["tickets"]) == (1, 1)


async def test_tls_mailbox_that_cannot_connect_is_reported_not_a_crash(
    make_gateway: GatewayFactory,
) -> None:
    tls = {"name": "secure", "host": "127.0.0.1", "port": free_port(), "security": "tls",
           "username": "x", "password": "y", "timeout_seconds": 2}  # fmt: skip
    gateway = await make_gateway(mailboxes=[tls])
    summary = await run_once(gateway)
    assert summary.errors and summary.errors[0].startswith("mailbox secure:")
