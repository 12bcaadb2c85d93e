"""Pieces every group uses: validation into domain errors, pages, deletions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from functools import cache
from types import UnionType
from typing import Annotated, Any, Generic, Literal, TypeVar, Union, get_args, get_origin, overload
from uuid import UUID

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import to_json

from fluxopus.errors import Invalid, Malformed

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
E = TypeVar("E", bound=type[Enum])

MAX_PAGE = 200
MAX_OFFSET = 1_000_000  # far past any real list; keeps the value inside PostgreSQL's bigint


def documented(**docs: str) -> Callable[[E], E]:
    """What each member of an enum means, beside the enum's docstring: GraphQL shows them per value
    (schema/_derive.graphql_enum). Every member must have one, so a new member cannot go undescribed."""

    def attach(cls: E) -> E:
        names = {member.name for member in cls}
        if set(docs) != names:
            raise TypeError(f"{cls.__name__} documents {sorted(docs)}, its members are {sorted(names)}")
        cls.__member_docs__ = docs  # type: ignore[attr-defined]
        return cls

    return attach


def member_docs(cls: type[Enum]) -> dict[str, str]:
    return dict(getattr(cls, "__member_docs__", {}))


@documented(
    private="Only its owner sees it (and, for skills, runs it)",
    company="Everyone in the owner's company sees it",
)
class Visibility(StrEnum):
    """Who sees a skill or a knowledge item besides its owner. Admins see only what this allows too."""

    private = "private"
    company = "company"


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

    limit: int = Field(default=50, ge=1, le=MAX_PAGE, description="Page size: how many items at most (1–200)")
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET, description="How many items to skip before the page starts")


_PLAIN = (str, int, bool, dt.datetime, dt.date, UUID)


@cache
def _orjson_writes(model: type[BaseModel]) -> bool:
    """Whether orjson writes this model's rows byte for byte as pydantic-core does: it does for text,
    integers (a column's, so 64-bit), booleans, timestamps (`OPT_UTC_Z`), dates, UUIDs and enums, and
    then takes less than half the time — at 50 tasks, a fifth of the list request's CPU was pydantic's
    writer. Not for floats (`1e16` where pydantic writes `1e+16`) or JSON documents (which may hold
    floats and integers past 64 bits): those models keep pydantic-core."""

    def plain(annotation: Any) -> bool:
        if annotation is None or annotation is type(None):
            return True
        if isinstance(annotation, type):
            return issubclass(annotation, _PLAIN) or issubclass(annotation, Enum)
        origin = get_origin(annotation)
        if origin is Annotated:
            return plain(get_args(annotation)[0])
        if origin is Literal:
            return all(isinstance(arg, str) for arg in get_args(annotation))
        if origin in (Union, UnionType):
            return all(plain(arg) for arg in get_args(annotation))
        return False

    return all(plain(field.annotation) for field in model.model_fields.values())


class Rows(Sequence[M]):
    """A list's rows as the database returned them, keyed and ordered like the model's fields. The REST
    edge writes them to JSON in one call (`json()`: pydantic-core, the serialiser the models use, so the
    bytes are those the models would give: tests/test_json_once.py compares every list), without a
    model per row; whoever reads them as a sequence (GraphQL) gets the models, made once, when first read."""

    __slots__ = ("_models", "model", "raw")

    def __init__(self, model: type[M], raw: list[dict[str, Any]]) -> None:
        self.model = model
        self.raw = raw
        self._models: list[M] | None = None

    @classmethod
    def of(cls, model: type[M], keys: Sequence[str], rows: Iterable[Sequence[Any]]) -> Rows[M]:
        """`rows` of a result whose first columns are the model's fields, in their order (the declared
        tables' are); columns after them are left out."""
        fields = tuple(model.model_fields)
        if tuple(keys[: len(fields)]) != fields:
            raise ValueError(f"{model.__name__} rows must start with its fields {fields}, not {tuple(keys)}")
        return cls(model, [dict(zip(fields, row, strict=False)) for row in rows])

    def json(self) -> bytes:
        if _orjson_writes(self.model):
            return orjson.dumps(self.raw, option=orjson.OPT_UTC_Z)
        return to_json(self.raw)

    def _validated(self) -> list[M]:
        if self._models is None:
            self._models = [self.model.model_validate(r) for r in self.raw]
        return self._models

    @overload
    def __getitem__(self, index: int) -> M: ...
    @overload
    def __getitem__(self, index: slice) -> list[M]: ...
    def __getitem__(self, index: int | slice) -> M | list[M]:
        return self._validated()[index]

    def __iter__(self) -> Iterator[M]:
        return iter(self._validated())

    def __len__(self) -> int:
        return len(self.raw)


# How a REST list's total is made, as the caller asked with `Prefer: count=…` (RFC 7240, as PostgREST):
# counted, the planner's estimate, or counted when the planner expects few rows. None: not asked for.
CountMode = Literal["exact", "planned", "estimated"]
COUNT_MODES: tuple[CountMode, ...] = get_args(CountMode)


@dataclass(frozen=True)
class Page(Generic[T]):
    items: Sequence[T]
    # How many rows match, ignoring limit/offset. Counted only when asked (a connection's totalCount),
    # in the request's transaction: a GraphQL list, which shows no total, never pays for it.
    count: Callable[[], Awaitable[int]]
    # The total REST sends (X-Total-Count) as the context's count mode makes it (resolvers/_sql.fetch_page);
    # None when it is not known: no count was asked for and the page does not tell it.
    total: int | None = None

    @staticmethod
    def known(total: int) -> Callable[[], Awaitable[int]]:
        async def count() -> int:
            return total

        return count


class Deleted(Output):
    """What a DELETE answers."""

    id: UUID = Field(description="The id of what was deleted")
    deleted: bool = Field(default=True, description="Always true: it is gone")


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
        raise Malformed("Request body is required (JSON object)")
    try:
        return model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        unreadable = any(e["type"] == "json_invalid" for e in exc.errors(include_url=False))
        raise (Malformed if unreadable else Invalid)(describe(exc)) from exc


def parse_uuid(value: Any, what: str = "id") -> UUID:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value))
    except ValueError:
        raise Malformed(f"Invalid {what}: {str(value)[:64]!r} is not a UUID") from None
