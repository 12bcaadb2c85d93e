"""The entity declarations (models/) against the live database the migrations built.

Every declared table must match PostgreSQL column for column: name, type and nullability, and the
declared input limits must be the CHECK constraints' (lengths, ranges, enum values). A migration
and a declaration that disagree fail here, not in production.
"""

from __future__ import annotations

import re
from enum import Enum, StrEnum
from typing import Annotated, Any
from uuid import UUID

import pytest
from sqlalchemy import Table, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fluxopus.models import connections, knowledge, members, skills, tags, tasks
from fluxopus.models.entity import Declared, Entity, Key, Server, Write, metadata
from fluxopus.schema._derive import graphql_annotation, object_type, out
from fluxopus.schema.tasks import Task as TaskType

ENTITIES: list[type[Entity]] = [
    tasks.Task,
    tasks.TimeLog,
    tags.Tag,
    skills.Skill,
    skills.SkillVersion,
    skills.SkillRun,
    knowledge.KnowledgeItem,
]
_ = connections, members  # their tables are plain SQLAlchemy tables in the same metadata
PLAIN_TABLES = ["entity_tags", "connections", "oauth_states", "users", "companies", "members", "invitations"]


def _pg_type(column_type: Any) -> str:
    return str(column_type.compile(dialect=postgresql.dialect())).lower()


async def _columns(conn: AsyncConnection, table: str) -> dict[str, tuple[str, bool]]:
    rows = await conn.execute(
        text(
            "select column_name, data_type, udt_name, is_nullable = 'YES' as nullable"
            " from information_schema.columns where table_schema = 'public' and table_name = :t"
        ),
        {"t": table},
    )
    found = {}
    for r in rows.mappings():
        kind = f"{r['udt_name'].removeprefix('_')}[]" if r["data_type"] == "ARRAY" else r["data_type"]
        found[r["column_name"]] = (kind, r["nullable"])
    return found


async def _checks(conn: AsyncConnection, table: str) -> list[str]:
    rows = await conn.execute(
        text(
            "select pg_get_constraintdef(c.oid) from pg_constraint c"
            " where c.conrelid = cast(:t as regclass) and c.contype = 'c'"
        ),
        {"t": f"public.{table}"},
    )
    return [r[0] for r in rows]


_BOUND = {">=": "min", "<=": "max", ">": "min_exclusive", "<": "max_exclusive"}


def _limits(checks: list[str]) -> dict[str, dict[str, Any]]:
    """Per column: char_length bounds, numeric bounds and allowed values, as the CHECKs say."""
    found: dict[str, dict[str, Any]] = {}
    for check in checks:
        for column, op, value in re.findall(r"char_length\((\w+)\) (>=|<=) (\d+)", check):
            found.setdefault(column, {})[f"{_BOUND[op]}_length"] = int(value)
        for column, op, value in re.findall(r"[( ](\w+) (>=|<=) \(?(-?[\d.]+)\)?(?:::[\w ]+)?", check):
            if column != "char_length":
                found.setdefault(column, {})[_BOUND[op]] = float(value)
        for column, values in re.findall(r"\(?(\w+) = ANY \(ARRAY\[(.*?)\]\)", check):
            found.setdefault(column, {})["values"] = set(re.findall(r"'([^']*)'", values))
    return found


def _declared_limits(field: Declared) -> dict[str, Any]:
    spec, limits = field.spec, {}
    if spec.min_length is not None:
        limits["min_length"] = spec.min_length
    if spec.max_length is not None:
        limits["max_length"] = spec.max_length
    if spec.ge is not None:
        limits["min"] = float(spec.ge)
    if spec.le is not None:
        limits["max"] = float(spec.le)
    if isinstance(field.base, type) and issubclass(field.base, Enum):
        limits["values"] = {e.value for e in field.base}
    return limits


async def differences(conn: AsyncConnection, table: Table, declared: dict[str, Declared], in_db: str) -> list[str]:
    """What the declaration (`table`, `declared`) says that PostgreSQL's table `in_db` does not.

    `declared` empty: compare columns only (a table no client writes to directly)."""
    problems = []
    live = await _columns(conn, in_db)
    if not live:
        return [f"{in_db}: no such table"]
    for name in sorted(set(live) - set(table.c.keys())):
        problems.append(f"{in_db}.{name}: in the database, not declared")
    for column in table.c:
        if column.name not in live:
            problems.append(f"{in_db}.{column.name}: declared, not in the database")
            continue
        kind, nullable = live[column.name]
        if _pg_type(column.type) != kind:
            problems.append(f"{in_db}.{column.name}: declared {_pg_type(column.type)}, the database has {kind}")
        if column.nullable != nullable:
            problems.append(
                f"{in_db}.{column.name}: declared {'nullable' if column.nullable else 'not null'}, the database"
                f" says {'nullable' if nullable else 'not null'}"
            )
    checks = _limits(await _checks(conn, in_db))
    for field in declared.values():
        if field.spec.kind == "derived":
            continue
        # Only what clients write is limited on the way in; the rest is the database's business.
        want = _declared_limits(field) if field.spec.kind == "write" else {}
        have = {k: v for k, v in checks.get(field.name, {}).items() if field.spec.kind == "write" or k == "values"}
        if field.spec.kind != "write":
            want = {k: v for k, v in _declared_limits(field).items() if k == "values"}
            have = {k: v for k, v in have.items() if k == "values"}
        if want != have:
            problems.append(f"{in_db}.{field.name}: declared limits {want}, the database's checks {have}")
    return problems


@pytest.fixture(scope="module")
async def conn(engine: AsyncEngine) -> Any:
    async with engine.connect() as connection:
        yield connection


@pytest.mark.parametrize("entity", ENTITIES, ids=lambda e: e.__name__)
async def test_each_declaration_matches_its_table(conn: AsyncConnection, entity: type[Entity]) -> None:
    # Limits matter where clients write; a table the service fills (versions, runs) has columns only.
    written = hasattr(entity, "create") or hasattr(entity, "update")
    assert await differences(conn, entity.table, entity.declared if written else {}, entity.table.name) == []


@pytest.mark.parametrize("table", PLAIN_TABLES)
async def test_each_plain_table_matches(conn: AsyncConnection, table: str) -> None:
    assert await differences(conn, metadata.tables[table], {}, table) == []


def test_every_declared_table_is_checked() -> None:
    checked = {e.table.name for e in ENTITIES} | set(PLAIN_TABLES)
    assert set(metadata.tables) == checked


async def test_a_declaration_that_disagrees_is_reported(conn: AsyncConnection) -> None:
    """The checker itself, on a Task declared wrong in each way it can be."""

    class Drifted(Entity, table="drifted_tasks"):
        id: Annotated[UUID, Key()]
        company_id: Annotated[UUID | None, Server()]  # not null in the database
        title: Annotated[str, Write(min_length=1, max_length=400)]  # its check says 500
        description: Annotated[int | None, Write()]  # text in the database
        status: Annotated[Shade, Write()]  # other values than the check's
        estimate: Annotated[int | None, Write()]  # no such column

    metadata.remove(Drifted.table)
    problems = await differences(conn, Drifted.table, Drifted.declared, "tasks")
    assert "tasks.company_id: declared nullable, the database says not null" in problems
    assert "tasks.description: declared integer, the database has text" in problems
    assert "tasks.estimate: declared, not in the database" in problems
    assert "tasks.priority: in the database, not declared" in problems
    assert any(p.startswith("tasks.title: declared limits {'min_length': 1, 'max_length': 400}") for p in problems)
    assert any(p.startswith("tasks.status: declared limits {'values': {") for p in problems)


class Shade(StrEnum):
    light = "light"
    dark = "dark"


def test_declared_inputs_refuse_what_the_database_would() -> None:
    create = tasks.Task.create
    assert create.model_validate({"title": "x" * 500}).model_dump()["title"] == "x" * 500
    with pytest.raises(ValueError, match="at most 500"):
        create.model_validate({"title": "x" * 501})
    with pytest.raises(ValueError, match="unknown field|Extra inputs"):
        create.model_validate({"title": "ok", "company_id": str(UUID(int=1))})
    assert "company_id" not in tasks.Task.update.model_fields  # server fields are never written


def test_graphql_objects_are_the_models_checked() -> None:
    log = tasks.TimeLog.model_construct()
    with pytest.raises(TypeError, match="TimeLog is not the model of GraphQL type Task"):
        out(TaskType, log)
    with pytest.raises(TypeError, match="no GraphQL type"):
        graphql_annotation(complex)


def test_a_graphql_type_cannot_add_a_plain_field_its_model_lacks() -> None:
    with pytest.raises(TypeError, match="Extra declares estimate, which Task does not have"):

        @object_type(tasks.Task)
        class Extra:
            estimate: int


def test_a_field_without_a_marker_is_refused() -> None:
    with pytest.raises(TypeError, match="needs Key\\(\\), Server\\(\\), Write\\(\\) or Derived\\(\\)"):

        class Unmarked(Entity):
            name: str


async def test_the_taggable_registries_agree(conn: AsyncConnection) -> None:
    """models/tags.TAGGABLE (loaders, GraphQL `tags`) and SQL's taggable_types (check, RLS, triggers)."""
    rows = await conn.execute(text("select entity_type, relation::text from taggable_types"))
    in_sql = {r[0]: r[1] for r in rows}
    assert in_sql == {kind.value: entity.table.name for kind, entity in tags.TAGGABLE.items()}
    assert {e.value for e in tags.EntityType} == set(in_sql)
    triggers = await conn.execute(
        text(
            "select c.relname from pg_trigger t join pg_class c on c.oid = t.tgrelid"
            " where t.tgname = c.relname || '_delete_tags' and not t.tgisinternal"
        )
    )
    assert {r[0] for r in triggers} == set(in_sql.values())
    can_read = (await conn.execute(text("select pg_get_functiondef('fluxopus.can_read_entity'::regproc)"))).scalar()
    for kind, table in in_sql.items():
        assert f"when '{kind}' then exists (select 1 from {table} x" in can_read


def test_graphql_tags_fields_are_the_registrys() -> None:
    from fluxopus.schema.root import schema

    with_tags = {
        t.name
        for t in schema._schema.type_map.values()
        # A type's tags are `tags: [Tag!]!`; a skill's knowledge filter (SkillKnowledge.tags) names tag ids.
        if hasattr(t, "fields")
        and "tags" in t.fields
        and str(t.fields["tags"].type) == "[Tag!]!"
        and t.name not in ("Query",)
    }
    assert with_tags == {"Task", "Skill", "KnowledgeItem"} == {e.__name__ for e in tags.TAGGABLE.values()}
