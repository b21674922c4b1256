"""Prebuilt statements run on the driver (store/direct.py) behave as through SQLAlchemy:
same transaction, same types, same exceptions; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.exc import (
    IntegrityError,
    InvalidRequestError,
    MultipleResultsFound,
    NoResultFound,
    StatementError,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.store import direct, prepared
from gateway.store.models import Contact
from gateway.store.prepared import table_of
from tests.conftest import GatewayFactory
from tests.support.mails import make_mail

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
CONTACTS = table_of(Contact)
ADD_CONTACT = insert(CONTACTS).returning(CONTACTS.c.id)
CREATED_OF = select(CONTACTS.c.created_at).where(CONTACTS.c.address == bindparam("address"))
RENAME = (
    update(CONTACTS)
    .where(CONTACTS.c.address == bindparam("old_address"))
    .values(name=bindparam("new_name"))
)
ADDRESSES_IN = select(CONTACTS.c.address).where(
    CONTACTS.c.address.in_(bindparam("addresses", expanding=True))
)


def contact(address: str, **values: object) -> dict[str, object]:
    return {"address": address, "name": "", "language": "nl", "created_at": NOW, **values}


async def contacts_stored(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(CONTACTS)) or 0)


async def test_an_insert_runs_on_the_driver_and_commits_with_the_session(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    runs, fallbacks = direct.direct_runs, direct.fallbacks
    async with sessions() as session, session.begin():
        first = (await prepared.execute(session, ADD_CONTACT, contact("a@x.example"))).scalar_one()
        second = (await prepared.execute(session, ADD_CONTACT, contact("b@x.example"))).scalar_one()
        assert second > first
        # visible to SQLAlchemy's own queries in the same transaction
        assert await session.scalar(select(func.count()).select_from(CONTACTS)) == 2
    assert (direct.direct_runs - runs, direct.fallbacks - fallbacks) == (2, 0)
    assert await contacts_stored(sessions) == 2


async def test_the_first_statement_of_a_transaction_is_inside_it_and_rolls_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """asyncpg begins lazily: a driver statement first in a transaction must begin it,
    or it would autocommit."""
    with pytest.raises(RuntimeError):
        async with sessions() as session, session.begin():
            await prepared.execute(session, ADD_CONTACT, contact("a@x.example"))
            raise RuntimeError("the message failed")
    assert await contacts_stored(sessions) == 0


async def test_each_transaction_of_one_session_gets_its_own_connection(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        async with session.begin():
            await prepared.execute(session, ADD_CONTACT, contact("a@x.example"))
        with pytest.raises(RuntimeError):
            async with session.begin():
                await prepared.execute(session, ADD_CONTACT, contact("b@x.example"))
                raise RuntimeError("rolled back")
        async with session.begin():
            await prepared.execute(session, ADD_CONTACT, contact("c@x.example"))
    async with sessions() as session:
        stored = set(await session.scalars(select(CONTACTS.c.address)))
    assert stored == {"a@x.example", "c@x.example"}


async def test_a_driver_error_is_raised_as_sqlalchemys_and_the_session_recovers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session:
        async with session.begin():
            await prepared.execute(session, ADD_CONTACT, contact("a@x.example"))
        with pytest.raises(IntegrityError):  # contacts.address is unique
            async with session.begin():
                await prepared.execute(session, ADD_CONTACT, contact("a@x.example"))
        async with session.begin():
            await prepared.execute(session, ADD_CONTACT, contact("b@x.example"))
    assert await contacts_stored(sessions) == 2


async def test_type_processors_apply_both_ways(sessions: async_sessionmaker[AsyncSession]) -> None:
    """UTCDateTime stores naive UTC and gives back aware datetimes, and refuses naive
    ones, on the driver path as through SQLAlchemy."""
    amsterdam = datetime.fromisoformat("2026-11-26T10:00:00+01:00")
    async with sessions() as session, session.begin():
        await prepared.execute(session, ADD_CONTACT, contact("a@x.example", created_at=amsterdam))
        created = (
            await prepared.execute(session, CREATED_OF, {"address": "a@x.example"})
        ).scalar_one()
    assert created == NOW and created.tzinfo == UTC
    with pytest.raises(StatementError, match="naive"):
        async with sessions() as session, session.begin():
            naive = contact("b@x.example", created_at=datetime(2026, 11, 26, 9, 0))
            await prepared.execute(session, ADD_CONTACT, naive)


async def test_an_update_reports_the_rows_it_changed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await prepared.execute(session, ADD_CONTACT, contact("a@x.example"))
        renamed = await prepared.execute(
            session, RENAME, {"old_address": "a@x.example", "new_name": "Jan"}
        )
        missed = await prepared.execute(
            session, RENAME, {"old_address": "nobody@x.example", "new_name": "Piet"}
        )
    assert (renamed.rowcount, missed.rowcount) == (1, 0)


async def test_a_missing_parameter_is_refused_before_the_database_sees_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        with pytest.raises(InvalidRequestError, match="new_name"):
            await prepared.execute(session, RENAME, {"old_address": "a@x.example"})


async def test_one_and_scalar_one_insist_on_exactly_one_row(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        nothing = await prepared.execute(session, CREATED_OF, {"address": "a@x.example"})
        assert nothing.first() is None and nothing.scalar() is None
        with pytest.raises(NoResultFound):
            nothing.scalar_one()
        for address in ("a@x.example", "b@x.example"):
            await prepared.execute(session, ADD_CONTACT, contact(address))
        both = await prepared.execute(
            session,
            select(CONTACTS.c.address).where(CONTACTS.c.language == bindparam("lang")),
            {"lang": "nl"},
        )
        with pytest.raises(MultipleResultsFound):
            both.one()


async def test_an_expanding_in_list_goes_through_sqlalchemy_and_parameter_sets_do_not(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        for address in ("a@x.example", "b@x.example", "c@x.example"):
            await prepared.execute(session, ADD_CONTACT, contact(address))
        fallbacks = direct.fallbacks
        found = await prepared.execute(
            session, ADDRESSES_IN, {"addresses": ["a@x.example", "c@x.example"]}
        )
        several = await prepared.execute(
            session, ADD_CONTACT, [contact("d@x.example"), contact("e@x.example")]
        )
    assert sorted(found.scalars()) == ["a@x.example", "c@x.example"]
    assert len(several.scalars()) == 2  # RETURNING: one execution per set
    assert direct.fallbacks - fallbacks == 1
    async with sessions() as session, session.begin():
        renames = [{"old_address": a, "new_name": "X"} for a in ("a@x.example", "b@x.example")]
        await prepared.execute(session, RENAME, renames)  # executemany on the driver
        named = await session.scalar(select(func.count()).where(CONTACTS.c.name == "X"))
    assert named == 2
    assert direct.fallbacks - fallbacks == 1


async def test_a_message_and_its_notification_run_no_prebuilt_statement_through_sqlalchemy(
    make_gateway: GatewayFactory,
) -> None:
    """Every prebuilt statement on the hot path compiles to a driver plan."""
    gateway = await make_gateway()
    fallbacks = direct.fallbacks
    first = await gateway.pipeline.ingest(make_mail(message_id="q1@klant.example"), "test")
    reply = make_mail(subject=f"Re: [{first.reference}] Storing", message_id="q2@klant.example")
    second = await gateway.pipeline.ingest(reply, "test")
    stats = await gateway.relay.send_due()
    assert (first.kind, second.kind, second.reference) == ("ticket", "article", first.reference)
    assert stats.sent == 2
    assert direct.fallbacks == fallbacks, [k for k, v in direct._plans.items() if v is None]
