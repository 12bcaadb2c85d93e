"""Limits on a GraphQL document, checked before the expensive work, for every caller.

Parsing and validating happen before any resolver runs and before a token matters, and
graphql-core's validation is quadratic where fields merge into one response path
(`{ me{id} me{id} … }`). So a document goes through, in order:

1. its size in bytes (before anything is parsed);
2. parsing, which stops after `max_tokens`;
3. one linear walk of the parsed document (each fragment measured once): depth, aliases,
   directives, fields once fragments are expanded, and how many fields merge into one response
   path — what bounds validation's pairwise work;
4. validation;
5. with the request's variables, the cost of the operation to execute: every field costs 1 (or the
   `cost` its schema field declares), times the page size of every list above it — its `limit`
   argument, or `UNBOUNDED_LIST_SIZE` for lists without one; a Relay connection's page is its `first`
   or `last` (50 when neither is given).

Steps 2–4 run in a thread of their own, so the event loop keeps answering while a large document
is checked, and their outcome is cached by the document's text. Each refusal is a GraphQL error
whose `extensions.code` names the limit.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from threading import Lock
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSyntaxError,
    InlineFragmentNode,
    IntValueNode,
    NameNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    parse,
)
from graphql.language import OperationType as GraphQLOperationType
from graphql.language import Visitor, visit
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.types.graphql import OperationType

from fluxopus.config import Settings

# A list without a `limit` argument (a task's time logs, an entity's tags) is costed as this many items.
UNBOUNDED_LIST_SIZE = 10
# `limit` is refused above this by every list, so a larger value costs no more than this.
MAX_PAGE = 200
# A Relay connection's page when it is given neither `first` nor `last` (schema/pagination.DEFAULT_FIRST).
RELAY_DEFAULT_PAGE = 50
# What a field that calls a model (an embedding, a completion) declares as its `cost`: with the
# default limit, about twenty of them in one operation.
MODEL_CALL_COST = 1000
# Introspection answers from memory, but a whole schema is not free to serialise.
INTROSPECTION_COST = {"__schema": 2000, "__type": 100, "__typename": 0}


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 65_536
    max_tokens: int = 5_000
    max_depth: int = 15
    max_aliases: int = 100
    max_directives: int = 50
    max_fields: int = 2_000
    max_merged_fields: int = 25
    max_cost: int = 20_000

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_bytes=settings.graphql_max_bytes,
            max_tokens=settings.graphql_max_tokens,
            max_depth=settings.graphql_max_depth,
            max_aliases=settings.graphql_max_aliases,
            max_directives=settings.graphql_max_directives,
            max_fields=settings.graphql_max_fields,
            max_merged_fields=settings.graphql_max_merged_fields,
            max_cost=settings.graphql_max_cost,
        )


class LimitExceeded(GraphQLError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message, extensions={"code": code})


@dataclass(frozen=True)
class Prepared:
    """A document as the checks left it: parsed (None when it could not be) and its errors."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...]


class Documents:
    """Parses, checks and validates documents off the event loop, and remembers the outcome."""

    def __init__(self, limits: Limits, cache_size: int = 512) -> None:
        self.limits = limits
        # One thread: concurrent checks queue behind each other instead of taking turns with the
        # event loop for the GIL, so the loop always gets about half of it.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphql-documents")
        self._cache: OrderedDict[str, Prepared] = OrderedDict()
        self._cache_size = cache_size
        self._lock = Lock()

    async def prepare(self, query: str, schema: GraphQLSchema, rules: tuple[Any, ...]) -> Prepared:
        with self._lock:
            found = self._cache.get(query)
            if found is not None:
                self._cache.move_to_end(query)
                return found
        size = len(query.encode())
        if size > self.limits.max_bytes:
            # Not cached: a cache of refusals would keep the very documents the limit refuses.
            message = (
                f"The GraphQL document is {size:,} bytes; the limit is {self.limits.max_bytes:,}."
                " Pass large values as variables."
            )
            return Prepared(None, (LimitExceeded("DOCUMENT_TOO_LARGE", message),))
        loop = asyncio.get_running_loop()
        prepared = await loop.run_in_executor(self._executor, self._prepare, query, schema, rules)
        with self._lock:
            self._cache[query] = prepared
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return prepared

    def _prepare(self, query: str, schema: GraphQLSchema, rules: tuple[Any, ...]) -> Prepared:
        try:
            document = parse(query, max_tokens=self.limits.max_tokens)
        except GraphQLSyntaxError as exc:
            # graphql-core reports the token limit as a syntax error; it is a limit, not a typo.
            if "Document contains more than" in exc.message:
                message = f"The GraphQL document has more than {self.limits.max_tokens:,} tokens"
                return Prepared(None, (LimitExceeded("TOO_MANY_TOKENS", message),))
            return Prepared(None, (exc,))
        refusal = check_document(document, self.limits) or check_standalone_fields(document, schema)
        if refusal is not None:
            return Prepared(document, (refusal,))
        return Prepared(document, tuple(validate_document(schema, document, rules)))


# --- the walk before validation ---------------------------------------------------------------


class _Counter(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.aliases = 0
        self.directives = 0

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        self.aliases += node.alias is not None

    def enter_directive(self, *_: Any) -> None:
        self.directives += 1


class _Fragments:
    """Each fragment's expanded field count and depth, computed once: a chain of fragments that
    spread the next one twice doubles at every link, so nothing here may expand them."""

    def __init__(self, document: DocumentNode) -> None:
        self.definitions = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
        self._measured: dict[str, tuple[int, int]] = {}
        self._measuring: set[str] = set()
        self.cycle: str | None = None  # a fragment that spreads itself, found while measuring

    def measure(self, selection_set: SelectionSetNode | None) -> tuple[int, int]:
        """(fields once fragments are expanded, depth) of a selection set."""
        if selection_set is None:
            return 0, 0
        fields, depth = 0, 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                inner_fields, inner_depth = self.measure(selection.selection_set)
                fields += 1 + inner_fields
                depth = max(depth, 1 + inner_depth)
            else:
                inner_fields, inner_depth = self._inner(selection)
                fields += inner_fields
                depth = max(depth, inner_depth)
        return fields, depth

    def _inner(self, selection: Any) -> tuple[int, int]:
        if isinstance(selection, InlineFragmentNode):
            return self.measure(selection.selection_set)
        name = selection.name.value
        if name in self._measured:
            return self._measured[name]
        if name in self._measuring:
            self.cycle = name
            return 0, 0
        if name not in self.definitions:
            return 0, 0  # validation reports it
        self._measuring.add(name)
        self._measured[name] = self.measure(self.definitions[name].selection_set)
        self._measuring.discard(name)
        return self._measured[name]

    def fields(self, selection_sets: list[SelectionSetNode]) -> Iterator[FieldNode]:
        """The fields these selection sets contribute, through fragments, each fragment once."""
        spread: set[str] = set()
        pending = list(selection_sets)
        while pending:
            for selection in pending.pop().selections:
                if isinstance(selection, FieldNode):
                    yield selection
                elif isinstance(selection, InlineFragmentNode):
                    pending.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name not in spread and name in self.definitions:
                        spread.add(name)
                        pending.append(self.definitions[name].selection_set)


def check_document(document: DocumentNode, limits: Limits) -> LimitExceeded | None:
    counter = _Counter()
    visit(document, counter)
    if counter.aliases > limits.max_aliases:
        return LimitExceeded(
            "TOO_MANY_ALIASES", f"The document has {counter.aliases:,} aliases; the limit is {limits.max_aliases:,}"
        )
    if counter.directives > limits.max_directives:
        return LimitExceeded(
            "TOO_MANY_DIRECTIVES",
            f"The document has {counter.directives:,} directives; the limit is {limits.max_directives:,}",
        )
    fragments = _Fragments(document)
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    for operation in operations:
        fields, depth = fragments.measure(operation.selection_set)
        if depth > limits.max_depth:
            return LimitExceeded(
                "QUERY_TOO_DEEP", f"The query is nested {depth} levels deep; the limit is {limits.max_depth}"
            )
        if fields > limits.max_fields:
            return LimitExceeded(
                "TOO_MANY_FIELDS",
                f"The operation selects {fields:,} fields once fragments are expanded; the limit is"
                f" {limits.max_fields:,}",
            )
    if fragments.cycle is not None:  # validation would say so too, but the walk below must not loop
        return LimitExceeded("BAD_USER_INPUT", f'Cannot spread fragment "{fragments.cycle}" within itself')
    for operation in operations:
        refusal = _check_merging(fragments, [operation.selection_set], limits.max_merged_fields)
        if refusal is not None:
            return refusal
    return None


def _check_merging(fragments: _Fragments, selection_sets: list[SelectionSetNode], limit: int) -> LimitExceeded | None:
    """Fields with the same response name merge, and validation compares them pairwise, level by
    level: bound how many meet at one place. Walks at most the expanded size checked before."""
    merged: dict[str, list[FieldNode]] = {}
    for field in fragments.fields(selection_sets):
        merged.setdefault((field.alias or field.name).value, []).append(field)
    for name, fields in merged.items():
        if len(fields) > limit:
            return LimitExceeded(
                "FIELD_REPEATED",
                f"`{name}` is selected {len(fields):,} times at the same place; the limit is {limit:,}",
            )
        inner = [f.selection_set for f in fields if f.selection_set is not None]
        if inner:
            refusal = _check_merging(fragments, inner, limit)
            if refusal is not None:
                return refusal
    return None


def check_standalone_fields(document: DocumentNode, schema: GraphQLSchema) -> GraphQLError | None:
    """A mutation field that commits its own work (its schema field says `standalone`) cannot roll
    back with the rest of an operation, so it must be the operation's only field."""
    if schema.mutation_type is None:
        return None
    fragments = _Fragments(document)
    for operation in document.definitions:
        if not isinstance(operation, OperationDefinitionNode) or operation.operation != GraphQLOperationType.MUTATION:
            continue
        fields = list(fragments.fields([operation.selection_set]))
        for field in fields:
            definition = schema.mutation_type.fields.get(field.name.value)
            if definition is not None and _metadata(definition).get("standalone") and len(fields) > 1:
                return LimitExceeded(
                    "BAD_USER_INPUT",
                    f"`{field.name.value}` must be the only field of its mutation: it commits its own work"
                    " before it returns, so it could not be rolled back with the operation's other fields",
                )
    return None


def _metadata(definition: Any) -> Mapping[str, Any]:
    """What a schema module declared on a Strawberry field (`metadata={"cost": …}`)."""
    strawberry_field = (definition.extensions or {}).get("strawberry-definition")
    return getattr(strawberry_field, "metadata", None) or {}


# --- cost, with the request's variables -------------------------------------------------------


class _Cost:
    def __init__(self, schema: GraphQLSchema, document: DocumentNode, variables: Mapping[str, Any]) -> None:
        self.schema = schema
        self.fragments = _Fragments(document)
        self.variables = variables
        self._fragment_cost: dict[tuple[str, int | None], int] = {}
        self._connection_page: int | None = None  # the page of the connection being costed

    def selection_set(self, parent: Any, selection_set: SelectionSetNode | None) -> int:
        if selection_set is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(parent, selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = self.schema.get_type(condition.name.value) if condition else parent
                total += self.selection_set(inner, selection.selection_set)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment(selection.name.value)
        return total

    def fragment(self, name: str) -> int:
        key = (name, self._connection_page)  # a fragment on a connection costs by that connection's page
        if key not in self._fragment_cost:
            self._fragment_cost[key] = 0  # a cycle costs nothing more (validation refused it already)
            definition = self.fragments.definitions.get(name)
            if definition is not None:
                parent = self.schema.get_type(definition.type_condition.name.value)
                self._fragment_cost[key] = self.selection_set(parent, definition.selection_set)
        return self._fragment_cost[key]

    def field(self, parent: Any, node: FieldNode) -> int:
        name = node.name.value
        if name in INTROSPECTION_COST:
            return INTROSPECTION_COST[name]
        definition = parent.fields.get(name) if isinstance(parent, GraphQLObjectType) else None
        if definition is None:  # an interface or union member, already validated: cost it plainly
            return 1 + self.selection_set(None, node.selection_set)
        own = int(_metadata(definition).get("cost", 1))
        field_type = definition.type.of_type if isinstance(definition.type, GraphQLNonNull) else definition.type
        if "first" in definition.args and "last" in definition.args:  # a Relay connection: its page's size
            outer, self._connection_page = self._connection_page, self._relay_page_size(node)
            inner = self.selection_set(get_named_type(field_type), node.selection_set)
            self._connection_page = outer
        else:
            inner = self.selection_set(get_named_type(field_type), node.selection_set)
        if isinstance(field_type, GraphQLList):
            # A connection's edges and nodes hold its page; any other list, its `limit`.
            page = self._connection_page if _is_connection(parent) else None
            inner *= page if page is not None else self._page_size(node, definition)
        return own + inner

    def _argument(self, node: FieldNode, name: str, default: Any) -> Any:
        for argument in node.arguments or ():
            if argument.name.value != name:
                continue
            if isinstance(argument.value, IntValueNode):
                return int(argument.value.value)
            if isinstance(argument.value, VariableNode):
                return self.variables.get(argument.value.name.value, default)
        return default

    def _page_size(self, node: FieldNode, definition: Any) -> int:
        if "limit" not in definition.args:
            return UNBOUNDED_LIST_SIZE
        value = self._argument(node, "limit", definition.args["limit"].default_value)
        return min(value, MAX_PAGE) if isinstance(value, int) and value >= 0 else MAX_PAGE

    def _relay_page_size(self, node: FieldNode) -> int:
        sizes = [self._argument(node, name, None) for name in ("first", "last")]
        given = [v for v in sizes if v is not None]
        if not given:
            return RELAY_DEFAULT_PAGE
        return min(max(given), MAX_PAGE) if all(isinstance(v, int) and v >= 0 for v in given) else MAX_PAGE


def _is_connection(type_: Any) -> bool:
    return isinstance(type_, GraphQLObjectType) and {"edges", "nodes", "pageInfo"} <= type_.fields.keys()


def operation_cost(
    schema: GraphQLSchema, document: DocumentNode, operation_name: str | None, variables: Mapping[str, Any]
) -> int:
    operation = next(
        (
            d
            for d in document.definitions
            if isinstance(d, OperationDefinitionNode)
            and (operation_name is None or (d.name is not None and d.name.value == operation_name))
        ),
        None,
    )
    if operation is None:
        return 0
    root = schema.get_root_type(operation.operation)
    return _Cost(schema, document, variables).selection_set(root, operation.selection_set)


# --- the extension -----------------------------------------------------------------------------


class DocumentLimits(SchemaExtension):
    """Replaces Strawberry's parsing and validation with the checked, cached ones of `Documents`
    (the GraphQL router's, found on the transport context this operation starts with)."""

    def __init__(self) -> None:
        self.documents: Documents | None = None
        self.prepared: Prepared | None = None

    def on_operation(self) -> Iterator[None]:
        self.documents = self.execution_context.context.documents
        yield

    async def on_parse(self) -> Any:
        context = self.execution_context
        if self.documents is not None and context.graphql_document is None and context.query:
            schema = context.schema._schema
            self.prepared = await self.documents.prepare(context.query, schema, tuple(context.validation_rules))
            # A document that could not be parsed still needs one for Strawberry to carry the errors to
            # on_validate, which answers them before anything else reads it.
            context.graphql_document = self.prepared.document or _placeholder(context)
        yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        if self.prepared is not None and self.documents is not None:
            errors = list(self.prepared.errors)
            if not errors and self.prepared.document is not None:
                cost = operation_cost(
                    context.schema._schema, self.prepared.document, context.operation_name, context.variables or {}
                )
                if cost > self.documents.limits.max_cost:
                    message = (
                        f"The operation's estimated cost is {cost:,}; the limit is {self.documents.limits.max_cost:,}."
                        f" Each field costs 1, times the `limit` of every list above it ({UNBOUNDED_LIST_SIZE} for"
                        " lists without one); ask for smaller pages or split the operation."
                    )
                    errors = [LimitExceeded("QUERY_TOO_COSTLY", message)]
            context.pre_execution_errors = errors
        yield


def _placeholder(context: Any) -> DocumentNode:
    allowed = set(context.allowed_operations)
    kind = next(k for k in (OperationType.QUERY, OperationType.MUTATION, OperationType.SUBSCRIPTION) if k in allowed)
    name = NameNode(value=context.provided_operation_name) if context.provided_operation_name else None
    selection = FieldNode(name=NameNode(value="__typename"), arguments=(), directives=())
    operation = OperationDefinitionNode(
        operation=GraphQLOperationType(kind.value),
        name=name,
        variable_definitions=(),
        directives=(),
        selection_set=SelectionSetNode(selections=(selection,)),
    )
    return DocumentNode(definitions=(operation,))
