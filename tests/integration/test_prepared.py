"""Rows written with one prebuilt INSERT behave as if the session had written them."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from gateway.store import prepared
from gateway.store.db import create_engine, session_factory
from gateway.store.models import Contact, Organisation

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


async def test_an_added_row_takes_column_defaults_and_is_tracked_like_a_loaded_one(
    db_url: str,
) -> None:
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    try:
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
    finally:
        await engine.dispose()


async def test_added_rows_are_visible_to_queries_in_the_same_transaction(db_url: str) -> None:
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    try:
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
    finally:
        await engine.dispose()
