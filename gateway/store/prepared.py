"""Statements built once, for the path every message takes.

Building a statement (`select(...).where(...)`) and running it through the ORM session
costs three to four times what executing a prebuilt Core statement with parameters on
the session's connection costs: here 120 µs against 33 µs on SQLite and 212 µs against
94 µs on PostgreSQL, and a message takes about a dozen. The hot statements are therefore
built once (per dialect where they differ, for ON CONFLICT) with bind parameters, and
run with `execute` below.

Core statements run on the session's connection without flushing the session first:
what they refer to (a ticket's id) must already be written, and they must not read a
table whose rows the session holds unwritten changes for. Every statement here writes
rows the ORM does not track, or reads tables the message's ORM objects do not touch.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, cast

from sqlalchemy import ColumnElement, Executable, Table, bindparam, insert
from sqlalchemy.dialects import postgresql, sqlite  # the INSERT types
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper, QueryableAttribute, make_transient_to_detached
from sqlalchemy.sql.schema import ScalarElementColumnDefault

from gateway.store import direct
from gateway.store.db import insert_for
from gateway.store.direct import Rows
from gateway.store.models import Base


def table_of(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def upsert(dialect: str, model: type[Base]) -> postgresql.Insert | sqlite.Insert:
    """The dialect's INSERT for `model`'s table, which knows ON CONFLICT."""
    stmt: postgresql.Insert | sqlite.Insert = insert_for(dialect)(table_of(model))
    return stmt


@functools.cache
def insert_or_skip(dialect: str, model: type[Base], returning: str | None = None) -> Executable:
    """INSERT … ON CONFLICT DO NOTHING [RETURNING column] for `model`'s table."""
    table = table_of(model)
    stmt = upsert(dialect, model).on_conflict_do_nothing()
    return stmt if returning is None else stmt.returning(table.c[returning])


@functools.cache
def _insert_returning_id(model: type[Base]) -> Executable:
    table = table_of(model)
    return insert(table).returning(table.c.id)


def in_list(
    column: ColumnElement[Any] | QueryableAttribute[Any], name: str, count: int
) -> ColumnElement[bool]:
    """`column IN (:name0, :name1, …)` with `count` parameters typed like `column`: a
    statement built with it, once per count, compiles once and runs on the driver (an
    expanding IN list is compiled anew on every execution, through SQLAlchemy). Give
    the values with `numbered`."""
    return column.in_([bindparam(f"{name}{i}", type_=column.type) for i in range(count)])


def numbered(name: str, values: Sequence[Any]) -> dict[str, Any]:
    """The parameters of an `in_list` named `name`: {name0: values[0], …}."""
    return {f"{name}{i}": value for i, value in enumerate(values)}


async def add(session: AsyncSession, obj: Base) -> None:
    """Write a new object with one prebuilt INSERT and attach it to the session as if
    loaded: no unit-of-work flush (0.6-0.7 ms each here) for the rows every message
    adds. Columns not set take their default, else NULL; none is left to load later."""
    model = type(obj)
    table = table_of(model)
    state = obj.__dict__
    values: dict[str, Any] = {}
    for column in table.columns:
        if column.key == "id":
            continue
        if column.key not in state:
            default = column.default
            value = default.arg if isinstance(default, ScalarElementColumnDefault) else None
            setattr(obj, column.key, value)
        values[column.key] = state[column.key]
    result = await execute(session, _insert_returning_id(model), values)
    obj.id = result.scalar_one()  # type: ignore[attr-defined]
    make_transient_to_detached(obj)
    session.add(obj)


# Per entity of a loading statement: its mapper, the position of its primary key and
# (position, attribute) of each of its columns.
_Layout = tuple[tuple[Mapper[Any], int, tuple[tuple[int, str], ...]], ...]
_layouts: dict[tuple[tuple[Any, ...], tuple[type[Base], ...]], _Layout] = {}


def _layout(columns: tuple[Any, ...], models: tuple[type[Base], ...]) -> _Layout:
    try:
        return _layouts[(columns, models)]
    except KeyError:
        pass
    layout = []
    for model in models:
        mapper: Mapper[Any] = model.__mapper__
        fields = tuple(
            (index, mapper.get_property_by_column(column).key)
            for index, column in enumerate(columns)
            if column is not None and column.table is mapper.local_table
        )
        (key_column,) = mapper.primary_key
        key_at = next(i for i, c in enumerate(columns) if c is key_column)
        layout.append((mapper, key_at, fields))
    _layouts[(columns, models)] = result = tuple(layout)
    return result


async def load(
    session: AsyncSession,
    stmt: Executable,
    params: Mapping[str, Any],
    *models: type[Base],
) -> list[tuple[Any, ...]]:
    """Run a prebuilt ORM select of whole entities (`select(A, B)…`) on the driver and
    return its rows as instances attached to the session as if the ORM had loaded them:
    an instance the session already holds is returned as it is (as the ORM does), an
    outer-joined entity without a row is None. Like `execute`, it does not flush the
    session first. Saves the ORM's per-statement and per-row set-up (≈ 0.3-0.5 ms a
    look-up here)."""
    result = await execute(session, stmt, params)
    layout = _layout(result.columns, models)
    identity_map = session.sync_session.identity_map
    loaded = []
    for row in result:
        entities: list[Any] = []
        for mapper, key_at, fields in layout:
            key = row[key_at]
            if key is None:
                entities.append(None)
                continue
            held = identity_map.get(mapper.identity_key_from_primary_key((key,)))
            if held is not None:
                entities.append(held)
                continue
            obj = mapper.class_manager.new_instance()
            values = obj.__dict__
            for index, attribute in fields:
                values[attribute] = row[index]
            make_transient_to_detached(obj)
            session.add(obj)
            entities.append(obj)
        loaded.append(tuple(entities))
    return loaded


async def load_one(
    session: AsyncSession, stmt: Executable, params: Mapping[str, Any], model: type[Base]
) -> Any:
    """The first entity `stmt` loads (see `load`), or None."""
    rows = await load(session, stmt, params, model)
    return rows[0][0] if rows else None


async def execute(
    session: AsyncSession,
    stmt: Executable,
    params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
) -> Rows:
    """Run a prebuilt Core statement in the session's transaction; see `direct`."""
    return await direct.execute(session, stmt, params)
