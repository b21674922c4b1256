"""Rows written with one prebuilt INSERT behave as if the session had written them, and
entities loaded on the driver as if the session had loaded them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.store import direct, prepared
from gateway.store.models import Contact, Organisation

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


async def test_an_added_row_takes_column_defaults_and_is_tracked_like_a_loaded_one(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        contact = Contact(address="jan@kweker-a.example", language="nl", created_at=NOW)
        await prepared.add(session, contact)
        assert contact.id is not None
        assert contact.name == ""  # the column default, on the object and in the row
        assert contact.organisation_id is None  # unset, no default: NULL, not unloaded
        assert contact in session and contact not in session.new
        contact.name = "Jan de Vries"  # a later change is flushed like any other
    async with sessions() as session:
        row = (await session.execute(select(Contact.name, Contact.id))).one()
        assert row == ("Jan de Vries", contact.id)


async def test_added_rows_are_visible_to_queries_in_the_same_transaction(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        org = Organisation(
            number="1001",
            name="Kwekerij A",
            contract="sla",
            billing="invoice",
            created_at=NOW,
            updated_at=NOW,
        )
        await prepared.add(session, org)
        found = await session.scalar(select(Organisation).where(Organisation.number == "1001"))
        assert found is org  # the identity map holds the added object


CONTACT_AND_ORGANISATION = (
    select(Contact, Organisation)
    .outerjoin(Organisation, Organisation.id == Contact.organisation_id)
    .where(Contact.address == bindparam("address"))
)
CONTACTS_IN = select(Contact).where(Contact.address.in_(bindparam("addresses", expanding=True)))


async def _organisation_with_contacts(session: AsyncSession) -> Organisation:
    org = Organisation(
        number="1001",
        name="Kwekerij A",
        contract="sla",
        billing="invoice",
        created_at=NOW,
        updated_at=NOW,
    )
    await prepared.add(session, org)
    for address, org_id in (("jan@kweker-a.example", org.id), ("los@elders.example", None)):
        await prepared.add(
            session,
            Contact(address=address, language="nl", created_at=NOW, organisation_id=org_id),
        )
    return org


async def test_loaded_entities_are_attached_as_if_the_orm_had_loaded_them(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await _organisation_with_contacts(session)
    async with sessions() as session, session.begin():
        ((contact, org),) = await prepared.load(
            session,
            CONTACT_AND_ORGANISATION,
            {"address": "jan@kweker-a.example"},
            Contact,
            Organisation,
        )
        assert (contact.address, contact.language, org.number) == (
            "jan@kweker-a.example",
            "nl",
            "1001",
        )
        assert contact.created_at == NOW  # the column type's result processing
        assert contact in session and not session.dirty and not session.new
        assert await session.get(Contact, contact.id) is contact  # in the identity map
        contact.name = "Jan de Vries"  # changed later: flushed like any loaded object
    async with sessions() as session:
        assert await session.scalar(select(Contact.name).where(Contact.id == contact.id)) == (
            "Jan de Vries"
        )


async def test_an_outer_joined_entity_without_a_row_loads_as_none(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await _organisation_with_contacts(session)
        rows = await prepared.load(
            session,
            CONTACT_AND_ORGANISATION,
            {"address": "los@elders.example"},
            Contact,
            Organisation,
        )
        assert [(c.address, o) for c, o in rows] == [("los@elders.example", None)]
        missing = await prepared.load_one(
            session, CONTACT_AND_ORGANISATION, {"address": "nobody@x.example"}, Contact
        )
        assert missing is None


async def test_an_entity_the_session_holds_is_returned_with_its_unsaved_changes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        org = await _organisation_with_contacts(session)
        org.name = "Kwekerij A (nieuw)"  # not written yet
        ((_contact, again),) = await prepared.load(
            session,
            CONTACT_AND_ORGANISATION,
            {"address": "jan@kweker-a.example"},
            Contact,
            Organisation,
        )
        assert again is org and again.name == "Kwekerij A (nieuw)"


async def test_entities_load_through_sqlalchemy_where_the_driver_plan_cannot(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await _organisation_with_contacts(session)
    fallbacks = direct.fallbacks
    async with sessions() as session, session.begin():
        rows = await prepared.load(
            session,
            CONTACTS_IN.order_by(Contact.address),
            {"addresses": ["jan@kweker-a.example", "los@elders.example"]},
            Contact,
        )
        assert direct.fallbacks == fallbacks + 1  # the expanding IN list
        assert [c.address for (c,) in rows] == ["jan@kweker-a.example", "los@elders.example"]
        assert all(c in session and c.created_at == NOW for (c,) in rows)
