"""Pieces every group uses: validation into domain errors, pages, deletions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fluxopus.errors import Invalid

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")

MAX_PAGE = 200
MAX_OFFSET = 1_000_000  # far past any real list; keeps the value inside PostgreSQL's bigint


class Input(BaseModel):
    """Request bodies: unknown fields are refused so typos do not pass silently."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def omittable(**kwargs: Any) -> Any:
    """A PATCH field that may be left out but not sent as null: the schema shows no null."""
    return Field(default=None, json_schema_extra=_drop_default, **kwargs)


def _drop_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)


class Output(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="ignore")

    limit: int = Field(default=50, ge=1, le=MAX_PAGE, description="Page size (1–200)")
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, description="Rows to skip")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    # How many rows match, ignoring limit/offset. Counted only when asked (REST's X-Total-Count), in
    # the request's transaction: a GraphQL list, which shows no total, never pays for it.
    count: Callable[[], Awaitable[int]]

    @staticmethod
    def known(total: int) -> Callable[[], Awaitable[int]]:
        async def count() -> int:
            return total

        return count


class Deleted(Output):
    id: UUID
    deleted: bool = True


def describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors(include_url=False):
        if e["type"] == "json_invalid":  # where and why: "trailing characters at line 1 column 9"
            detail = e.get("ctx", {}).get("error")
            return f"Malformed JSON body: {detail}" if detail else "Malformed JSON body"
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field"
        elif e["type"] == "value_error" and "error" in e.get("ctx", {}):
            msg = str(e["ctx"]["error"])
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "Invalid input"


def parse(model: type[M], data: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise Invalid(describe(exc)) from exc


def parse_json(model: type[M], body: bytes) -> M:
    if not body.strip():
        raise Invalid("Request body is required (JSON object)")
    try:
        return model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        raise Invalid(describe(exc)) from exc


def parse_uuid(value: Any, what: str = "id") -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise Invalid(f"Invalid {what}: {str(value)[:64]!r} is not a UUID") from None
