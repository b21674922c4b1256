"""No loops: automatic mail is recorded, never answered; answers are rate-limited.
On SQLite and PostgreSQL, through the real relay and SMTP sink."""

from __future__ import annotations

from typing import Any

from gateway.app import Gateway
from tests.conftest import GatewayFactory
from tests.integration.helpers import counts, detail, outbox_rows
from tests.support.mails import make_mail
from tests.support.settings import Clock
from tests.support.sink import SmtpSink

REF = "VTM-2026-000001"
HOSTILE = "robot@always-answers.example"


async def play_hostile_autoresponder(gateway: Gateway, sink: SmtpSink, rounds: int) -> int:
    """An auto-responder that answers every mail it gets, at once, without any
    auto-reply header, quoting the subject; returns how many rounds it played until
    the desk stopped answering (or `rounds`)."""
    await gateway.pipeline.ingest(
        make_mail(sender=HOSTILE, subject="Storing", body="Graag status.\n"), "test"
    )
    answered = 0
    for played in range(1, rounds + 1):
        await gateway.relay.send_due()
        new = [m for m in sink.messages[answered:] if HOSTILE in m.recipients]
        answered = len(sink.messages)
        if not new:
            return played
        for received in new:
            message = received.message
            await gateway.pipeline.ingest(
                make_mail(
                    sender=HOSTILE,
                    subject=f"Re: {message['Subject']}",
                    in_reply_to=str(message["Message-ID"]).strip("<>"),
                    body="Dit is een automatisch antwoord. Wij reageren zo snel mogelijk.\n",
                ),
                "test",
            )
    return rounds


async def test_two_autoresponders_stop_within_the_per_ticket_limit(
    make_gateway: GatewayFactory, sink: SmtpSink
) -> None:
    gateway = await make_gateway()
    rounds = await play_hostile_autoresponder(gateway, sink, rounds=50)
    assert rounds < 50
    to_robot = [m for m in sink.messages if HOSTILE in m.recipients]
    assert len(to_robot) == 10  # limits.per_ticket_10_minutes
    rows = await outbox_rows(gateway)
    suppressed = [r for r in rows if r.state == "suppressed"]
    assert len(suppressed) == 1
    assert suppressed[0].last_error is not None
    assert "10 automatic answers per ticket in 10 minutes" in suppressed[0].last_error
    ticket = await detail(gateway, REF)
    assert ticket["article_count"] == 11  # every mail is kept, only the answers stop


async def test_the_hourly_limit_holds_when_the_exchange_is_slow(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await make_gateway(sections={"limits": {"per_ticket_hour": 4}})
    await gateway.pipeline.ingest(make_mail(message_id="a0@klant.example"), "test")
    for i in range(1, 6):
        clock.advance(minutes=11)
        await gateway.pipeline.ingest(
            make_mail(subject=f"Re: [{REF}] Storing", message_id=f"a{i}@klant.example"), "test"
        )
    states = [r.state for r in await outbox_rows(gateway)]
    assert states.count("pending") == 4 and states.count("suppressed") == 2
    clock.advance(minutes=60)
    await gateway.pipeline.ingest(
        make_mail(subject=f"Re: [{REF}] weer", message_id="b@k.example"), "t"
    )
    assert (await outbox_rows(gateway))[-1].state == "pending"


async def test_the_per_recipient_daily_limit_spans_tickets(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway(sections={"limits": {"per_recipient_day": 3}})
    for i in range(5):
        await gateway.pipeline.ingest(make_mail(subject=f"Vraag {i}"), "test")
    rows = await outbox_rows(gateway)
    assert [r.state for r in rows] == ["pending"] * 3 + ["suppressed"] * 2
    assert rows[-1].last_error == "rate limit: 3 automatic answers per recipient per day"
    assert (await counts(gateway))["tickets"] == 5


async def test_agents_answers_are_never_rate_limited(make_gateway: GatewayFactory) -> None:
    from gateway.service import agent_reply, get_ticket

    gateway = await make_gateway(sections={"limits": {"per_ticket_10_minutes": 1}})
    await gateway.pipeline.ingest(make_mail(), "test")
    async with gateway.sessions() as session, session.begin():
        ticket = await get_ticket(session, REF)
        for i in range(3):
            await agent_reply(
                session,
                gateway.desk,
                ticket,
                agent="anna@vtm.example",
                body=f"Stap {i}",
                now=ticket.created_at,
            )
    assert all(r.state == "pending" for r in await outbox_rows(gateway))


async def test_a_sender_asking_for_no_automatic_answers_gets_a_ticket_but_no_notice(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    outcome = await gateway.pipeline.ingest(
        make_mail(
            sender="monitoring@klant.example",
            subject="ALERT link down Leiden",
            headers={"X-Auto-Response-Suppress": "All"},
        ),
        "test",
    )
    assert outcome.kind == "ticket"
    (row,) = await outbox_rows(gateway)
    assert row.state == "suppressed"
    assert row.last_error is not None and "X-Auto-Response-Suppress" in row.last_error


async def test_an_out_of_office_reply_is_a_note_on_its_ticket_and_changes_nothing(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "test")
    (notice,) = await outbox_rows(gateway)
    outcome = await gateway.pipeline.ingest(
        make_mail(
            subject=f"Automatisch antwoord: [{REF}] Storing glasvezel Leiden",
            in_reply_to=notice.message_id,
            body="Ik ben afwezig tot en met 9 maart.\n",
            headers={"Auto-Submitted": "auto-replied"},
        ),
        "test",
    )
    assert (outcome.kind, outcome.reference) == ("ignored", REF)
    ticket = await detail(gateway, REF)
    note = ticket["articles"][-1]
    assert (note["kind"], note["public"]) == ("auto_reply", False)
    assert "afwezig" in note["body"]
    assert ticket["status"] == "open"
    assert len(await outbox_rows(gateway)) == 1


async def test_an_out_of_office_from_a_stranger_is_recorded_only(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "test")
    outcome = await gateway.pipeline.ingest(
        make_mail(
            sender="x@elders.example",
            subject=f"Out of Office: [{REF}] Storing",
            headers={"Auto-Submitted": "auto-replied"},
        ),
        "test",
    )
    assert (outcome.kind, outcome.reference) == ("ignored", None)
    assert (await detail(gateway, REF))["article_count"] == 1


async def test_mailing_list_mail_is_recorded_or_accepted_as_configured(
    make_gateway: GatewayFactory,
) -> None:
    headers: dict[str, Any] = {"List-Id": "<netwerk.lists.example>"}
    ignoring = await make_gateway()
    outcome = await ignoring.pipeline.ingest(make_mail(headers=headers), "test")
    assert (outcome.kind, outcome.reason) == ("ignored", "mailing_list")
    accepting = await make_gateway(sections={"access": {"mailing_lists": "accept"}})
    outcome = await accepting.pipeline.ingest(
        make_mail(headers=headers, message_id="other@klant.example"), "test"
    )
    assert outcome.kind == "ticket"
