"""The path of one message, on SQLite and PostgreSQL: match, apply the rules, notify."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import select

from gateway.domain.model import Status
from gateway.service import agent_reply, change_status, get_ticket, open_ticket
from gateway.store.models import InboundMessage
from tests.conftest import GatewayFactory
from tests.integration.helpers import counts, detail, outbox_rows
from tests.support.mails import make_mail
from tests.support.settings import Clock
from tests.support.sink import SmtpSink

REPLIES = Path(__file__).resolve().parent.parent / "data" / "replies"


async def set_status(gateway, reference: str, status: Status, now) -> None:  # type: ignore[no-untyped-def]
    async with gateway.sessions() as session, session.begin():
        ticket = await get_ticket(session, reference)
        await change_status(session, gateway.desk, ticket, status, by="agent@vtm.example", now=now)


async def test_new_mail_opens_ticket_and_mails_creation_notice_with_tag(
    make_gateway: GatewayFactory, sink: SmtpSink, clock: Clock
) -> None:
    gateway = await make_gateway()
    outcome = await gateway.pipeline.ingest(
        make_mail(
            to="noc@vtm.example", cc="Piet <piet@klant.example>", message_id="q1@klant.example"
        ),
        "test",
    )
    assert outcome.kind == "ticket"
    assert outcome.reference == "VTM-2026-000001"
    ticket = await detail(gateway, "VTM-2026-000001")
    assert ticket["status"] == "open"
    assert ticket["team"] == "noc"
    assert ticket["requester"] == "jan@klant.example"
    assert ticket["participants"] == ["piet@klant.example"]
    assert ticket["articles"][0]["direction"] == "in"
    assert ticket["articles"][0]["kind"] == "customer"

    stats = await gateway.relay.send_due()
    assert stats.sent == 1
    (received,) = await sink.wait_for(1)
    assert received.recipients == ["jan@klant.example"]
    message = received.message
    assert message["Subject"].startswith("[VTM-2026-000001] ")
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["In-Reply-To"] == "<q1@klant.example>"
    assert "0174 75 26 90" in message.get_body(("plain",)).get_content()


async def test_team_follows_the_desk_address_and_defaults_to_business(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(to="iot@vtm.example"), "test")
    await gateway.pipeline.ingest(make_mail(to="someone-else@vtm.example"), "test")
    await gateway.pipeline.ingest(make_mail(to="x@klant.example", cc="NOC <NOC@VTM.example>"), "t")
    teams = [(await detail(gateway, f"VTM-2026-00000{i}"))["team"] for i in (1, 2, 3)]
    assert teams == ["iot", "business", "noc"]


async def test_envelope_recipient_picks_the_team_when_headers_do_not(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    raw = make_mail(to="undisclosed-recipients:;")
    await gateway.pipeline.ingest(raw, "test", envelope_recipients=["iot@vtm.example"])
    assert (await detail(gateway, "VTM-2026-000001"))["team"] == "iot"


async def test_reply_with_prefixed_tag_is_an_article_on_the_same_ticket(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "test")
    outcome = await gateway.pipeline.ingest(
        make_mail(subject="RE: AW: [VTM-2026-000001] Uw melding is ontvangen", body="Extra info"),
        "test",
    )
    assert (outcome.kind, outcome.reference) == ("article", "VTM-2026-000001")
    ticket = await detail(gateway, "VTM-2026-000001")
    assert ticket["article_count"] == 2
    assert [a["body"] for a in ticket["articles"]] == [
        "Onze verbinding ligt eruit sinds 9:00.",
        "Extra info",
    ]
    assert (await counts(gateway))["tickets"] == 1


async def test_reply_threaded_only_by_in_reply_to_finds_its_ticket(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "test")
    (notice,) = await outbox_rows(gateway)
    outcome = await gateway.pipeline.ingest(
        make_mail(subject="Andere titel zonder nummer", in_reply_to=notice.message_id), "test"
    )
    assert (outcome.kind, outcome.reference) == ("article", "VTM-2026-000001")


async def test_colleague_replying_to_the_customers_first_mail_is_threaded(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(message_id="root@klant.example"), "test")
    outcome = await gateway.pipeline.ingest(
        make_mail(
            sender="kees@klant.example", subject="Re: Storing", references="<root@klant.example>"
        ),
        "test",
    )
    assert (outcome.kind, outcome.reference) == ("article", "VTM-2026-000001")


async def test_reply_with_reference_from_stranger_opens_new_linked_ticket(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "test")
    outcome = await gateway.pipeline.ingest(
        make_mail(sender="mallory@elders.example", subject="Re: [VTM-2026-000001] Storing"), "test"
    )
    assert (outcome.kind, outcome.reference) == ("ticket", "VTM-2026-000002")
    new = await detail(gateway, "VTM-2026-000002")
    assert new["linked_to"] == "VTM-2026-000001"
    assert new["subject"] == "Storing"
    assert (await detail(gateway, "VTM-2026-000001"))["article_count"] == 1
    # The stranger hears about their own ticket only.
    rows = await outbox_rows(gateway)
    to_stranger = [r for r in rows if r.recipient == "mallory@elders.example"]
    assert len(to_stranger) == 1
    assert "VTM-2026-000001" not in to_stranger[0].subject + to_stranger[0].body_text


async def test_colleague_from_same_organisation_may_add_to_a_ticket(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "test")
    outcome = await gateway.pipeline.ingest(
        make_mail(sender="kees@klant.example", subject="Re: [VTM-2026-000001]"), "test"
    )
    assert (outcome.kind, outcome.reference) == ("article", "VTM-2026-000001")


async def test_same_public_mail_domain_is_no_organisation(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(sender="jan@gmail.com"), "test")
    outcome = await gateway.pipeline.ingest(
        make_mail(sender="someone@gmail.com", subject="Re: [VTM-2026-000001]"), "test"
    )
    assert outcome.kind == "ticket"


async def test_same_message_twice_changes_nothing_the_second_time(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    raw = make_mail()
    first = await gateway.pipeline.ingest(raw, "imap:desk:1")
    before = await counts(gateway)
    second = await gateway.pipeline.ingest(raw, "smtp:listener")
    assert (first.kind, second.kind) == ("ticket", "duplicate")
    assert await counts(gateway) == before


async def test_copy_with_the_same_message_id_is_kept_as_a_duplicate_and_changes_nothing(
    make_gateway: GatewayFactory,
) -> None:
    """The same mail by another way (other Received lines): recorded, not acted on."""
    gateway = await make_gateway()
    raw = make_mail()
    await gateway.pipeline.ingest(raw, "imap:desk:1")
    before = await counts(gateway)
    relayed = raw.replace(b"Date:", b"X-Relayed: yes\r\nDate:")
    outcome = await gateway.pipeline.ingest(relayed, "lmtp:desk")
    again = await gateway.pipeline.ingest(relayed, "lmtp:desk")
    assert (outcome.kind, again.kind) == ("duplicate", "duplicate")
    assert outcome.reason == "same Message-ID as message 1"
    assert await counts(gateway) == {**before, "inbound": before["inbound"] + 1}
    async with gateway.sessions() as session:
        copy = await session.scalar(
            select(InboundMessage).where(InboundMessage.outcome == "duplicate")
        )
    assert copy is not None and copy.source == "lmtp:desk" and copy.ticket_id is not None


async def test_unparseable_message_is_quarantined_and_the_next_one_goes_through(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    bad = await gateway.pipeline.ingest(b"Subject: no sender at all\r\n\r\nhello\r\n", "test")
    good = await gateway.pipeline.ingest(make_mail(), "test")
    assert bad.kind == "quarantined"
    assert "no sender" in (bad.reason or "")
    assert good.kind == "ticket"
    assert (await counts(gateway))["quarantine"] == 1


async def test_processing_error_rolls_back_and_quarantines(
    make_gateway: GatewayFactory, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    broken = tmp_path / "templates"
    (broken / "nl").mkdir(parents=True)
    (broken / "nl" / "created.txt").write_text("{% block subject %}{{ missing }}{% endblock %}")
    gateway = await make_gateway(templates_dir=str(broken))
    outcome = await gateway.pipeline.ingest(make_mail(), "test")
    assert outcome.kind == "quarantined"
    assert outcome.reason is not None and outcome.reason.startswith("template")
    assert (await counts(gateway)) == {
        "tickets": 0,
        "articles": 0,
        "inbound": 0,
        "outbox": 0,
        "quarantine": 1,
    }


async def test_auto_reply_is_recorded_and_never_answered(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    outcome = await gateway.pipeline.ingest(
        make_mail(subject="Afwezig: Storing", headers={"Auto-Submitted": "auto-replied"}), "test"
    )
    assert (outcome.kind, outcome.reason) == ("ignored", "auto_submitted")
    c = await counts(gateway)
    assert (c["inbound"], c["tickets"], c["outbox"]) == (1, 0, 0)


async def test_answer_while_awaiting_customer_resumes_work_and_tells_the_team(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(to="noc@vtm.example"), "test")
    await set_status(gateway, "VTM-2026-000001", Status.AWAITING_CUSTOMER, clock())
    await gateway.pipeline.ingest(make_mail(subject="Re: [VTM-2026-000001]", body="Poort 3"), "t")
    ticket = await detail(gateway, "VTM-2026-000001")
    assert ticket["status"] == "in_progress"
    events = [(r.event, r.recipient) for r in await outbox_rows(gateway)]
    assert ("info_needed", "jan@klant.example") in events
    assert ("info_added", "jan@klant.example") in events
    assert ("team_notice", "noc-team@vtm.example") in events


async def test_akkoord_closes_and_niet_akkoord_resumes(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    await gateway.pipeline.ingest(make_mail(subject="Tweede melding"), "t")
    await set_status(gateway, "VTM-2026-000001", Status.AWAITING_ACCEPTANCE, clock())
    await set_status(gateway, "VTM-2026-000002", Status.AWAITING_ACCEPTANCE, clock())
    await gateway.pipeline.ingest(
        make_mail(subject="Re: [VTM-2026-000001]", body="Akkoord, bedankt!"), "t"
    )
    await gateway.pipeline.ingest(
        make_mail(subject="Re: [VTM-2026-000002]", body="Niet akkoord, nog steeds traag"), "t"
    )
    first = await detail(gateway, "VTM-2026-000001")
    second = await detail(gateway, "VTM-2026-000002")
    assert first["status"] == "closed"
    assert first["closed_at"] is not None
    assert second["status"] == "in_progress"
    assert first["history"][-1]["reason"] == "accepted"
    closed = [r for r in await outbox_rows(gateway) if r.event == "closed"]
    assert len(closed) == 1 and "Dank voor uw akkoord" in closed[0].body_text


async def test_closed_ticket_reopens_within_window_and_links_after_it(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    await set_status(gateway, "VTM-2026-000001", Status.CLOSED, clock())
    clock.advance(days=13)
    reopened = await gateway.pipeline.ingest(make_mail(subject="Re: [VTM-2026-000001]"), "t")
    assert (reopened.kind, reopened.reason) == ("article", "reopened")
    assert (await detail(gateway, "VTM-2026-000001"))["status"] == "in_progress"

    await set_status(gateway, "VTM-2026-000001", Status.CLOSED, clock())
    clock.advance(days=15)
    late = await gateway.pipeline.ingest(make_mail(subject="Re: [VTM-2026-000001] Storing"), "t")
    assert (late.kind, late.reference) == ("ticket", "VTM-2026-000002")
    assert (await detail(gateway, "VTM-2026-000002"))["linked_to"] == "VTM-2026-000001"
    assert (await detail(gateway, "VTM-2026-000001"))["status"] == "closed"


async def test_agent_reply_reaches_requester_and_participants_threaded(
    make_gateway: GatewayFactory, sink: SmtpSink, clock: Clock
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(
        make_mail(cc="piet@klant.example", message_id="root@klant.example"), "t"
    )
    async with gateway.sessions() as session, session.begin():
        ticket = await get_ticket(session, "VTM-2026-000001")
        await agent_reply(
            session,
            gateway.desk,
            ticket,
            agent="eva@vtm.example",
            body="Welke poort?",
            now=clock(),
            status=Status.AWAITING_CUSTOMER,
        )
    await gateway.relay.send_due()
    received = await sink.wait_for(3)
    replies = [r for r in received if "meer informatie" in str(r.message["Subject"])]
    assert sorted(r.recipients[0] for r in replies) == ["jan@klant.example", "piet@klant.example"]
    assert all(r.message["In-Reply-To"] == "<root@klant.example>" for r in replies)
    assert "Welke poort?" in replies[0].message.get_body(("plain",)).get_content()
    ticket_view = await detail(gateway, "VTM-2026-000001")
    assert ticket_view["status"] == "awaiting_customer"
    assert ticket_view["articles"][-1]["kind"] == "agent"
    assert ticket_view["articles"][-1]["direction"] == "out"


async def test_references_stay_unique_when_tickets_open_concurrently(
    make_gateway: GatewayFactory, clock: Clock
) -> None:
    gateway = await make_gateway()

    async def open_one(i: int) -> str:
        async with gateway.sessions() as session, session.begin():
            ticket = await open_ticket(
                session,
                gateway.desk,
                subject=f"t{i}",
                requester=f"c{i}@klant.example",
                team="noc",
                now=clock(),
            )
            return ticket.reference

    refs = await asyncio.gather(*(open_one(i) for i in range(20)))
    assert sorted(refs) == [f"VTM-2026-{n:06d}" for n in range(1, 21)]


async def test_two_processes_taking_in_the_same_mail_at_once_make_one_ticket(
    make_gateway: GatewayFactory,
) -> None:
    """Two daemons (own engines) get the same mail by two ways at the same moment."""
    first, second = await make_gateway(), await make_gateway()
    raw = make_mail()
    relayed = raw.replace(b"Date:", b"X-Relayed: yes\r\nDate:")
    outcomes = await asyncio.gather(
        first.pipeline.ingest(raw, "imap:desk:1"), second.pipeline.ingest(relayed, "lmtp:desk")
    )
    assert sorted(o.kind for o in outcomes) == ["duplicate", "ticket"]
    c = await counts(first)
    assert (c["tickets"], c["articles"], c["outbox"], c["quarantine"]) == (1, 1, 1, 0)


async def test_reply_shows_its_new_part_and_keeps_the_whole_text(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(), "t")
    reply = (REPLIES / "outlook_nl.txt").read_text(encoding="utf-8")
    outcome = await gateway.pipeline.ingest(
        make_mail(
            subject="RE: [VTM-2026-000001] Storing", body=reply, message_id="r1@klant.example"
        ),
        "t",
    )
    assert outcome.kind == "article"
    article = (await detail(gateway, "VTM-2026-000001"))["articles"][-1]
    assert article["body"] == (REPLIES / "outlook_nl.expected.txt").read_text().strip()
    assert article["full_body"].startswith("Goedemiddag") and "Verzonden:" in article["full_body"]
    first = (await detail(gateway, "VTM-2026-000001"))["articles"][0]
    assert first["full_body"] == first["body"]  # nothing quoted: one text
