"""Prebuilt statements run on the driver, compiled by SQLAlchemy once.

A Core statement executed through SQLAlchemy costs about 90 µs of Python on top of the
database's own work (3-5 µs for SQLite): the greenlet hop of the asyncio layer, the
statement's cache key, the execution context, parameter and result set-up. A message
takes about fifteen of them. The SQL itself does not change from one message to the
next, so here SQLAlchemy compiles each statement once per dialect and set of parameter
names (the SQL, the order of its parameters and their type processors), and every later
execution hands the parameters straight to the driver connection that the session's
transaction holds:

- SQLite: the sqlite3 connection under `sqlite_inline`, with its busy-wait retry.
- PostgreSQL: SQLAlchemy's own asyncpg adapter cursor, which begins the transaction if
  the session has not yet, prepares and caches the statement, and translates errors.

Driver errors are raised as SQLAlchemy's (`IntegrityError`, `OperationalError`, …), so
callers catch the same exceptions either way. What this plan does not cover (defaults
computed in Python, expanding IN lists) is run through
SQLAlchemy as before (counted in `fallbacks`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.base import Executable

from gateway.store.sqlite_inline import InlineConnection, retrying_busy

_REQUIRED = object()
_HANDLE = "gateway.direct"  # the key in session.info

Processor = Callable[[Any], Any]


class Rows:
    """A statement's rows, fetched, and its row count: the part of SQLAlchemy's Result
    the service layer uses."""

    __slots__ = ("_rows", "columns", "rowcount")

    def __init__(
        self, rows: Sequence[Sequence[Any]], rowcount: int, columns: tuple[Any, ...] = ()
    ) -> None:
        self._rows = rows
        self.rowcount = rowcount
        self.columns = columns  # the table Column of each returned column, where known

    def __iter__(self) -> Iterator[Sequence[Any]]:
        return iter(self._rows)

    def all(self) -> list[Sequence[Any]]:
        return list(self._rows)

    def first(self) -> Sequence[Any] | None:
        return self._rows[0] if self._rows else None

    def one(self) -> Sequence[Any]:
        if len(self._rows) != 1:
            raise _count_error(len(self._rows))
        return self._rows[0]

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]


def _count_error(count: int) -> exc.SQLAlchemyError:
    if count == 0:
        return exc.NoResultFound("No row was found when one was required")
    return exc.MultipleResultsFound("Multiple rows were found when exactly one was required")


@dataclass(frozen=True, slots=True)
class Plan:
    """One statement compiled for one dialect and set of parameter names."""

    sql: str
    # Per positional parameter: the key it is read from, its value when not given
    # (_REQUIRED: none), and the type's bind processor.
    binds: tuple[tuple[str, Any, Processor | None], ...]
    returns: bool
    results: tuple[Processor | None, ...]  # per returned column; empty: none needed
    columns: tuple[Any, ...]  # per returned column: the table Column it reads, or None

    def arguments(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        values = []
        for key, default, process in self.binds:
            value = params.get(key, default)
            if value is _REQUIRED:
                raise exc.InvalidRequestError(f"A value is required for bind parameter {key!r}")
            if process is not None and value is not None:
                try:
                    value = process(value)
                except Exception as error:
                    raise exc.StatementError(str(error), self.sql, params, error) from error
            values.append(value)
        return tuple(values)

    def rows(self, fetched: Sequence[Sequence[Any]]) -> Sequence[Sequence[Any]]:
        if not self.results:
            return fetched
        processors = self.results
        return [
            tuple(v if p is None else p(v) for p, v in zip(processors, row, strict=True))
            for row in fetched
        ]


def compile_plan(stmt: ClauseElement, dialect: Dialect, keys: tuple[str, ...]) -> Plan | None:
    """The plan for `stmt` with parameters named `keys`, or None where SQLAlchemy must
    run it: values computed at execution (Python-side defaults, callables), expanding
    IN lists, or bind names it had to escape."""
    compiled: Any = stmt.compile(dialect=dialect, column_keys=list(keys))
    if (
        not compiled.positional
        or compiled.insert_prefetch
        or compiled.update_prefetch
        or compiled.literal_execute_params
        or compiled.post_compile_params
        or compiled.escaped_bind_names
    ):
        return None
    by_name = {name: bind for bind, name in compiled.bind_names.items()}
    processors = compiled._bind_processors
    binds = []
    for name in compiled.positiontup:
        bind = by_name[name]
        if bind.callable is not None:
            return None
        key = bind.key if bind.key in keys or name not in keys else name
        default = _REQUIRED if bind.required else bind.value
        binds.append((key, default, processors.get(name)))
    returns = bool(compiled._result_columns)
    results = tuple(
        column.type._cached_result_processor(dialect, None) for column in compiled._result_columns
    )
    return Plan(
        sql=compiled.string,
        binds=tuple(binds),
        returns=returns,
        results=results if any(p is not None for p in results) else (),
        columns=tuple(_column_of(entry.objects) for entry in compiled._result_columns),
    )


def _column_of(objects: Sequence[Any]) -> Column[Any] | None:
    return next((o for o in objects if isinstance(o, Column)), None)


_plans: dict[tuple[ClauseElement, str, tuple[str, ...]], Plan | None] = {}
# Since start-up, for the benchmarks and tests: statements run on the driver here, and
# those handed to SQLAlchemy instead.
direct_runs = 0
fallbacks = 0


def plan_for(stmt: ClauseElement, dialect: Dialect, keys: tuple[str, ...]) -> Plan | None:
    """The cached plan (statements are built once, so the cache stays small)."""
    cache_key = (stmt, dialect.name, keys)
    try:
        return _plans[cache_key]
    except KeyError:
        plan = _plans[cache_key] = compile_plan(stmt, dialect, keys)
        return plan


class _Driver:
    """The driver connection behind one session transaction."""

    __slots__ = ("dialect", "error_base", "run", "run_many")

    def __init__(self, dialect: Dialect, dbapi_connection: Any, driver_connection: Any) -> None:
        self.dialect = dialect
        self.error_base: type[Exception] = dialect.loaded_dbapi.Error
        if isinstance(driver_connection, InlineConnection):
            self.run, self.run_many = _sqlite_runners(driver_connection)
        else:
            self.run, self.run_many = _adapter_runners(dbapi_connection)


# async (plan, arguments) -> (rows, rowcount); async (plan, [arguments]) -> rowcount
Run = Callable[[Plan, tuple[Any, ...]], Awaitable[tuple[Sequence[Any], int]]]
RunMany = Callable[[Plan, list[tuple[Any, ...]]], Awaitable[int]]


def _sqlite_runners(inline: InlineConnection) -> tuple[Run, RunMany]:
    connection, patience = inline.sqlite, inline.busy_timeout

    async def run(plan: Plan, args: tuple[Any, ...]) -> tuple[Sequence[Any], int]:
        cursor: sqlite3.Cursor = await retrying_busy(
            lambda: connection.execute(plan.sql, args), patience
        )
        rows = cursor.fetchall() if plan.returns else ()
        return rows, cursor.rowcount

    async def run_many(plan: Plan, args: list[tuple[Any, ...]]) -> int:
        cursor: sqlite3.Cursor = await retrying_busy(
            lambda: connection.executemany(plan.sql, args), patience
        )
        return cursor.rowcount

    return run, run_many


def _adapter_runners(adapter: Any) -> tuple[Run, RunMany]:
    """SQLAlchemy's asyncio adapter of the driver (asyncpg): its cursor starts the
    transaction when needed, uses the prepared-statement cache and maps the errors."""

    async def run(plan: Plan, args: tuple[Any, ...]) -> tuple[Sequence[Any], int]:
        cursor = adapter.cursor()
        await cursor._prepare_and_execute(plan.sql, args)
        rows = list(cursor._rows) if plan.returns else ()
        return rows, cursor.rowcount

    async def run_many(plan: Plan, args: list[tuple[Any, ...]]) -> int:
        await adapter.cursor()._executemany(plan.sql, args)
        return -1  # asyncpg does not report it

    return run, run_many


async def _driver(session: AsyncSession) -> _Driver:
    """The driver connection of the session's transaction, begun if need be; looked up
    once per transaction."""
    sync_session = session.sync_session
    held = session.info.get(_HANDLE)
    transaction = sync_session.get_transaction()
    if held is not None and transaction is not None and held[0] is transaction:
        driver: _Driver = held[1]
        return driver
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    driver = _Driver(connection.dialect, raw.dbapi_connection, raw.driver_connection)
    session.info[_HANDLE] = (sync_session.get_transaction(), driver)
    return driver


async def execute(
    session: AsyncSession,
    stmt: Executable,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> Rows:
    """Run `stmt` (built once, with bind parameters) in the session's transaction; a
    sequence of parameter sets runs it once for each, as SQLAlchemy's executemany."""
    assert isinstance(stmt, ClauseElement)
    sets = [params or {}] if params is None or isinstance(params, Mapping) else list(params)
    keys = tuple(sorted(sets[0])) if sets else ()
    if not sets or any(tuple(sorted(values)) != keys for values in sets[1:]):
        return await _through_sqlalchemy(session, stmt, params or {})  # as SQLAlchemy would
    driver = await _driver(session)
    plan = plan_for(stmt, driver.dialect, keys)
    if plan is None:
        return await _through_sqlalchemy(session, stmt, params or {})
    global direct_runs
    direct_runs += len(sets)
    rows: list[Sequence[Any]] = []
    rowcount = 0
    args: Any = None
    try:
        if len(sets) > 1 and not plan.returns:
            args = [plan.arguments(values) for values in sets]
            rowcount = await driver.run_many(plan, args)
        else:
            for values in sets:
                args = plan.arguments(values)
                fetched, count = await driver.run(plan, args)
                rows.extend(fetched)
                rowcount += count
    except driver.error_base as error:
        raise exc.DBAPIError.instance(plan.sql, args, error, driver.error_base) from error
    return Rows(plan.rows(rows), rowcount, plan.columns)


async def _through_sqlalchemy(
    session: AsyncSession,
    stmt: Executable,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]],
) -> Rows:
    global fallbacks
    fallbacks += 1
    connection = await session.connection()
    result = await connection.execute(stmt, params)
    rows = result.all() if result.returns_rows else ()
    compiled: Any = result.context.compiled
    entries = compiled._result_columns if compiled is not None else ()
    return Rows(rows, result.rowcount, tuple(_column_of(entry.objects) for entry in entries))
