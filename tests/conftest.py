"""Shared fixtures: both databases, a private Dovecot, an SMTP sink, a gateway."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from gateway.app import Gateway, build
from gateway.store import migrate
from gateway.store.db import create_engine
from gateway.store.models import Base
from tests.support.dovecot import Dovecot, ImapAccount
from tests.support.settings import Clock, make_settings
from tests.support.sink import SmtpSink

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
BACKENDS = ["sqlite", "postgresql"]


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await migrate.upgrade(engine)
    finally:
        await engine.dispose()


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database of our own on the test PostgreSQL server, migrated once per run."""
    base = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG_URL)
    name = f"gw_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(base))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        asyncio.run(_migrate(url))
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    return path


def _truncate_all(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)

    async def run() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(url))
        try:
            await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database: each test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "gateway.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("pg_url")
    _truncate_all(url)
    return url


def _private_dovecot() -> Iterator[Dovecot]:
    # Not under pytest's tmp_path: that is mode 0700, and Dovecot's mail processes run
    # as an unprivileged uid that must reach the maildirs.
    directory = Path(tempfile.mkdtemp(prefix="tg-dovecot-"))
    server = Dovecot(directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    yield from _private_dovecot()


@pytest.fixture(scope="module")
def lone_dovecot() -> Iterator[Dovecot]:
    """A Dovecot of one's own, for tests that fail logins: Dovecot slows every later
    login from the same address after a failed one."""
    yield from _private_dovecot()


@pytest.fixture
def imap_account(dovecot: Dovecot) -> ImapAccount:
    """A fresh, empty IMAP account on the private Dovecot."""
    return dovecot.new_account()


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    server = SmtpSink()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


GatewayFactory = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_gateway(db_url: str, sink: SmtpSink, clock: Clock) -> AsyncIterator[GatewayFactory]:
    """Build gateways on the test database, mailing to the sink, on the test clock."""
    built: list[Gateway] = []

    async def factory(**kwargs: Any) -> Gateway:
        kwargs.setdefault("sink_port", sink.port)
        gateway = build(make_settings(db_url, **kwargs), clock=clock)
        built.append(gateway)
        return gateway

    yield factory
    for gateway in built:
        await gateway.close()
