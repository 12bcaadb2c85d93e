"""The GraphQL schema as a frontend developer reads it (GraphiQL's docs, codegen's comments): every
type, field, argument, input field and enum value is described."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
    build_schema,
    specified_scalar_types,
)

from fluxopus.models.common import documented
from fluxopus.models.tasks import TaskStatus
from fluxopus.schema.root import schema


def undescribed(graphql: GraphQLSchema) -> list[str]:
    """Every element of the schema without a description, as `Type`, `Type.field`, `Type.field(arg)`
    or `Enum.VALUE`; GraphQL's own types (`__*`) and built-in scalars are not the schema's to describe."""
    missing: list[str] = []
    for name, type_ in sorted(graphql.type_map.items()):
        if name.startswith("__") or name in specified_scalar_types:
            continue
        if not (type_.description or "").strip():
            missing.append(name)
        if isinstance(type_, GraphQLObjectType | GraphQLInterfaceType):
            for field_name, field in type_.fields.items():
                if not (field.description or "").strip():
                    missing.append(f"{name}.{field_name}")
                missing += [
                    f"{name}.{field_name}({arg_name})"
                    for arg_name, arg in field.args.items()
                    if not (arg.description or "").strip()
                ]
        elif isinstance(type_, GraphQLInputObjectType):
            missing += [f"{name}.{f}" for f, field in type_.fields.items() if not (field.description or "").strip()]
        elif isinstance(type_, GraphQLEnumType):
            missing += [f"{name}.{v}" for v, value in type_.values.items() if not (value.description or "").strip()]
    return missing


def test_every_type_field_argument_and_enum_value_is_described() -> None:
    missing = undescribed(schema._schema)
    assert not missing, f"{len(missing)} schema elements have no description:\n" + "\n".join(missing)


def test_the_check_finds_what_is_undescribed() -> None:
    """The walk above must see each kind of element, or a pass would prove nothing."""
    sdl = '''
        """Described"""
        type Query { a(x: Int): T, """ok""" b: Int }
        type T { c: E }
        enum E { ONE }
        input I { d: Int }
        scalar S
        interface N { e: Int }
    '''
    missing = undescribed(build_schema(sdl))
    assert missing == ["E", "E.ONE", "I", "I.d", "N", "N.e", "Query.a", "Query.a(x)", "S", "T", "T.c"]


def test_committed_sdl_carries_the_descriptions() -> None:
    """schema.graphql is what codegen and editors read: it must say the same (tests/test_platform.py
    holds it equal to the code; this, that nothing was lost on the way)."""
    printed = build_schema(schema.as_str())
    assert undescribed(printed) == []


def test_an_enum_member_without_a_doc_is_refused_where_it_is_declared() -> None:
    with pytest.raises(TypeError, match=r"documents \['a'\], its members are \['a', 'b'\]"):

        @documented(a="A")
        class Letters(StrEnum):
            a = "a"
            b = "b"


def test_every_scalar_of_the_schema_names_its_specification() -> None:
    scalars = {
        name: type_.specified_by_url
        for name, type_ in schema._schema.type_map.items()
        if isinstance(type_, GraphQLScalarType) and name not in specified_scalar_types and not name.startswith("__")
    }
    assert scalars == {
        "Date": "https://scalars.graphql.org/andimarek/local-date",
        "DateTime": "https://scalars.graphql.org/andimarek/date-time",
        "JSON": "https://www.rfc-editor.org/rfc/rfc8259",
    }
    assert '@specifiedBy(url: "https://scalars.graphql.org/andimarek/date-time")' in schema.as_str()


def test_dates_are_rfc_3339_full_dates_both_ways() -> None:
    date = schema._schema.type_map["Date"]
    assert isinstance(date, GraphQLScalarType)
    assert date.parse_value("2026-12-31") == dt.date(2026, 12, 31)
    assert date.serialize(dt.date(2026, 1, 2)) == "2026-01-02"
    for other_iso_8601 in ("20261231", "2026-W53-4", "2026-12-31T00:00:00Z", 20261231):
        with pytest.raises(ValueError, match="YYYY-MM-DD"):
            date.parse_value(other_iso_8601)


def test_enum_values_are_upper_case_in_graphql_and_lower_case_behind_it() -> None:
    """GraphQL spells enum values IN_PROGRESS; REST, the models and the database keep in_progress."""
    enums = [t for n, t in schema._schema.type_map.items() if isinstance(t, GraphQLEnumType) and not n.startswith("__")]
    assert {t.name for t in enums} >= {"TaskStatus", "Visibility", "Role", "RunStatus", "SearchMode", "EntityType"}
    for enum in enums:
        for name, value in enum.values.items():
            assert name == name.upper() and value.value == name.lower(), (enum.name, name, value.value)
    assert "KnowledgeVisibility" not in schema._schema.type_map  # one Visibility for skills and knowledge
    status = schema._schema.type_map["TaskStatus"]
    assert isinstance(status, GraphQLEnumType)
    assert status.serialize(TaskStatus.in_progress) == "IN_PROGRESS"
    assert status.parse_value("IN_PROGRESS") is TaskStatus.in_progress
