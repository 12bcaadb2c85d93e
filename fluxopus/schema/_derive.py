"""Strawberry types derived from the pydantic models, so a field is declared once (in `models/`).

    @object_type(m.Task)
    class Task:
        @strawberry.field
        async def tags(self, parent: strawberry.Parent[m.Task], info: strawberry.Info) -> list[Tag]: ...

adds every field of `m.Task` (type, nullability, description) to the class before Strawberry sees
it; the class body adds only what GraphQL has beyond the model (nested fields with resolvers).
Resolvers return the pydantic objects themselves (`out`): Strawberry reads fields by attribute,
so nothing is copied and no field can be dropped on the way.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from collections.abc import Callable, Iterable
from enum import Enum
from typing import Any, TypeVar, Union, cast
from uuid import UUID

import strawberry
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from strawberry import UNSET
from strawberry.scalars import JSON

from fluxopus.models.common import PageQuery, member_docs

T = TypeVar("T")

_PLAIN = (str, int, float, bool, dt.date, dt.datetime)
_source_of: dict[type, type[BaseModel]] = {}  # Strawberry type -> the model it shows
_type_of: dict[type[BaseModel], type] = {}  # model -> its Strawberry output type
_input_of: dict[type[BaseModel], type] = {}  # model -> its Strawberry input type (a nested input)


def graphql_annotation(annotation: Any, *, input: bool = False) -> Any:
    """The Strawberry annotation for a pydantic field's type (of an input's field: `input`); unknown types
    fail here, at import."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return graphql_annotation(typing.get_args(annotation)[0], input=input)
    if origin in (Union, types.UnionType):
        args = typing.get_args(annotation)
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1 and len(args) == 2:
            return graphql_annotation(inner[0], input=input) | None
        raise TypeError(f"no GraphQL type for the union {annotation!r}")
    if origin is list:
        return list[graphql_annotation(typing.get_args(annotation)[0], input=input)]  # type: ignore[misc]
    if origin is dict or annotation is dict:
        return JSON
    if annotation is UUID:
        return strawberry.ID
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return graphql_enum(annotation)
    if input and isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation not in _input_of:
            raise TypeError(f"{annotation.__name__} has no GraphQL input type yet: declare it with @input_type first")
        return _input_of[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation not in _type_of:
            raise TypeError(f"{annotation.__name__} has no GraphQL type yet: declare it with @object_type first")
        return _type_of[annotation]
    if annotation in _PLAIN:
        return annotation
    raise TypeError(f"no GraphQL type for {annotation!r}")


E = TypeVar("E", bound=type[Enum])


def graphql_enum(cls: E) -> E:
    """`cls` as a GraphQL enum (once), described by its docstring and its members' docs
    (models/common.documented). Its GraphQL names are the members' in upper case (`IN_PROGRESS`), as
    GraphQL spells enum values; the Python values, which REST and the database use, stay lower case.
    The compiled reads (schema/compiled.py) upper-case the stored values the same way."""
    if hasattr(cls, "__strawberry_definition__"):
        return cls
    docs = member_docs(cls)
    strawberry.enum(cls, description=_doc(cls))
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    for value in definition.values:
        value.description = docs.get(value.name)
        if value.value != value.name or not value.name.isascii():
            raise TypeError(
                f"{cls.__name__}.{value.name}: GraphQL names are the values upper-cased, so they must match"
            )
        value.name = value.name.upper()
    return cls


def argument(model: type[BaseModel], field: str) -> Any:
    """A GraphQL argument described as the model's field (the REST parameter it mirrors) is."""
    return strawberry.argument(description=model.model_fields[field].description)


# The page arguments of every list, as REST's `limit` and `offset` query parameters.
Limit = typing.Annotated[int, argument(PageQuery, "limit")]
Offset = typing.Annotated[int, argument(PageQuery, "offset")]


def _add_fields(cls: type, model: type[BaseModel], make: Callable[[str, FieldInfo], tuple[Any, Any]]) -> None:
    own = dict(cls.__dict__.get("__annotations__", {}))
    unknown = sorted(set(own) - set(model.model_fields))
    if unknown:  # it would resolve by attribute, and fail on the first request instead of here
        raise TypeError(f"{cls.__name__} declares {', '.join(unknown)}, which {model.__name__} does not have")
    resolvers = {k for k, v in vars(cls).items() if hasattr(v, "base_resolver")}
    annotations: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name in own or name in resolvers:
            continue  # the class overrides it
        annotations[name], field = make(name, info)
        setattr(cls, name, field)
    cls.__annotations__ = {**annotations, **own}


def object_type(
    model: type[BaseModel], *, name: str | None = None, description: str | None = None
) -> Callable[[type[T]], type[T]]:
    """The GraphQL output type of `model`: all its fields, plus the class' own."""

    def wrap(cls: type[T]) -> type[T]:
        def field(_: str, info: FieldInfo) -> tuple[Any, Any]:
            return graphql_annotation(info.annotation), strawberry.field(description=info.description)

        _add_fields(cls, model, field)
        if any(base in _source_of or _is_interface(base) for base in cls.__mro__[1:]):
            # It implements an interface: an object is this type when it is this model (the resolvers
            # return the models themselves, which Strawberry's own check, by its classes, cannot tell).
            cls.is_type_of = classmethod(lambda _cls, obj, _info: isinstance(obj, model))  # type: ignore[attr-defined]
        typed = strawberry.type(cls, name=name, description=description or _doc(model))
        _source_of[typed] = model
        _type_of[model] = typed
        return typed

    return wrap


def interface_type(
    model: type[BaseModel], *, name: str | None = None, description: str | None = None
) -> Callable[[type[T]], type[T]]:
    """A GraphQL interface of `model`'s fields; its types are `object_type`s of subclasses of `model`
    whose classes subclass this one."""

    def wrap(cls: type[T]) -> type[T]:
        def field(_: str, info: FieldInfo) -> tuple[Any, Any]:
            return graphql_annotation(info.annotation), strawberry.field(description=info.description)

        _add_fields(cls, model, field)
        typed = strawberry.interface(cls, name=name, description=description or _doc(model))
        _source_of[typed] = model
        _type_of[model] = typed
        return typed

    return wrap


def _is_interface(cls: type) -> bool:
    return bool(getattr(getattr(cls, "__strawberry_definition__", None), "is_interface", False))


def input_type(
    model: type[BaseModel], *, partial: bool = False, name: str | None = None, description: str | None = None
) -> Callable[[type[T]], type[T]]:
    """The GraphQL input of `model`. `partial` (a PATCH): every field optional, omitted stays UNSET."""

    def wrap(cls: type[T]) -> type[T]:
        def field(_: str, info: FieldInfo) -> tuple[Any, Any]:
            annotation = graphql_annotation(info.annotation, input=True)
            if partial:
                return annotation | None, strawberry.field(default=UNSET, description=info.description)
            if info.default_factory is not None:
                factory = cast(Callable[[], Any], info.default_factory)
                return annotation, strawberry.field(default_factory=factory, description=info.description)
            if info.default is not PydanticUndefined:
                return annotation, strawberry.field(default=info.default, description=info.description)
            return annotation, strawberry.field(description=info.description)

        _add_fields(cls, model, field)
        typed = strawberry.input(cls, name=name, description=description or _doc(model))
        _input_of.setdefault(model, typed)
        return typed

    return wrap


def _doc(model: type) -> str | None:
    doc = model.__dict__.get("__doc__")
    return " ".join(doc.split()) if doc else None  # one paragraph: the docstring's line breaks are layout


def out(cls: type[T], model: BaseModel) -> T:
    """`model` as the GraphQL object `cls`: the same object, checked to be what `cls` shows."""
    source = _source_of.get(cls)
    if source is None or not isinstance(model, source):
        raise TypeError(f"{type(model).__name__} is not the model of GraphQL type {cls.__name__}")
    return cast(T, model)


def outs(cls: type[T], models: Iterable[BaseModel]) -> list[T]:
    return [out(cls, m) for m in models]


def input_dict(value: object) -> dict[str, Any]:
    """Only the fields the client sent: UNSET means 'leave alone', None means 'clear'. Nested inputs
    become dicts too, for the pydantic model to check."""
    return {k: _plain(v) for k, v in vars(value).items() if v is not UNSET}


def _plain(value: Any) -> Any:
    if hasattr(type(value), "__strawberry_definition__") and not isinstance(value, Enum):
        return input_dict(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
