"""IMAP intake against a real Dovecot on loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from gateway.app import run_once
from gateway.config import MailboxSettings
from gateway.intake.imap import ImapError, ImapMailbox
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
