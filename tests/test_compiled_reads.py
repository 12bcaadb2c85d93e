"""GraphQL reads compiled to one SQL statement (schema/compiled.py) answer exactly what Strawberry's
executor answers: the same JSON, key order and errors included.

A generator writes random valid queries over the schema — nested fields, aliases, named and inline
fragments, variables, @include/@skip, arguments good and bad, and now and then a field without a
plan — and each runs against two apps on one database, one compiling reads and one not, as an
admin, a member and someone of another company. FLUXOPUS_DIFFERENTIAL_CASES sets how many (CI runs
the default; more on demand), FLUXOPUS_DIFFERENTIAL_SEED replays a run.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from graphql import GraphQLList, GraphQLNonNull, GraphQLObjectType, get_named_type, is_leaf_type
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.config import Settings
from fluxopus.schema import compiled
from fluxopus.schema.root import schema
from tests.utils.builders import Company, User, create_skill, create_tag, create_task, make_company

CASES = int(os.environ.get("FLUXOPUS_DIFFERENTIAL_CASES", "1000"))
SEED = int(os.environ.get("FLUXOPUS_DIFFERENTIAL_SEED", "20261204"))
GRAPHQL = schema._schema

# Roots the generator picks: those with a plan, and some without (which both apps answer through
# Strawberry; a query mixing them must fall back whole).
PLANNED_ROOTS = sorted(compiled.ROOTS)
OTHER_ROOTS = ["me", "company", "entityTags", "skillVersions"]


@dataclass
class World:
    users: list[User]
    task_ids: list[str]
    user_ids: list[str]
    words: list[str]
    skill_ids: list[str]
    knowledge_ids: list[str]


@dataclass
class Query:
    """A document being written: its variables (name -> (type, value)) and fragments."""

    rng: random.Random
    world: World
    variables: dict[str, tuple[str, Any]] = field(default_factory=dict)
    fragments: dict[str, str] = field(default_factory=dict)

    def variable(self, type_: str, value: Any) -> str:
        name = f"v{len(self.variables)}"
        self.variables[name] = (type_, value)
        return f"${name}"

    def document(self) -> tuple[str, dict[str, Any]]:
        roots = PLANNED_ROOTS if self.rng.random() < 0.85 else [*PLANNED_ROOTS, *OTHER_ROOTS]
        body = self.selection(GRAPHQL.query_type, depth=0, roots=roots)
        header = ", ".join(f"${n}: {t}" for n, (t, _) in self.variables.items())
        name = self.rng.choice(["", "Q", "ReadThings"])
        head = f"query {name}({header})" if header else f"query {name}" if name else ""
        text = f"{head} {body} " + " ".join(self.fragments.values())
        return text, {n: v for n, (_, v) in self.variables.items()}

    def selection(self, type_: GraphQLObjectType, depth: int, roots: list[str] | None = None) -> str:
        names = roots if roots is not None else list(type_.fields)
        if depth >= 2:
            names = [n for n in names if is_leaf_type(get_named_type(type_.fields[n].type))]
        picked = self.rng.sample(names, k=min(len(names), self.rng.randint(1, 5)))
        parts = [self.field(type_, name, depth) for name in picked]
        if self.rng.random() < 0.2:
            parts.append("__typename")
        if roots is None and self.rng.random() < 0.3:  # the same fields again, through a fragment
            parts.append(self.fragment(type_, depth))
        self.rng.shuffle(parts)
        return "{ " + " ".join(parts) + " }"

    def fragment(self, type_: GraphQLObjectType, depth: int) -> str:
        inner = self.selection(type_, depth)
        if self.rng.random() < 0.5:
            return f"... on {type_.name} {inner}"
        name = f"F{len(self.fragments)}"
        self.fragments[name] = f"fragment {name} on {type_.name} {inner}"
        return f"...{name}"

    def field(self, type_: GraphQLObjectType, name: str, depth: int) -> str:
        definition = type_.fields[name]
        args = self.arguments(type_.name, name)
        target = get_named_type(definition.type)
        # An alias of its own per field: two different argument sets under one name would not validate.
        alias = f"a{self.rng.randrange(10**6)}: " if self.rng.random() < 0.3 else ""
        text = f"{alias}{name}{args}"
        if self.rng.random() < 0.15:
            directive = self.rng.choice(["include", "skip"])
            text += f" @{directive}(if: {self.variable('Boolean!', self.rng.random() < 0.5)})"
        if isinstance(target, GraphQLObjectType):
            text += " " + self.selection(target, depth + 1)
        return text

    def arguments(self, type_name: str, name: str) -> str:
        rng, world = self.rng, self.world
        if type_name != "Query":
            return ""
        args: dict[str, str] = {}
        if name in ("tasks", "tags", "skills", "members", "knowledge", "skillVersions"):
            if rng.random() < 0.6:
                limit = rng.choice([1, 2, 3, 5, 50, 0, 500])  # 0 and 500 are refused: both answer the error
                args["limit"] = self.variable("Int!", limit) if rng.random() < 0.5 else str(limit)
            if rng.random() < 0.3:
                args["offset"] = str(rng.choice([0, 1, 4, 100]))
        if name == "tasks":
            if rng.random() < 0.3:
                status = rng.choice(["TODO", "IN_PROGRESS", "DONE", "CANCELLED", "todo"])  # REST's spelling is refused
                args["status"] = self.variable("TaskStatus", status) if rng.random() < 0.5 else status
            if rng.random() < 0.2:
                who = rng.choice([*world.user_ids, str(uuid.uuid4()), "not-a-uuid"])
                args["assigneeId"] = json.dumps(who)
            if rng.random() < 0.2:
                args["q"] = json.dumps(rng.choice([*world.words, "%", "_", "nothing-matches", ""]))
        if name in ("task", "skill", "knowledgeItem"):
            ids = {"task": world.task_ids, "skill": world.skill_ids, "knowledgeItem": world.knowledge_ids}[name]
            which = rng.choice([*ids, str(uuid.uuid4()), "nope"])
            args["id"] = self.variable("ID!", which) if rng.random() < 0.5 else json.dumps(which)
        if name in ("skills", "knowledge") and rng.random() < 0.3:
            args["q"] = json.dumps(rng.choice([*world.words, "%", "zzz"]))
        if name == "skillVersions":
            args["skillId"] = json.dumps(rng.choice(world.skill_ids))
        if name == "entityTags":
            args |= {"entityType": "TASK", "entityId": json.dumps(rng.choice(world.task_ids))}
        if not args:
            return ""
        return "(" + ", ".join(f"{k}: {v}" for k, v in args.items()) + ")"


@pytest.fixture
async def world(client: httpx.AsyncClient, database_url: str, acme: Company) -> World:
    globex = await make_company(database_url)
    words = ["Alpha", "beta", "Ünïcödé 😀", 'quote " and \\ slash']
    task_ids = []
    statuses = ["todo", "in_progress", "done", "cancelled"]
    for i in range(12):
        owner = [acme.alice, acme.bob, acme.admin][i % 3]
        fields: dict[str, Any] = {"title": f"{words[i % 4]} task {i}", "status": statuses[i % 4]}
        if i % 2:
            fields |= {"assignee_id": acme.alice.id, "due_date": f"2026-12-{10 + i}"}
        if i % 5 == 0:
            fields["description"] = words[(i + 1) % 4]
        task = await create_task(client, owner, **fields)
        task_ids.append(task["id"])
        if i % 3 == 0:
            body = {"minutes": 15 + i, "note": words[i % 4]}
            response = await client.post(f"/api/tasks/{task['id']}/time-logs", json=body, headers=owner.headers)
            assert response.status_code == 201, response.text
    tag = await create_tag(client, acme.admin, name="Ünï tag", color="#aabbcc")
    other = await create_tag(client, acme.admin, name="another")
    for task_id in task_ids[:6]:
        body = {"entityType": "task", "entityId": task_id, "tagIds": [tag["id"], other["id"]]}
        assert (await client.post("/api/tags/entity", json=body, headers=acme.admin.headers)).status_code == 200
    for i in range(3):
        task_ids.append((await create_task(client, globex.admin, title=f"globex {i}"))["id"])
    skill_ids, knowledge_ids = [], []
    for i, (owner, visibility) in enumerate(
        [(acme.alice, "private"), (acme.admin, "company"), (globex.admin, "company")]
    ):
        schema_ = {"type": "object", "properties": {"n": {"type": "number", "maximum": 1e20}}}
        skill = await create_skill(
            client, owner, name=f"{words[i]} skill", visibility=visibility, input_schema=schema_, temperature=0.7
        )
        skill_ids.append(skill["id"])
        body = {"title": f"{words[i]} item", "content": "Some words " + words[i], "visibility": visibility}
        response = await client.post("/api/knowledge", json=body, headers=owner.headers)
        assert response.status_code == 201, response.text
        knowledge_ids.append(response.json()["id"])
        tagged = {"entityType": "skill", "entityId": skill["id"], "tagIds": [tag["id"]]}
        if owner is not globex.admin:
            assert (await client.post("/api/tags/entity", json=tagged, headers=owner.headers)).status_code == 200
    users = [acme.admin, acme.alice, globex.admin]
    return World(users, task_ids, [acme.alice.id, acme.bob.id, globex.admin.id], words, skill_ids, knowledge_ids)


@pytest.fixture
async def plain(settings: Settings, engine: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """The same API on the same database, every query through Strawberry's executor."""
    app: FastAPI = create_app(settings.model_copy(update={"graphql_compiled_reads": False}), engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


def _ordered(response: httpx.Response) -> Any:
    """The body with key order kept (lists of pairs), so a difference in order is a difference."""
    return response.status_code, json.loads(response.text, object_pairs_hook=list)


async def _both(
    client: httpx.AsyncClient, plain: httpx.AsyncClient, user: User | None, text: str, variables: dict[str, Any]
) -> tuple[Any, Any]:
    headers = user.headers if user else {}
    body = {"query": text, "variables": variables}
    return (
        _ordered(await client.post("/graphql", json=body, headers=headers)),
        _ordered(await plain.post("/graphql", json=body, headers=headers)),
    )


@pytest.mark.slow
async def test_random_queries_answer_the_same_compiled_and_through_strawberry(
    client: httpx.AsyncClient, plain: httpx.AsyncClient, world: World
) -> None:
    rng = random.Random(SEED)
    before = compiled.stats["compiled"]
    fast_before = compiled.stats["fast"]
    for case in range(CASES):
        text, variables = Query(rng, world).document()
        # Twice, as two users: the first is compiled behind Strawberry's checks (or falls back), the
        # second, the same request, is answered on the fast path (schema/router.CompiledFirst) under
        # the second user's RLS.
        for user in (rng.choice(world.users), rng.choice(world.users)):
            got, expected = await _both(client, plain, user, text, variables)
            assert got == expected, f"case {case} (seed {SEED}) as {user.email}:\n{text}\n{variables}"
            # No case may break the server for the next: an internal error here is a leak, not a difference.
            assert "INTERNAL_SERVER_ERROR" not in json.dumps(got), f"case {case} (seed {SEED}):\n{text}\n{got}"
    compiled_cases = compiled.stats["compiled"] - before
    fast_cases = compiled.stats["fast"] - fast_before
    # Most generated queries have a plan for every field; if none ran compiled, this proved nothing.
    assert compiled_cases > CASES // 3, f"only {compiled_cases} of {CASES} queries ran compiled"
    assert fast_cases > CASES // 3, f"only {fast_cases} of {CASES} repeated queries ran on the fast path"


async def test_the_benchmark_queries_run_compiled_and_answer_the_same(
    client: httpx.AsyncClient, plain: httpx.AsyncClient, world: World
) -> None:
    fields = "id companyId title description status priority dueDate assigneeId createdBy createdAt updatedAt"
    queries = [
        ("{ tasks(limit: 50) { id title status } }", {}),
        (f"{{ tasks(limit: 50) {{ {fields} }} }}", {}),
        (f"query($id: ID!) {{ task(id: $id) {{ {fields} }} }}", {"id": world.task_ids[0]}),
        ("{ tasks { id totalMinutes timeLogs { minutes note } tags { name color } assignee { email role } } }", {}),
    ]
    for user in world.users:
        for text, variables in queries:
            before = compiled.stats["compiled"] + compiled.stats["fast"]
            got, expected = await _both(client, plain, user, text, variables)
            assert compiled.stats["compiled"] + compiled.stats["fast"] == before + 1, f"{text} did not run compiled"
            assert got == expected, text
            assert got[0] == 200 and [key for key, _ in got[1]] == ["data"], got


async def test_what_has_no_plan_or_no_caller_runs_through_strawberry(
    client: httpx.AsyncClient, plain: httpx.AsyncClient, world: World
) -> None:
    cases: list[tuple[User | None, str, dict[str, Any]]] = [
        (None, "{ tasks { id } }", {}),  # no token: Strawberry's UNAUTHENTICATED
        (world.users[0], "{ tasks { id } me { id } }", {}),  # `me` has no plan: the whole query falls back
        (world.users[0], '{ task(id: "nope") { id } }', {}),  # a refused argument: Strawberry's error
        (world.users[0], "{ tasks(limit: 0) { id } }", {}),
        (world.users[0], 'mutation { createTag(input: {name: "m"}) { name } }', {}),
    ]
    for user, text, variables in cases:
        before = compiled.stats["compiled"] + compiled.stats["fast"]
        headers = user.headers if user else {}
        response = await client.post("/graphql", json={"query": text, "variables": variables}, headers=headers)
        assert response.status_code == 200
        assert compiled.stats["compiled"] + compiled.stats["fast"] == before, text


def test_every_plan_names_a_field_of_the_schema() -> None:
    for name in compiled.ROOTS:
        assert name in GRAPHQL.query_type.fields, name
    for type_name, name in compiled.NESTED:
        type_ = GRAPHQL.get_type(type_name)
        assert isinstance(type_, GraphQLObjectType) and name in type_.fields, (type_name, name)
        target = type_.fields[name].type
        inner = target.of_type if isinstance(target, GraphQLNonNull) else target
        assert compiled.NESTED[(type_name, name)].many == isinstance(inner, GraphQLList), (type_name, name)


async def test_a_query_asked_again_is_answered_on_the_fast_path_as_each_caller_may_see(
    client: httpx.AsyncClient, plain: httpx.AsyncClient, world: World
) -> None:
    """The second time a document, operation and variables come, CompiledFirst answers them from the
    statement kept the first time, without Strawberry; what each caller gets is still their RLS's."""
    text = "query Mine($limit: Int!) { tasks(limit: $limit) { id title assignee { email } } }"
    body = {"query": text, "operationName": "Mine", "variables": {"limit": 20}}
    first = await client.post("/graphql", json=body, headers=world.users[0].headers)
    assert first.status_code == 200 and "errors" not in first.json(), first.text
    for user in world.users:  # an admin, a member, another company's admin
        before = compiled.stats["fast"]
        got = await client.post("/graphql", json=body, headers=user.headers)
        assert compiled.stats["fast"] == before + 1, "answered on the fast path"
        assert got.headers["content-type"] == "application/json"
        expected = await plain.post("/graphql", json=body, headers=user.headers)
        assert (got.status_code, got.content) == (expected.status_code, expected.content), user.email
    ids = {
        user.email: {
            t["id"] for t in (await client.post("/graphql", json=body, headers=user.headers)).json()["data"]["tasks"]
        }
        for user in world.users
    }
    admin, member, other = (ids[u.email] for u in world.users)
    assert member < admin and not other & admin, "each caller sees their own rows"


async def test_what_the_fast_path_does_not_answer_goes_to_strawberry_unchanged(
    client: httpx.AsyncClient, plain: httpx.AsyncClient, world: World
) -> None:
    text = "{ tasks(limit: 5) { id title } }"
    user = world.users[1]
    assert (await client.post("/graphql", json={"query": text}, headers=user.headers)).status_code == 200
    kept = {"query": text}
    cases: list[tuple[str, dict[str, Any], dict[str, str]]] = [
        ("no token", kept, {}),
        ("a bad token", kept, {"Authorization": "Bearer not-a-jwt"}),
        ("another token scheme", kept, {"Authorization": user.headers["Authorization"].replace("Bearer", "Basic")}),
        ("other variables", {"query": text, "variables": {"x": 1}}, user.headers),
        ("an operation name the request did not give", {"query": text, "operationName": "X"}, user.headers),
        ("extensions", {"query": text, "extensions": {"persistedQuery": {}}}, user.headers),
        ("an event stream wanted", kept, {**user.headers, "Accept": "text/event-stream"}),
        ("a GraphQL response wanted", kept, {**user.headers, "Accept": "application/graphql-response+json"}),
    ]
    for label, body, headers in cases:
        before = compiled.stats["fast"]
        got = await client.post("/graphql", json=body, headers=headers)
        assert compiled.stats["fast"] == before, label
        expected = await plain.post("/graphql", json=body, headers=headers)
        assert (got.status_code, got.headers.get("content-type"), got.text) == (
            expected.status_code,
            expected.headers.get("content-type"),
            expected.text,
        ), label
    # Not JSON, or not an object: Strawberry's transport errors, as before.
    for raw in (b"{not json", b"[1, 2]", b'{"query": 7}'):
        headers = {**user.headers, "Content-Type": "application/json"}
        got = await client.post("/graphql", content=raw, headers=headers)
        expected = await plain.post("/graphql", content=raw, headers=headers)
        assert (got.status_code, got.text) == (expected.status_code, expected.text), raw
