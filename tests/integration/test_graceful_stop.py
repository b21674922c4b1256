"""Stopping the daemon: no new work, the message in hand finished, notifications flushed."""

from __future__ import annotations

import asyncio

import pytest

from gateway.app import run_forever, run_once
from tests.conftest import GatewayFactory
from tests.integration.helpers import counts, outbox_rows
from tests.support.dovecot import ImapAccount
from tests.support.mails import make_mail
from tests.support.settings import imap_mailbox
from tests.support.sink import SmtpSink

pytestmark = pytest.mark.imap


async def test_stop_finishes_the_message_in_hand_flushes_and_leaves_the_rest_for_later(
    make_gateway: GatewayFactory, imap_account: ImapAccount, sink: SmtpSink
) -> None:
    imap_account.append(*(make_mail(subject=f"Melding {i}") for i in range(20)))
    gateway = await make_gateway(mailboxes=[imap_mailbox(imap_account, fetch_batch=5)])
    stop = asyncio.Event()

    async def stop_after_first_commit() -> None:
        await gateway.outbox_wake.wait()  # set by the pipeline after each commit
        stop.set()

    trigger = asyncio.create_task(stop_after_first_commit())
    await asyncio.wait_for(run_forever(gateway, stop), timeout=15)
    await trigger

    taken = (await counts(gateway))["tickets"]
    assert 1 <= taken < 20  # stopped early, between messages
    assert {r.state for r in await outbox_rows(gateway)} == {"sent"}  # flushed, none half-way
    assert len(sink.messages) == taken
    seen = [uid for uid, flags in imap_account.flags().items() if "\\Seen" in flags]
    assert seen == list(range(1, taken + 1))  # acknowledged exactly what was committed

    rest = await run_once(gateway)
    assert rest.messages == 20 - taken
    assert (await counts(gateway))["tickets"] == 20
    await sink.wait_for(20)
    ids = [m.message["Message-ID"] for m in sink.messages]
    assert len(ids) == len(set(ids)) == 20
