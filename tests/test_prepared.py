"""db/prepared.py: a statement compiled once per shape, its values bound at each run."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from sqlalchemy import Select, Text, bindparam, cast, column, select, table
from sqlalchemy.dialects.postgresql import JSONB

from fluxopus.db.engine import asyncpg_dsn
from fluxopus.db.prepared import Prepared, prepare
from fluxopus.models.tasks import TaskFilter
from fluxopus.resolvers.tasks import task_row, task_rows

things = table("things", column("id"), column("name"))


def named(name: Any) -> Select[Any]:
    return select(things.c.id).where(things.c.name == name)


def listed(names: Any) -> Select[Any]:
    return select(things.c.id).where(things.c.name.in_(names))


def test_one_statement_per_shape_and_only_the_values_change() -> None:
    first, first_args = prepare(task_rows, query=TaskFilter(status="done"))
    again, again_args = prepare(task_rows, query=TaskFilter(status="todo"))
    assert again is first and first_args != again_args
    assert "todo" in again_args and "done" not in again_args
    searched, searched_args = prepare(task_rows, query=TaskFilter(status="done", q="100%_\\"))
    assert searched is not first  # another shape: a filter more
    assert "ILIKE" in searched.sql and "%100\\%\\_\\\\%" in searched_args  # escaped as it is bound
    by_id, by_id_args = prepare(task_row, id="7")
    assert by_id.keys[0] == "id" and by_id_args[-1] == "7"


def test_none_is_part_of_the_shape() -> None:
    with_name, args = prepare(named, name="a")
    without, none_args = prepare(named, name=None)
    assert with_name is not without and "IS NULL" in without.sql and none_args == []
    assert args == ["a"]


def test_what_would_make_a_statement_per_call_is_refused() -> None:
    with pytest.raises(TypeError, match="module-level"):
        prepare(lambda name: named(name), name="a")

    def local(name: Any) -> Select[Any]:
        return named(name)

    with pytest.raises(TypeError, match="module-level"):
        prepare(local, name="a")
    with pytest.raises(ValueError, match="expanding IN"):
        prepare(listed, names=["a", "b"])


async def test_values_are_converted_as_sqlalchemy_would(database_url: str) -> None:
    """A JSONB placeholder's value is written to JSON on the way in, like SQLAlchemy's own execution."""
    statement = select(cast(cast(bindparam("doc", type_=JSONB), JSONB), Text))
    prepared = Prepared(statement)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        value = await conn.fetchval(prepared.sql, *prepared.args({"doc": {"a": [1, "ü"]}}))
    finally:
        await conn.close()
    assert value == '{"a": [1, "ü"]}'
