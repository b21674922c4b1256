"""A reference is not a key: who may add to a ticket, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from gateway.store.models import InboundMessage
from tests.conftest import GatewayFactory
from tests.integration.helpers import counts, detail, outbox_rows
from tests.support.mails import make_mail

REF = "VTM-2026-000001"


async def opened(make_gateway: GatewayFactory, **access: Any) -> Any:
    """A gateway with one ticket, opened by jan@klant.example."""
    gateway = await make_gateway(sections={"access": access} if access else None)
    await gateway.pipeline.ingest(make_mail(message_id="first@klant.example"), "test")
    return gateway


async def test_a_stranger_naming_a_reference_gets_a_new_ticket_linked_for_the_agents(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await opened(make_gateway)
    outcome = await gateway.pipeline.ingest(
        make_mail(sender="mallory@elders.example", subject=f"Re: [{REF}] Storing glasvezel Leiden"),
        "test",
    )
    assert outcome.kind == "ticket" and outcome.reference == "VTM-2026-000002"
    assert outcome.reason == "stranger"
    new = await detail(gateway, "VTM-2026-000002")
    assert new["linked_to"] == REF
    assert new["subject"] == "Storing glasvezel Leiden"  # the other ticket's tag is gone
    assert "mallory@elders.example, who is not on VTM-2026-000001" in new["history"][0]["reason"]
    assert (await detail(gateway, REF))["article_count"] == 1
    notice = (await outbox_rows(gateway))[-1]
    assert notice.recipient == "mallory@elders.example"
    assert REF not in notice.subject and REF not in notice.body_text and REF not in notice.body_html


async def test_the_requesters_colleague_at_the_same_domain_adds_to_the_ticket(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await opened(make_gateway)
    outcome = await gateway.pipeline.ingest(
        make_mail(sender="piet@klant.example", subject=f"Re: [{REF}] Storing"), "test"
    )
    assert (outcome.kind, outcome.reference) == ("article", REF)


async def test_same_domain_can_be_switched_off(make_gateway: GatewayFactory) -> None:
    gateway = await opened(make_gateway, same_domain=False)
    outcome = await gateway.pipeline.ingest(
        make_mail(sender="piet@klant.example", subject=f"Re: [{REF}] Storing"), "test"
    )
    assert outcome.kind == "ticket" and outcome.reason == "stranger"


async def test_a_configured_organisation_spans_its_domains(make_gateway: GatewayFactory) -> None:
    gateway = await opened(make_gateway, organisations=[["klant.example", "klant-groep.example"]])
    outcome = await gateway.pipeline.ingest(
        make_mail(sender="kees@klant-groep.example", subject=f"Re: [{REF}] Storing"), "test"
    )
    assert (outcome.kind, outcome.reference) == ("article", REF)


async def test_public_mail_domains_are_not_one_organisation(make_gateway: GatewayFactory) -> None:
    gateway = await make_gateway()
    await gateway.pipeline.ingest(make_mail(sender="jan@gmail.com"), "test")
    outcome = await gateway.pipeline.ingest(
        make_mail(sender="someone@gmail.com", subject=f"Re: [{REF}] Storing"), "test"
    )
    assert outcome.kind == "ticket" and outcome.reason == "stranger"


async def test_internal_note_policy_keeps_a_strangers_mail_for_agents_and_tells_nobody(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await opened(make_gateway, strangers="internal_note")
    before = len(await outbox_rows(gateway))
    outcome = await gateway.pipeline.ingest(
        make_mail(sender="mallory@elders.example", subject=f"[{REF}] geef mij de gegevens"), "test"
    )
    assert (outcome.kind, outcome.reference, outcome.reason) == ("article", REF, "stranger_note")
    ticket = await detail(gateway, REF)
    note = ticket["articles"][-1]
    assert (note["kind"], note["public"], note["author"]) == (
        "stranger",
        False,
        "mallory@elders.example",
    )
    assert ticket["status"] == "open"
    assert len(await outbox_rows(gateway)) == before


async def test_ignore_policy_records_a_strangers_mail_against_the_ticket_it_named(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await opened(make_gateway, strangers="ignore")
    outcome = await gateway.pipeline.ingest(
        make_mail(sender="mallory@elders.example", subject=f"[{REF}] hallo"), "test"
    )
    assert (outcome.kind, outcome.reason) == ("ignored", "stranger")
    assert (await counts(gateway))["tickets"] == 1
    async with gateway.sessions() as session:
        row = (await session.scalars(select(InboundMessage).order_by(InboundMessage.id))).all()[-1]
    assert (row.outcome, row.reason, row.ticket_id) == ("ignored", "stranger", 1)


async def test_an_agents_copy_is_kept_on_the_ticket_without_changing_it(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await opened(make_gateway, agents=["@vtm.example"])
    before = len(await outbox_rows(gateway))
    outcome = await gateway.pipeline.ingest(
        make_mail(
            sender="Anna <anna@vtm.example>",
            to="jan@klant.example",
            cc="business@vtm.example",
            subject=f"RE: [{REF}] Storing glasvezel Leiden",
            body="We hebben een monteur ingepland.\n",
        ),
        "test",
    )
    assert (outcome.kind, outcome.reason) == ("article", "agent")
    ticket = await detail(gateway, REF)
    assert ticket["articles"][-1]["kind"] == "agent"
    assert ticket["status"] == "open"
    assert ticket["participants"] == []  # the customer in To: is the requester already
    assert len(await outbox_rows(gateway)) == before


async def test_a_forged_in_reply_to_in_our_domain_attaches_nothing(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await opened(make_gateway)
    (notice,) = await outbox_rows(gateway)
    head, _, domain = notice.message_id.partition("@")
    reference, nonce, mac = head.split(".")
    forged = f"{reference}.{'f' * len(nonce)}.{mac}@{domain}"
    outcome = await gateway.pipeline.ingest(
        make_mail(subject="Iets anders", in_reply_to=forged), "test"
    )
    assert (outcome.kind, outcome.reference) == ("ticket", "VTM-2026-000002")


async def test_a_mail_carrying_our_own_message_id_is_our_own_loop(
    make_gateway: GatewayFactory,
) -> None:
    gateway = await opened(make_gateway)
    (notice,) = await outbox_rows(gateway)
    outcome = await gateway.pipeline.ingest(
        make_mail(sender="jan@klant.example", message_id=notice.message_id), "test"
    )
    assert (outcome.kind, outcome.reason) == ("ignored", "own_message_id")


async def test_every_daemon_on_one_database_signs_with_the_same_key(
    make_gateway: GatewayFactory,
) -> None:
    first = await opened(make_gateway)
    (notice,) = await outbox_rows(first)
    second = await make_gateway()
    async with second.sessions() as session:
        signer = await second.desk.message_ids.signer(session)
    assert signer.is_own(notice.message_id)


async def test_a_configured_key_file_signs_and_a_previous_key_still_verifies(
    make_gateway: GatewayFactory, tmp_path: Any
) -> None:
    old, new = tmp_path / "old.key", tmp_path / "new.key"
    old.write_text("o" * 32)
    new.write_text("n" * 32)
    before = await make_gateway(sections={"security": {"message_id_key_file": str(old)}})
    await before.pipeline.ingest(make_mail(message_id="first@klant.example"), "test")
    (notice,) = await outbox_rows(before)
    rotated = await make_gateway(
        sections={
            "security": {
                "message_id_key_file": str(new),
                "previous_message_id_key_files": [str(old)],
            }
        }
    )
    outcome = await rotated.pipeline.ingest(
        make_mail(subject="antwoord", in_reply_to=notice.message_id), "test"
    )
    assert (outcome.kind, outcome.reference) == ("article", REF)
