"""Databases of their own on the test PostgreSQL server, for the tests and benchmarks.

The server is TEST_DATABASE_URL (default: the machine's PostgreSQL, user postgres).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from sqlalchemy.engine import make_url

from gateway.store import migrate
from gateway.store.db import create_engine

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def server_url() -> str:
    return os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)


def asyncpg_dsn(url: str) -> str:
    """The SQLAlchemy URL as a DSN asyncpg itself takes."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def execute(url: str, sql: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def create_database(prefix: str) -> str:
    """A new, empty database with a unique name; its SQLAlchemy URL."""
    base = server_url()
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    await execute(base, f'CREATE DATABASE "{name}"')
    return make_url(base).set(database=name).render_as_string(hide_password=False)


async def drop_database(url: str) -> None:
    name = make_url(url).database
    await execute(server_url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def migrate_to_head(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


@contextmanager
def scratch_pg_database(prefix: str, *, migrated: bool = True) -> Iterator[str]:
    """A database of its own (migrated unless told otherwise), dropped afterwards."""
    url = asyncio.run(create_database(prefix))
    try:
        if migrated:
            asyncio.run(migrate_to_head(url))
        yield url
    finally:
        asyncio.run(drop_database(url))
