"""Relay connections (`tasksConnection` …) beside the plain lists, and `node(id:)`: the same rows, order
and RLS as the lists and REST, cursors that page through everything once, totals equal to REST's
X-Total-Count, and refusals of what is not a cursor."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import httpx
import pytest
from graphql import GraphQLList, GraphQLNonNull, parse

from fluxopus.schema.limits import operation_cost
from fluxopus.schema.root import schema
from tests.utils.builders import Company, User, create_skill, create_tag, create_task, error_codes, gql

PAGE = (
    "edges { cursor node { id } } nodes { id }"
    " pageInfo { hasNextPage hasPreviousPage startCursor endCursor } totalCount"
)
TASKS = f"""query($first: Int, $after: String, $last: Int, $before: String, $status: TaskStatus) {{
  tasksConnection(first: $first, after: $after, last: $last, before: $before, status: $status) {{ {PAGE} }}
}}"""


async def page(client: httpx.AsyncClient, user: User, **variables: Any) -> dict[str, Any]:
    result = await gql(client, user, TASKS, variables)
    assert "errors" not in result, result
    connection: dict[str, Any] = result["data"]["tasksConnection"]
    assert [e["node"] for e in connection["edges"]] == connection["nodes"]
    return connection


async def rest_ids(client: httpx.AsyncClient, user: User, **params: Any) -> tuple[list[str], int]:
    headers = {**user.headers, "Prefer": "count=exact"}
    response = await client.get("/api/tasks", params={"limit": 200, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return [t["id"] for t in response.json()], int(response.headers["X-Total-Count"])


@pytest.fixture
async def seven(client: httpx.AsyncClient, acme: Company) -> list[str]:
    return [
        (await create_task(client, acme.alice, title=f"t{i}", status="done" if i % 2 else "todo"))["id"]
        for i in range(7)
    ]


async def test_first_and_after_page_through_the_list_once(
    client: httpx.AsyncClient, acme: Company, seven: list[str]
) -> None:
    expected, total = await rest_ids(client, acme.alice)
    assert total == 7
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        connection = await page(client, acme.alice, first=3, after=after)
        pages += 1
        ids = [n["id"] for n in connection["nodes"]]
        seen += ids
        info = connection["pageInfo"]
        assert connection["totalCount"] == 7
        assert info["hasPreviousPage"] == (after is not None)
        assert (info["startCursor"], info["endCursor"]) == (
            connection["edges"][0]["cursor"],
            connection["edges"][-1]["cursor"],
        )
        if not info["hasNextPage"]:
            break
        after = info["endCursor"]
    assert (seen, pages) == (expected, 3)
    plain = (await gql(client, acme.alice, "{ tasks(limit: 200) { id } }"))["data"]["tasks"]
    assert [t["id"] for t in plain] == expected


async def test_last_and_before_page_backwards(client: httpx.AsyncClient, acme: Company, seven: list[str]) -> None:
    expected, _ = await rest_ids(client, acme.alice)
    tail = await page(client, acme.alice, last=2)
    assert [n["id"] for n in tail["nodes"]] == expected[-2:]
    assert (tail["pageInfo"]["hasNextPage"], tail["pageInfo"]["hasPreviousPage"]) == (False, True)
    before = await page(client, acme.alice, last=3, before=tail["pageInfo"]["startCursor"])
    assert [n["id"] for n in before["nodes"]] == expected[2:5]
    head = await page(client, acme.alice, last=10, before=before["pageInfo"]["startCursor"])
    assert [n["id"] for n in head["nodes"]] == expected[:2]
    assert head["pageInfo"]["hasPreviousPage"] is False and head["pageInfo"]["hasNextPage"] is True
    empty = await page(client, acme.alice, first=0)
    assert (empty["nodes"], empty["totalCount"], empty["pageInfo"]["startCursor"]) == ([], 7, None)


async def test_totals_and_rows_follow_filters_and_rls_as_rest_does(
    client: httpx.AsyncClient, acme: Company, globex: Company, seven: list[str]
) -> None:
    await create_task(client, acme.admin, title="the admin's own")
    for user in (acme.alice, acme.bob, acme.admin, globex.admin):
        for status in (None, "done"):
            rest, total = await rest_ids(client, user, **({"status": status} if status else {}))
            connection = await page(client, user, first=200, status=status.upper() if status else None)
            assert ([n["id"] for n in connection["nodes"]], connection["totalCount"]) == (rest, total), user.email
    assert (await page(client, globex.admin, first=5))["totalCount"] == 0


@pytest.mark.parametrize(
    "variables",
    [
        {"after": "nope"},
        {"after": base64.urlsafe_b64encode(b"something:else:3").decode()},
        {"before": base64.urlsafe_b64encode(b"fluxopus:v1:-1").decode()},
        {"after": base64.urlsafe_b64encode(b"fluxopus:v1:99999999999").decode()},
        {"after": base64.urlsafe_b64encode(b"fluxopus:v1:1000000").decode()},  # past the lists' largest offset
        {"first": 201},
        {"last": -1},
    ],
)
async def test_what_is_not_a_cursor_or_a_page_size_is_bad_user_input(
    client: httpx.AsyncClient, acme: Company, variables: dict[str, Any]
) -> None:
    result = await gql(client, acme.alice, TASKS, variables)
    assert error_codes(result) == ["BAD_USER_INPUT"] and result["data"] is None, result


async def test_every_list_with_pages_has_a_connection_beside_it() -> None:
    query = schema._schema.query_type
    assert query is not None
    paged = [n for n, f in query.fields.items() if "limit" in f.args and "offset" in f.args]
    assert len(paged) == 9, paged
    for name in paged:
        connection = query.fields.get(f"{name}Connection")
        assert connection is not None, name
        assert {"first", "after", "last", "before"} <= set(connection.args), name
        listed = query.fields[name].type
        item = listed.of_type.of_type.of_type if isinstance(listed, GraphQLNonNull) else None
        assert isinstance(listed.of_type, GraphQLList)
        assert str(connection.type) == f"{item}Connection!", name


async def test_the_other_connections_answer_their_lists(client: httpx.AsyncClient, acme: Company) -> None:
    skill = await create_skill(client, acme.alice)
    await create_tag(client, acme.alice)
    documents = {
        "skills": "{ skillsConnection(first: 5) { totalCount nodes { id } } skills(limit: 5) { id } }",
        "tags": "{ tagsConnection(first: 5) { totalCount nodes { id } } tags(limit: 5) { id } }",
        "members": "{ membersConnection(first: 5) { totalCount nodes { userId } } members(limit: 5) { userId } }",
        "knowledge": "{ knowledgeConnection(first: 5) { totalCount nodes { id } } knowledge(limit: 5) { id } }",
        "connections": "{ connectionsConnection(first: 5) { totalCount nodes { id } } connections(limit: 5) { id } }",
        "skillVersions": f'{{ skillVersionsConnection(skillId: "{skill["id"]}") {{ totalCount nodes {{ id }} }}'
        f' skillVersions(skillId: "{skill["id"]}") {{ id }} }}',
        "skillRuns": f'{{ skillRunsConnection(skillId: "{skill["id"]}") {{ totalCount nodes {{ id }} }}'
        f' skillRuns(skillId: "{skill["id"]}") {{ id }} }}',
    }
    counts = {
        "skills": 1,
        "tags": 1,
        "members": 3,
        "knowledge": 0,
        "connections": 0,
        "skillVersions": 1,
        "skillRuns": 0,
    }
    for name, document in documents.items():
        result = await gql(client, acme.alice, document)
        assert "errors" not in result, result
        connection = result["data"][f"{name}Connection"]
        assert connection["nodes"] == result["data"][name] and connection["totalCount"] == counts[name], name


NODE = "query($id: ID!) { node(id: $id) { __typename id ... on Task { title } ... on Skill { name } } }"


async def test_node_finds_what_the_caller_may_see_and_nothing_else(
    client: httpx.AsyncClient, acme: Company, globex: Company
) -> None:
    task = await create_task(client, acme.alice, title="findable")
    skill = await create_skill(client, acme.alice, name="a skill")
    tag = await create_tag(client, acme.alice)

    async def node(user: User, id_: str) -> Any:
        result = await gql(client, user, NODE, {"id": id_})
        assert "errors" not in result, result
        return result["data"]["node"]

    assert await node(acme.alice, task["id"]) == {"__typename": "Task", "id": task["id"], "title": "findable"}
    assert await node(acme.alice, skill["id"]) == {"__typename": "Skill", "id": skill["id"], "name": "a skill"}
    assert await node(acme.alice, tag["id"]) == {"__typename": "Tag", "id": tag["id"]}
    assert await node(globex.admin, task["id"]) is None  # another company's
    assert await node(acme.bob, skill["id"]) is None  # private to alice
    assert await node(acme.alice, str(uuid.uuid4())) is None
    assert error_codes(await gql(client, acme.alice, NODE, {"id": "not-a-uuid"})) == ["BAD_USER_INPUT"]


@pytest.mark.parametrize(
    ("body", "cost"),
    [
        # the field 1 + edges 1 + 200 × (node 1 + id 1 + timeLogs 1 + 10 × id 1), as tasks(limit: 200) counts 200
        ("tasksConnection(first: 200) { edges { node { id timeLogs { id } } } }", 2 + 200 * 13),
        ("tasks(limit: 200) { id timeLogs { id } }", 1 + 200 * 12),
        ("tasksConnection(last: 3) { nodes { id } totalCount pageInfo { hasNextPage } }", 1 + (1 + 3) + 1 + 2),
        ("tasksConnection { nodes { id } }", 2 + 50),  # neither first nor last: the default page
        ("tasksConnection(first: $n) { nodes { id } }", 2 + 120),
        ("tasksConnection(first: 2) { ...P } F: tasksConnection(first: 9) { ...P }", (2 + 2) + (2 + 9)),
    ],
)
def test_a_connection_costs_its_page(body: str, cost: int) -> None:
    """The cost limit (schema/limits.py) counts a connection's edges and nodes by its `first`/`last`."""
    document = parse(f"query($n: Int = 7) {{ {body} }} fragment P on TaskConnection {{ nodes {{ id }} }}")
    assert operation_cost(schema._schema, document, None, {"n": 120}) == cost
