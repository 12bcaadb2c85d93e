"""GraphQL reads compiled to one SQL statement that returns the `data` JSON, as PostGraphile and
pg_graphql do, instead of Strawberry resolving field by field (its executor alone cost more than a
whole PostGraphile request).

Strawberry stays the canonical model: it parses, checks the limits, validates and owns
introspection; a query runs here only when every field it selects has a plan, and otherwise — a
mutation, a subscription, a field without a plan, an argument a resolver would refuse, no caller —
through Strawberry as before, which is also what answers every error. A plan says which rows a
field reads, with the statements the resolvers themselves run (`resolvers.tasks.task_rows` …), so
both paths read the same rows in the same order under the same RLS transaction. Scalar fields are
the declared models' columns, formatted by PostgreSQL as Strawberry would write them
(db/json_select.py). tests/test_compiled_reads.py runs random queries both ways and compares.

Field selection follows graphql-core's own collection (aliases, fragments, @include/@skip with the
request's variables), so what is selected cannot differ. The statement built for a document,
operation and variables is kept (a bounded cache): a client repeating a query reuses it, and
PostgreSQL's prepared statement with it.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLScalarType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    get_named_type,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.execution.collect_fields import FieldDetails, FragmentDetails, collect_fields, collect_subfields
from graphql.execution.values import VariableValues, get_argument_values, get_variable_values
from sqlalchemy import ColumnElement, FromClause, Select, Text, cast, func, select
from strawberry.extensions import SchemaExtension

from fluxopus.db.json_select import TooWide, json_list, json_object, json_one, json_text, json_time
from fluxopus.db.prepared import Prepared
from fluxopus.errors import DomainError
from fluxopus.resolvers.context import Context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """How a field reads its rows: `rows` takes a root field's arguments (by their Python names), or a
    nested field's parent row (its columns); `many` for a list, else the first row or null."""

    rows: Callable[..., Select[Any]]
    many: bool


ROOTS: dict[str, Plan] = {}  # Query field -> plan
NESTED: dict[tuple[str, str], Plan] = {}  # (GraphQL type, field) -> plan

# How often each path answered a query (tests check the compiled one really runs).
stats: Counter[str] = Counter()


def root(field: str, *, many: bool) -> Callable[[Callable[..., Select[Any]]], Callable[..., Select[Any]]]:
    def register(rows: Callable[..., Select[Any]]) -> Callable[..., Select[Any]]:
        ROOTS[field] = Plan(rows, many)
        return rows

    return register


def nested(
    type_name: str, field: str, *, many: bool
) -> Callable[[Callable[..., Select[Any]]], Callable[..., Select[Any]]]:
    def register(rows: Callable[..., Select[Any]]) -> Callable[..., Select[Any]]:
        NESTED[(type_name, field)] = Plan(rows, many)
        return rows

    return register


def paged(rows: Select[Any], query: Any) -> Select[Any]:
    """A root list's rows, cut to the page its arguments ask for (`query.limit`, `query.offset`)."""
    return rows.limit(query.limit).offset(query.offset)


class NotPlannable(Exception):
    """The query (or its arguments) is Strawberry's to answer."""


class _Compiler:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode) -> None:
        self.schema = schema
        self.operation = operation
        self.fragments = {
            d.name.value: FragmentDetails(d) for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.variables: VariableValues | None = None

    def statement(self, raw_variables: dict[str, Any]) -> Select[Any]:
        if any(getattr(f.definition, "variable_definitions", None) for f in self.fragments.values()):
            raise NotPlannable("fragment variables")
        coerced = get_variable_values(self.schema, self.operation.variable_definitions or (), raw_variables)
        if not isinstance(coerced, VariableValues):
            raise NotPlannable("variables")  # Strawberry reports them
        self.variables = coerced
        query = self.schema.query_type
        assert query is not None
        fields = collect_fields(self.schema, self.fragments, coerced, query, self.operation).grouped_field_set
        pairs: list[tuple[str, ColumnElement[Any]]] = []
        for key, details in fields.items():
            node = details[0].node
            name = node.name.value
            if name == "__typename":
                pairs.append((key, json_text(query.name)))
                continue
            plan = ROOTS.get(name)
            if plan is None:
                raise NotPlannable(name)
            definition = query.fields[name]
            args = get_argument_values(definition, node, coerced)
            by_python_name = {_python_name(definition.args[k], k): v for k, v in args.items()}
            try:
                rows = plan.rows(**by_python_name)
            except DomainError as exc:
                raise NotPlannable(f"{name}: {exc}") from exc
            pairs.append((key, self._rows(plan, rows, definition.type, details)))
        # As text: written into the response as PostgreSQL made it, never parsed on the fast path.
        return select(cast(json_object(pairs), Text))

    def _rows(
        self, plan: Plan, rows: Select[Any], type_: GraphQLOutputType, details: list[FieldDetails]
    ) -> ColumnElement[Any]:
        target = get_named_type(type_)
        if not isinstance(target, GraphQLObjectType):
            raise NotPlannable(f"{target} is not an object type")
        subfields = collect_subfields(
            self.schema, self.fragments, self._variables, self.operation, target, details
        ).grouped_field_set

        def element(row: FromClause) -> ColumnElement[Any]:
            return self._object(target, row, subfields)

        return json_list(rows, element) if plan.many else json_one(rows, element)

    def _object(
        self, type_: GraphQLObjectType, row: FromClause, fields: dict[str, list[FieldDetails]]
    ) -> ColumnElement[Any]:
        pairs: list[tuple[str, ColumnElement[Any]]] = []
        for key, details in fields.items():
            node: FieldNode = details[0].node
            name = node.name.value
            if name == "__typename":
                pairs.append((key, json_text(type_.name)))
                continue
            definition = type_.fields[name]
            plan = NESTED.get((type_.name, name))
            if plan is not None:
                if node.arguments:
                    raise NotPlannable(f"{type_.name}.{name} with arguments")
                rows = plan.rows(row.c).correlate(row)
                pairs.append((key, self._rows(plan, rows, definition.type, details)))
                continue
            field = definition.extensions.get("strawberry-definition")
            if field is None or field.base_resolver is not None or field.python_name not in row.c:
                raise NotPlannable(f"{type_.name}.{name}")
            pairs.append((key, _scalar(definition.type, row.c[field.python_name])))
        try:
            return json_object(pairs)
        except TooWide as exc:
            raise NotPlannable(str(exc)) from exc

    @property
    def _variables(self) -> VariableValues:
        assert self.variables is not None
        return self.variables


def _python_name(argument: Any, graphql_name: str) -> str:
    definition = argument.extensions.get("strawberry-definition")
    return str(definition.python_name) if definition is not None else graphql_name


_AS_THEY_ARE = ("ID", "String", "Int", "Float", "Boolean", "Date", "JSON")


def _scalar(type_: GraphQLOutputType, column: ColumnElement[Any]) -> ColumnElement[Any]:
    """The column as Strawberry would write the field: most as PostgreSQL's to_json does already."""
    inner = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
    if isinstance(inner, GraphQLScalarType) and inner.name == "DateTime":
        return json_time(column)
    # Float: the columns are double precision, which PostgreSQL writes as Python does (shortest exact).
    if isinstance(inner, GraphQLScalarType) and inner.name in (
        "ID",
        "String",
        "Int",
        "Float",
        "Boolean",
        "Date",
        "JSON",
    ):
        return column
    if isinstance(inner, GraphQLEnumType) and all(name == value.value.upper() for name, value in inner.values.items()):
        # Stored lower case as REST shows them, named upper case in GraphQL (schema/_derive.graphql_enum):
        # ASCII both, so upper() under the "C" collation is exact, and a third of the default's cost
        # (0.05 against 0.15 µs a row).
        return func.upper(column.collate("C"))
    if isinstance(inner, GraphQLList):
        item = get_named_type(inner)
        if isinstance(item, GraphQLScalarType) and item.name in ("ID", "String", "Int", "Boolean"):
            return column
    raise NotPlannable(f"no JSON form for {type_}")


MAX_CACHED_VARIABLES = 2048  # characters of JSON


@dataclass(frozen=True)
class CompiledQuery:
    """A query's one statement, compiled to SQL once, and the values it runs with (the arguments')."""

    prepared: Prepared
    args: list[Any]
    name: str | None  # the operation's, for the access log of the fast path

    @classmethod
    def of(cls, statement: Select[Any], name: str | None) -> CompiledQuery:
        prepared = Prepared(statement)
        return cls(prepared, prepared.args({}), name)


class Statements:
    """The statements built lately, by document, operation and variables (a client repeats its queries).
    A document is here only once Strawberry has parsed, limited and validated it with these variables
    and found every field plannable, so `find` (the fast path: schema/router.CompiledFirst) may answer
    the same request again without Strawberry."""

    def __init__(self, size: int = 128) -> None:
        self._cache: OrderedDict[tuple[str, str | None, str], CompiledQuery | None] = OrderedDict()
        self._size = size

    def get(
        self, schema: GraphQLSchema, query: str, document: DocumentNode, operation_name: str | None, variables: Any
    ) -> CompiledQuery | None:
        key = _key(query, operation_name, variables)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        if len(key[2]) > MAX_CACHED_VARIABLES:  # large values are not worth keeping: build, run, forget
            return self._build(schema, document, operation_name, variables)
        compiled = self._build(schema, document, operation_name, variables)
        self._cache[key] = compiled
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return compiled

    def find(self, query: str, operation_name: str | None, variables: Any) -> CompiledQuery | None:
        """The statement of a request seen and checked before, or None."""
        key = _key(query, operation_name, variables)
        compiled = self._cache.get(key)
        if compiled is not None:
            self._cache.move_to_end(key)
        return compiled

    def _build(
        self, schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: Any
    ) -> CompiledQuery | None:
        operation = _operation(document, operation_name)
        if operation is not None and operation.operation is OperationType.QUERY:
            try:
                statement = _Compiler(schema, document, operation).statement(variables or {})
                return CompiledQuery.of(statement, operation.name.value if operation.name else None)
            except NotPlannable as exc:
                log.debug("GraphQL query runs through Strawberry: %s", exc)
        return None


def _key(query: str, operation_name: str | None, variables: Any) -> tuple[str, str | None, str]:
    return (query, operation_name, json.dumps(variables or {}, sort_keys=True, default=str))  # none = {}


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        return operations[0] if len(operations) == 1 else None
    return next((o for o in operations if o.name is not None and o.name.value == name), None)


class CompiledReads(SchemaExtension):
    """Answers a plannable query with its one statement before Strawberry's executor would run.
    Listed before RlsOperation (it reads the transport context that one replaces), it executes after
    it: in the operation's RLS transaction."""

    def __init__(self) -> None:
        self.statements: Statements | None = None

    def on_operation(self) -> Any:
        transport = self.execution_context.context
        self.statements = getattr(transport, "compiled_statements", None)
        yield

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context
        ctx = context.context
        if (
            self.statements is not None
            and isinstance(ctx, Context)
            and ctx.claims is not None
            and not context.pre_execution_errors
            and context.graphql_document is not None
            and context.query is not None
        ):
            compiled = self.statements.get(
                context.schema._schema,
                context.query,
                context.graphql_document,
                # As the request named it (None when it did not): the fast path keys it so, before parsing.
                getattr(context, "_provided_operation_name", context.operation_name),
                context.variables,
            )
            if compiled is not None:
                try:
                    value = (await ctx.db.fetch(compiled.prepared, compiled.args))[0][0]
                except Exception:  # noqa: BLE001 - Strawberry answers it again, with its error
                    log.debug("compiled GraphQL query failed; Strawberry answers it", exc_info=True)
                    await ctx.db.rollback()  # a read: nothing to keep, and a fresh transaction for Strawberry
                else:
                    context.result = GraphQLExecutionResult(data=json.loads(value))
                    stats["compiled"] += 1
            if context.result is None:
                stats["strawberry"] += 1
        yield
