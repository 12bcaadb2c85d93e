"""DateTime written exactly as REST writes it (pydantic: UTC as `Z`), so clients parse one format."""

from __future__ import annotations

import datetime as dt

import strawberry
from pydantic import TypeAdapter

_adapter = TypeAdapter(dt.datetime)


def _serialize(value: dt.datetime) -> str:
    return _adapter.dump_python(value, mode="json")  # type: ignore[no-any-return]


def _parse(value: object) -> dt.datetime:
    return _adapter.validate_python(value)


DateTime = strawberry.scalar(
    name="DateTime",
    description="ISO 8601 timestamp in UTC, e.g. 2026-11-29T03:12:33.123456Z",
    serialize=_serialize,
    parse_value=_parse,
)
