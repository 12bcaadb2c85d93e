"""One declaration per entity.

An entity is the pydantic model of what the API shows, one line per field; each line says how the
field is stored and written:

    class Task(Entity, table="tasks"):
        id: Annotated[UUID, Key()]
        title: Annotated[str, Write(min_length=1, max_length=500)]
        total_minutes: Annotated[int, Derived("Sum of the task's time logs")]

From that one class come the output model (the class itself), the `Create` and `Update` input
models (`Task.create`, `Task.update`), the SQLAlchemy table the resolvers query (`Task.table`), and —
through them — the OpenAPI schemas and, in `schema/`, the Strawberry types. The migration stays
hand-written SQL; `tests/test_declarations.py` checks every declared table against the live
database.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Literal, Union
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, create_model
from pydantic_core import PydanticUndefined
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    FetchedValue,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.types import TypeEngine

from fluxopus.models.common import Input, Output, omittable

metadata = MetaData()

Kind = Literal["key", "server", "write", "derived"]


@dataclass(frozen=True)
class Spec:
    """How one field is stored and written. Made by Key(), Server(), Write() and Derived()."""

    kind: Kind
    doc: str | None = None
    input_doc: str | None = None  # the inputs' description, when it differs from the output's
    default: Any = PydanticUndefined  # Create's default; none means required (or null when nullable)
    default_factory: Callable[[], Any] | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    ge: float | None = None
    le: float | None = None
    check: Callable[[Any], Any] | None = None  # an input-only validator: raise ValueError to refuse
    update: bool = True  # Write fields only: whether Update may change it


def Key(doc: str | None = None) -> Spec:  # noqa: N802 - reads as a declaration
    """The primary key, set by the database."""
    return Spec("key", doc)


def Server(doc: str | None = None) -> Spec:  # noqa: N802
    """Stored, shown, never written by a client: defaults, triggers or the service set it."""
    return Spec("server", doc)


def Write(  # noqa: N802
    *,
    doc: str | None = None,
    input_doc: str | None = None,
    default: Any = PydanticUndefined,
    default_factory: Callable[[], Any] | None = None,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    ge: float | None = None,
    le: float | None = None,
    check: Callable[[Any], Any] | None = None,
    update: bool = True,
) -> Spec:
    """Stored, shown, and written by clients: in Create (and Update unless `update=False`)."""
    return Spec(
        "write", doc, input_doc, default, default_factory, min_length, max_length, pattern, ge, le, check, update
    )


def Derived(doc: str | None = None) -> Spec:  # noqa: N802
    """Shown but not stored: the resolver's query computes it."""
    return Spec("derived", doc)


@dataclass(frozen=True)
class Declared:
    """A declared field: what the inputs, the table and the checks need to know."""

    name: str
    annotation: Any  # the output type, e.g. `str | None`
    spec: Spec
    stored: TypeEngine[Any] | None = None  # from a Stored() beside the Spec

    @property
    def nullable(self) -> bool:
        return _optional_of(self.annotation) is not None

    @property
    def base(self) -> Any:
        """The type without `| None`."""
        inner = _optional_of(self.annotation)
        return self.annotation if inner is None else inner


class Entity(Output):
    """The base of every declaration; see the module docstring."""

    table: ClassVar[Table]
    create: ClassVar[type[Input]]
    update: ClassVar[type[Input]]
    declared: ClassVar[dict[str, Declared]]

    # Set by the subclass' keywords.
    _table_name: ClassVar[str | None] = None
    _hidden: ClassVar[dict[str, Any]] = {}
    _inputs: ClassVar[tuple[bool, bool]] = (False, False)
    _docs: ClassVar[tuple[str | None, str | None]] = (None, None)
    _inputs_named: ClassVar[str | None] = None  # the inputs are <this>Create and <this>Update

    def __init_subclass__(
        cls,
        *,
        table: str | None = None,
        hidden: dict[str, Any] | None = None,
        create: bool = False,
        update: bool = False,
        create_doc: str | None = None,
        update_doc: str | None = None,
        inputs_named: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        cls._table_name = table
        cls._hidden = hidden or {}
        cls._inputs = (create, update)
        cls._docs = (create_doc, update_doc)
        cls._inputs_named = inputs_named

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        declared: dict[str, Declared] = {}
        for name, info in cls.model_fields.items():
            spec = next((m for m in info.metadata if isinstance(m, Spec)), None)
            if spec is None:
                raise TypeError(f"{cls.__name__}.{name} needs Key(), Server(), Write() or Derived()")
            if spec.doc and info.description is None:
                info.description = spec.doc
            stored = next((m.type for m in info.metadata if isinstance(m, Stored)), None)
            declared[name] = Declared(name, info.annotation, spec, stored)
        cls.declared = declared
        cls.model_rebuild(force=True)  # the descriptions above reach the JSON schema
        if cls._table_name is not None:
            cls.table = _table(cls._table_name, declared, cls._hidden)
        name = cls._inputs_named or cls.__name__
        make_create, make_update = cls._inputs
        if make_create:
            cls.create = _input(f"{name}Create", declared, update=False, doc=cls._docs[0])
        if make_update:
            cls.update = _input(f"{name}Update", declared, update=True, doc=cls._docs[1])


def _optional_of(annotation: Any) -> Any:
    """`T` for `T | None`, else None."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return args[0]
    return None


def _constraints(spec: Spec) -> list[Any]:
    """The input-side checks: pydantic's own constraints, then the declared validator."""
    extra: list[Any] = []
    if any(v is not None for v in (spec.min_length, spec.max_length, spec.pattern, spec.ge, spec.le)):
        extra.append(
            Field(min_length=spec.min_length, max_length=spec.max_length, pattern=spec.pattern, ge=spec.ge, le=spec.le)
        )
    if spec.check is not None:
        extra.append(AfterValidator(spec.check))
    return extra


def _input(model_name: str, declared: dict[str, Declared], *, update: bool, doc: str | None) -> type[Input]:
    fields: dict[str, Any] = {}
    for f in declared.values():
        spec = f.spec
        if spec.kind != "write" or (update and not spec.update):
            continue
        extra = _constraints(spec)
        checked = typing.Annotated[f.base, *extra] if extra else f.base
        described = spec.input_doc or spec.doc
        if update:
            # Null clears a nullable field; a required one may be left out but not sent as null.
            if f.nullable:
                fields[f.name] = (checked | None, Field(default=None, description=described))
            else:
                fields[f.name] = (checked, omittable(description=described))
        elif spec.default_factory is not None:
            fields[f.name] = (checked, Field(default_factory=spec.default_factory, description=described))
        elif spec.default is not PydanticUndefined:
            annotation = checked | None if spec.default is None else checked
            fields[f.name] = (annotation, Field(default=spec.default, description=described))
        elif f.nullable:
            fields[f.name] = (checked | None, Field(default=None, description=described))
        else:
            fields[f.name] = (checked, Field(description=described))
    model: type[Input] = create_model(model_name, __base__=Input, __doc__=doc, **fields)
    return model


_COLUMN_TYPES: dict[Any, Callable[[], TypeEngine[Any]]] = {
    UUID: lambda: PgUUID(as_uuid=True),
    str: Text,
    int: Integer,
    float: Double,
    bool: Boolean,
    dt.date: Date,
    dt.datetime: lambda: DateTime(timezone=True),
    bytes: LargeBinary,
}


@dataclass(frozen=True)
class Stored:
    """Annotated metadata: store the field as this type rather than the one its Python type implies."""

    type: TypeEngine[Any]


BigInt = typing.Annotated[int, Stored(BigInteger())]


def column_type(annotation: Any) -> TypeEngine[Any]:
    """The SQLAlchemy type a Python annotation is stored as; enums are text with a check."""
    if typing.get_origin(annotation) is typing.Annotated:
        stored = [m for m in typing.get_args(annotation)[1:] if isinstance(m, Stored)]
        return stored[0].type if stored else column_type(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return Text()
    if annotation in _COLUMN_TYPES:
        return _COLUMN_TYPES[annotation]()
    origin = typing.get_origin(annotation)
    if origin is dict or _is_model(annotation):
        return JSONB(none_as_null=True)
    if origin is list:
        (item,) = typing.get_args(annotation)
        return JSONB(none_as_null=True) if _is_model(item) else ARRAY(column_type(item))
    raise TypeError(f"no column type for {annotation!r}: add it to entity._COLUMN_TYPES")


def _is_model(annotation: Any) -> bool:
    """A nested pydantic model (a skill's knowledge settings, a run's citations): stored as jsonb."""
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _table(name: str, declared: dict[str, Declared], hidden: dict[str, Any]) -> Table:
    columns = [
        Column(
            f.name,
            f.stored or column_type(f.base),
            primary_key=f.spec.kind == "key",
            nullable=f.nullable,
            # The database fills it in (a default or a trigger): inserts may leave it out.
            server_default=FetchedValue() if f.spec.kind in ("key", "server") else None,
        )
        for f in declared.values()
        if f.spec.kind != "derived"
    ]
    for column, annotation in hidden.items():
        inner = _optional_of(annotation)
        columns.append(Column(column, column_type(inner or annotation), nullable=inner is not None))
    return Table(name, metadata, *columns)
