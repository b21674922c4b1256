"""Schema migrations carry existing data over, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.store import migrate
from gateway.store.db import create_engine
from tests.support.databases import create_database, drop_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def empty_engine(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[AsyncEngine]:  # type: ignore[no-untyped-def]
    """An engine on a database with no schema at all."""
    if request.param == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/old.db")
        yield engine
        await engine.dispose()
        return
    url = await create_database("gw_migr")
    engine = create_engine(url)
    try:
        yield engine
    finally:
        await engine.dispose()
        await drop_database(url)


OLD_ROWS = [
    "INSERT INTO mailbox_cursors VALUES ('desk', 7, 41, '2026-03-01 10:00:00')",
    "INSERT INTO tickets (id, reference, subject, status, team, requester, language, "
    "priority_overridden, created_at, updated_at, article_count) VALUES (1, 'VTM-2026-000001',"
    " 'x', 'open', 'noc', 'a@b.example', 'nl', false, '2026-03-01', '2026-03-01', 1)",
    "INSERT INTO inbound_messages (id, sha256, message_id, source, size, received_at, outcome) "
    "VALUES (1, 'a', 'm1@b.example', 'imap:desk:40', 10, '2026-03-01', 'ticket'), "
    "(2, 'b', 'm1@b.example', 'smtp', 12, '2026-03-01', 'article')",
    "INSERT INTO outbox (id, ticket_id, event, dedupe_key, recipient, reply_to, subject, "
    "body_text, body_html, message_id, auto_submitted, state, attempts, next_attempt_at, "
    "created_at) VALUES (1, 1, 'created', 'k1', 'a@b.example', 'noc@vtm.example', 's', 't', "
    "'h', 'n1@vtm.example', 'auto-replied', 'sending', 1, '2026-03-01', '2026-03-01')",
]


CURSORS = "SELECT mailbox, uidvalidity, last_uid FROM mailbox_cursors"


async def write(engine: AsyncEngine, *statements: str) -> None:
    async with engine.begin() as conn:
        for sql in statements:
            await conn.execute(text(sql))


async def rows(engine: AsyncEngine, sql: str) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(text(sql))).all()]


async def test_upgrade_keeps_the_cursor_and_doubts_what_was_in_delivery(
    empty_engine: AsyncEngine,
) -> None:
    await migrate.upgrade(empty_engine, "0001")
    await write(empty_engine, *OLD_ROWS)
    await migrate.upgrade(empty_engine)
    assert await rows(
        empty_engine, "SELECT mailbox, uidvalidity, uid, acked FROM mailbox_uids"
    ) == [("desk", 7, 41, True)]
    assert await rows(empty_engine, "SELECT state FROM outbox") == [("unknown",)]
    # The second copy of m1 (possible before) is a recorded duplicate, the first untouched.
    assert await rows(empty_engine, "SELECT id, outcome FROM inbound_messages ORDER BY id") == [
        (1, "ticket"),
        (2, "duplicate"),
    ]

    await migrate.downgrade(empty_engine, "0001")
    assert await rows(empty_engine, CURSORS) == [("desk", 7, 41)]
    assert await rows(empty_engine, "SELECT state FROM outbox") == [("failed",)]


async def test_downgrade_after_a_uidvalidity_change_keeps_the_newest_cursor(
    empty_engine: AsyncEngine,
) -> None:
    await migrate.upgrade(empty_engine)
    await write(
        empty_engine,
        "INSERT INTO mailbox_uids VALUES ('desk', 7, 41, 'ticket', true, '2026-03-01'),"
        " ('desk', 9, 3, 'ticket', true, '2026-03-02')",
    )
    await migrate.downgrade(empty_engine, "0001")
    assert await rows(empty_engine, CURSORS) == [("desk", 9, 3)]


async def test_downgrade_from_0003_gives_articles_back_their_whole_text(
    empty_engine: AsyncEngine,
) -> None:
    await migrate.upgrade(empty_engine, "0001")
    await write(empty_engine, OLD_ROWS[1])  # a ticket
    await migrate.upgrade(empty_engine)
    await write(
        empty_engine,
        "INSERT INTO articles (ticket_id, direction, author, kind, public, subject, body,"
        " full_body, created_at) VALUES (1, 'in', 'a@b.example', 'customer', true, 's',"
        " 'nieuw', 'nieuw\n> oud', '2026-03-01')",
    )
    await migrate.downgrade(empty_engine, "0002")
    assert await rows(empty_engine, "SELECT body FROM articles") == [("nieuw\n> oud",)]


async def test_head_schema_matches_the_models(empty_engine: AsyncEngine) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from gateway.store.models import Base

    await migrate.upgrade(empty_engine)

    def diff(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={"compare_type": False})
        return compare_metadata(context, Base.metadata)

    async with empty_engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_0004_makes_one_message_id_key_and_downgrade_keeps_suppressed_as_failed(
    empty_engine: AsyncEngine,
) -> None:
    await migrate.upgrade(empty_engine, "0003")
    await write(empty_engine, OLD_ROWS[1])
    await migrate.upgrade(empty_engine)
    ((name, length),) = await rows(empty_engine, "SELECT name, length(value) FROM desk_secrets")
    assert (name, length) == ("message_id_key", 64)
    await write(
        empty_engine,
        "INSERT INTO outbox (id, ticket_id, event, dedupe_key, recipient, reply_to, subject, "
        "body_text, body_html, message_id, auto_submitted, state, attempts, next_attempt_at, "
        "created_at, last_error) VALUES (1, 1, 'created', 'k1', 'a@b.example', "
        "'noc@vtm.example', 's', 't', 'h', 'n1@vtm.example', 'auto-replied', 'suppressed', 0, "
        "'2026-03-01', '2026-03-01', 'rate limit')",
    )
    await migrate.downgrade(empty_engine, "0003")
    assert await rows(empty_engine, "SELECT state, last_error FROM outbox") == [
        ("failed", "rate limit")
    ]


async def test_every_migration_downgrades_and_upgrades_again(empty_engine: AsyncEngine) -> None:
    await migrate.upgrade(empty_engine)
    await write(empty_engine, OLD_ROWS[1])  # a ticket survives the round trip
    await migrate.downgrade(empty_engine, "0001")
    await migrate.upgrade(empty_engine)
    assert await rows(empty_engine, "SELECT reference FROM tickets") == [("VTM-2026-000001",)]
    assert await migrate.is_up_to_date(empty_engine)
