"""JSON built by PostgreSQL: objects, lists of objects, and the API's timestamp format.

What GraphQL reads compiled to SQL are made of (schema/compiled.py): every object is a
`json_build_object` over a row, every list a `json_agg` over a subquery of the rows a resolver
would read (same filters, order and page), nested ones correlated to their parent row. The whole
answer is one statement, run in the caller's RLS transaction like any other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import ColumnElement, FromClause, ScalarSelect, Select, func, literal_column, select

# json_build_object takes at most 100 arguments: 50 keys.
MAX_KEYS = 50


class TooWide(Exception):
    """An object with more keys than one json_build_object takes."""


def json_object(pairs: Sequence[tuple[str, ColumnElement[Any]]]) -> ColumnElement[Any]:
    if len(pairs) > MAX_KEYS:
        raise TooWide(f"{len(pairs)} keys; json_build_object takes {MAX_KEYS}")
    args: list[Any] = []
    for key, value in pairs:
        args += [literal_column(_quoted(key)), value]
    result: ColumnElement[Any] = func.json_build_object(*args)
    return result


def json_text(value: str) -> ColumnElement[Any]:
    """A constant string (a GraphQL `__typename`)."""
    return literal_column(_quoted(value))


def json_time(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """A timestamp as the API writes it (migration 013: UTC, `Z`, the fraction only when there is one)."""
    result: ColumnElement[Any] = func.fluxopus.json_time(column)
    return result


def json_list(rows: Select[Any], element: Callable[[FromClause], ColumnElement[Any]]) -> ScalarSelect[Any]:
    """The rows' objects as a JSON array, in the rows' order (`[]` when none)."""
    source = rows.subquery()
    empty: ColumnElement[Any] = literal_column("'[]'::json")
    return select(func.coalesce(func.json_agg(element(source)), empty)).select_from(source).scalar_subquery()


def json_one(rows: Select[Any], element: Callable[[FromClause], ColumnElement[Any]]) -> ScalarSelect[Any]:
    """The first row's object, or null."""
    source = rows.limit(1).subquery()
    return select(element(source)).select_from(source).scalar_subquery()


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
