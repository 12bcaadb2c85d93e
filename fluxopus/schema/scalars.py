"""The schema's own scalars, each pointing at the specification its values follow (`@specifiedBy`), so a
client generator or a reviewer knows the exact format.

DateTime is written exactly as REST writes it (pydantic: UTC as `Z`), so clients parse one format."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import strawberry
from pydantic import TypeAdapter

_adapter = TypeAdapter(dt.datetime)
_FULL_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _serialize(value: dt.datetime) -> str:
    return _adapter.dump_python(value, mode="json")  # type: ignore[no-any-return]


def _parse(value: object) -> dt.datetime:
    return _adapter.validate_python(value)


def _parse_date(value: object) -> dt.date:
    # RFC 3339's full-date only: Python's fromisoformat also takes ISO 8601's other forms (20261204, 2026-W49-5).
    if not isinstance(value, str) or not _FULL_DATE.fullmatch(value):
        raise ValueError(f"Date must be YYYY-MM-DD (RFC 3339 full-date), not {str(value)[:40]!r}")
    return dt.date.fromisoformat(value)


def _identity(value: Any) -> Any:
    return value  # JSON values are what the JSON body already decoded: nothing to convert either way


DateTime = strawberry.scalar(
    name="DateTime",
    description="A moment in time, RFC 3339 `date-time` in UTC, e.g. `2026-11-29T03:12:33.123456Z` (the fraction"
    " only when there is one). Input may carry any offset.",
    specified_by_url="https://scalars.graphql.org/andimarek/date-time",
    serialize=_serialize,
    parse_value=_parse,
)

Date = strawberry.scalar(
    name="Date",
    description="A calendar day without a time or zone, RFC 3339 `full-date`: `YYYY-MM-DD`, e.g. `2026-12-31`.",
    specified_by_url="https://scalars.graphql.org/andimarek/local-date",
    serialize=dt.date.isoformat,
    parse_value=_parse_date,
)

JSON = strawberry.scalar(
    name="JSON",
    description="Any JSON value (RFC 8259 / ECMA-404): an object, array, string, number, boolean or null.",
    specified_by_url="https://www.rfc-editor.org/rfc/rfc8259",
    serialize=_identity,
    parse_value=_identity,
)
