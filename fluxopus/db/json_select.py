"""JSON built by PostgreSQL: objects, lists of objects, and the API's timestamp format.

What GraphQL reads compiled to SQL are made of (schema/compiled.py): every object is a
`json_build_object` over a row, every list a `json_agg` over a subquery of the rows a resolver
would read (same filters, order and page), nested ones correlated to their parent row. The whole
answer is one statement, run in the caller's RLS transaction like any other.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import TEXT, ColumnElement, FromClause, ScalarSelect, Select, func, literal_column, select

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


def json_rows(
    page: Select[Any], columns: Callable[[FromClause], Sequence[tuple[str, ColumnElement[Any]]]]
) -> Select[int, Any]:
    """How many rows the page has (`length`), and the page as one compact JSON array (`json`) of
    objects — `columns` of each row, by key — in the page's order: the bytes pydantic writes for the
    same rows (row_to_json adds no whitespace; a column whose JSON PostgreSQL writes otherwise, jsonb,
    must not be among them)."""
    source = page.subquery()
    rows = select(*(value.label(key) for key, value in columns(source))).select_from(source).subquery()
    objects = func.string_agg(func.row_to_json(rows.table_valued()).cast(TEXT), literal_column("','"))
    array = literal_column("'['").op("||")(objects).op("||")(literal_column("']'"))
    return select(func.count().label("length"), func.coalesce(array, literal_column("'[]'")).label("json")).select_from(
        rows
    )


def model_columns(model: type[BaseModel]) -> Callable[[FromClause], list[tuple[str, ColumnElement[Any]]]] | None:
    """The model's fields as columns of a row PostgreSQL writes to JSON exactly as pydantic writes the
    model (timestamps through json_time), or None when a field's type is written otherwise (jsonb:
    PostgreSQL spaces it out; anything not plain)."""
    fields: list[tuple[str, bool]] = []  # (name, is a timestamp)
    for name, info in model.model_fields.items():
        kind = _plain(info.annotation)
        if kind is None:
            return None
        fields.append((name, kind is dt.datetime))

    def columns(row: FromClause) -> list[tuple[str, ColumnElement[Any]]]:
        return [(name, json_time(row.c[name]) if stamp else row.c[name]) for name, stamp in fields]

    return columns


def _plain(annotation: Any) -> type | None:
    """The type behind `X`, `X | None` or `Annotated[X, ...]` when PostgreSQL writes it as pydantic does."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _plain(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _plain(inner[0]) if len(inner) == 1 else None
    if origin is list:
        return list if _plain(typing.get_args(annotation)[0]) in (str, UUID) else None
    if annotation in (UUID, str, int, bool, dt.date, dt.datetime):
        return annotation  # type: ignore[no-any-return]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return annotation
    return None  # floats (PostgreSQL and Python may round-trip them differently), dicts (jsonb), models


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
