"""Shared fixtures: both databases, a private Dovecot, an SMTP sink, a gateway."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.app import Gateway, build
from gateway.store.db import create_engine, session_factory
from gateway.store.models import Base
from tests.support.databases import execute, migrate_to_head, scratch_pg_database
from tests.support.dovecot import Dovecot, ImapAccount
from tests.support.settings import Clock, make_settings
from tests.support.sink import SmtpSink

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A database of our own on the test PostgreSQL server, migrated once per run."""
    with scratch_pg_database("gw_test") as url:
        yield url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    asyncio.run(migrate_to_head(f"sqlite+aiosqlite:///{path}"))
    return path


def _truncate_all(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)

    asyncio.run(execute(url, f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


@pytest.fixture
async def sessions(db_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the test database, through an engine of their own."""
    engine = create_engine(db_url)
    yield session_factory(engine)
    await engine.dispose()


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
