"""One GraphQL document cannot stall the process, with or without a token.

Each limit answers a GraphQL error with its own `extensions.code` and runs nothing; documents real
clients send (GraphiQL's introspection, the README's queries, a dashboard page) pass. The last test
sends the issue's abusive documents to a real `fluxopus serve` while /healthz is probed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from graphql import get_introspection_query
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.config import Settings
from tests.utils.builders import Company, User, create_skill, create_task, error_codes, unique
from tests.utils.serve import HealthProbe, Serve, provision_token
from tests.utils.server import ThreadedServer

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

# The documents, and their neighbours just inside the other limits.
REPEATED_ME = "{" + "me{id} " * 1234 + "}"
TYPENAME_ALIASES = "{" + " ".join(f"a{i}:__typename" for i in range(60_000)) + "}"  # 1 MB
HALF_THE_ALIASES = "{" + " ".join(f"a{i}:__typename" for i in range(30_000)) + "}"
INCLUDES = "{ __typename " + "@include(if: true) " * 50_000 + "}"
TASK_ALIASES = "{" + " ".join(f"t{i}: tasks(limit: 200) {{ id title }}" for i in range(1000)) + "}"
SEARCH_ALIASES = "{" + " ".join(f's{i}: searchKnowledge(q: "leave {i}") {{ score }}' for i in range(500)) + "}"
COSTLY = "{" + " ".join(f"t{i}: tasks(limit: 200) {{ id title }}" for i in range(60)) + "}"
FULL_INTROSPECTION = get_introspection_query(
    descriptions=True,
    specified_by_url=True,
    directive_is_repeatable=True,
    schema_description=True,
    input_value_deprecation=True,
)
README_QUERY = (
    "query { me { email role company { name } } tasks { id title totalMinutes tags { name } timeLogs { minutes } } }"
)
DASHBOARD = """
query Dashboard {
  me { id email role company { id name } }
  open: tasks(status: TODO, limit: 100) { id title priority dueDate assignee { email } tags { name color } }
  doing: tasks(status: IN_PROGRESS, limit: 100) { id title priority dueDate assignee { email } }
  skills(limit: 20) { id name version }
  usage { used limit }
}
"""


def code_of(result: dict[str, Any]) -> str:
    codes = error_codes(result)
    assert len(codes) == 1 and result.get("data") is None, result
    return codes[0]


def message_of(result: dict[str, Any]) -> str:
    return str(result["errors"][0]["message"])


async def post(client: httpx.AsyncClient, user: User | None, query: str, variables: dict[str, Any] | None = None):
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=user.headers if user else {}
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("authenticated", [False, True], ids=["no token", "token"])
@pytest.mark.parametrize(
    ("document", "code", "words"),
    [
        (HALF_THE_ALIASES, "DOCUMENT_TOO_LARGE", "bytes"),
        (INCLUDES, "DOCUMENT_TOO_LARGE", "variables"),
        (TASK_ALIASES, "TOO_MANY_TOKENS", "5,000 tokens"),
        (SEARCH_ALIASES, "TOO_MANY_TOKENS", "tokens"),
        (REPEATED_ME, "TOO_MANY_FIELDS", "2,468 fields"),
        ("{" + "me{id} " * 30 + "}", "FIELD_REPEATED", "`me` is selected 30 times"),
        ("{" + " ".join(f"a{i}: me {{ id }}" for i in range(101)) + "}", "TOO_MANY_ALIASES", "101 aliases"),
        ("{ me { id " + "@skip(if: false) " * 51 + "} }", "TOO_MANY_DIRECTIVES", "51 directives"),
        ("{ " + "me { " * 15 + "id" + " }" * 15 + " }", "QUERY_TOO_DEEP", "16 levels"),
        (
            "{" + " ".join(f"t{i}: tasks(limit: 200) {{ id title }}" for i in range(60)) + "}",
            "QUERY_TOO_COSTLY",
            "cost",
        ),
        ("{ me { ...A } } fragment A on Me { ...A }", "BAD_USER_INPUT", "within itself"),
    ],
    ids=[
        "30000 aliases",
        "50000 directives",
        "1000 task lists",
        "500 searches",
        "1234 me",
        "30 me",
        "aliases",
        "directives",
        "depth",
        "cost",
        "fragment cycle",
    ],
)
async def test_each_limit_answers_its_own_code(
    client: httpx.AsyncClient, acme: Company, authenticated: bool, document: str, code: str, words: str
) -> None:
    result = await post(client, acme.alice if authenticated else None, document)
    assert code_of(result) == code
    assert words in message_of(result)


async def test_a_megabyte_document_is_refused_by_size_with_or_without_a_token(
    client: httpx.AsyncClient, acme: Company
) -> None:
    """Without a token the body itself is over the limit (1 MiB; 8 MiB for an authenticated caller)."""
    anonymous = await client.post("/graphql", json={"query": TYPENAME_ALIASES})
    assert anonymous.status_code == 413
    assert anonymous.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"
    assert code_of(await post(client, acme.alice, TYPENAME_ALIASES)) == "DOCUMENT_TOO_LARGE"


@pytest.mark.parametrize(
    "document", [FULL_INTROSPECTION, README_QUERY, DASHBOARD], ids=["introspection", "README", "dashboard"]
)
async def test_what_clients_send_passes(client: httpx.AsyncClient, acme: Company, document: str) -> None:
    await create_task(client, acme.alice, title="visible")
    result = await post(client, acme.alice, document)
    assert "errors" not in result, result
    assert result["data"]


async def test_introspection_without_a_token_passes(client: httpx.AsyncClient) -> None:
    result = await post(client, None, FULL_INTROSPECTION)
    assert "errors" not in result and result["data"]["__schema"]["queryType"]["name"] == "Query"


async def test_cost_counts_page_sizes_from_variables(client: httpx.AsyncClient, acme: Company) -> None:
    """Twenty lists of 200 tasks each with their time logs (10 assumed per task) cost 20 × (1 + 200 × (1 + 1
    + 10 × 2)) = 88,020; the same document asking for pages of 5 costs 2,220 and runs."""
    document = (
        "query($n: Int!) {"
        + " ".join(f"t{i}: tasks(limit: $n) {{ id timeLogs {{ id minutes }} }}" for i in range(20))
        + "}"
    )
    refused = await post(client, acme.alice, document, {"n": 200})
    assert code_of(refused) == "QUERY_TOO_COSTLY"
    assert "88,020" in message_of(refused)
    allowed = await post(client, acme.alice, document, {"n": 5})
    assert "errors" not in allowed, allowed
    assert len(allowed["data"]) == 20


async def test_expensive_fields_are_refused_not_executed(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company
) -> None:
    """21 searches cost 21 × (1000 + 10) > 20,000: refused before any is embedded or charged."""
    document = "{" + " ".join(f's{i}: searchKnowledge(q: "holiday {i}") {{ score }}' for i in range(21)) + "}"
    before = await used_tokens(engine, acme)
    result = await post(client, acme.alice, document)
    assert code_of(result) == "QUERY_TOO_COSTLY"
    assert await used_tokens(engine, acme) == before
    single = await post(client, acme.alice, '{ searchKnowledge(q: "holiday") { score } }')
    assert "errors" not in single, single
    assert await used_tokens(engine, acme) > before  # the same field, once, is run (and charged)


async def used_tokens(engine: AsyncEngine, company: Company) -> int:
    async with engine.connect() as conn:
        used = await conn.scalar(
            text("select coalesce(sum(used), 0) from token_usage where company_id = :c"),
            {"c": company.admin.company_id},
        )
    return int(used or 0)


async def test_limits_are_settings(settings: Settings, engine: AsyncEngine, acme: Company) -> None:
    tight = settings.model_copy(
        update={"graphql_max_depth": 3, "graphql_max_aliases": 1, "graphql_max_cost": 100, "graphql_max_bytes": 2048}
    )
    app = create_app(tight, engine=engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert "errors" not in await post(client, acme.alice, "{ me { company { id } } }")
        assert code_of(await post(client, acme.alice, "{ tasks { tags { id } } }")) == "QUERY_TOO_COSTLY"
        assert code_of(await post(client, acme.alice, "{ a: me { id } b: me { id } }")) == "TOO_MANY_ALIASES"
        assert code_of(await post(client, acme.alice, "{ me { company { id name } } }" + " " * 3000)) == (
            "DOCUMENT_TOO_LARGE"
        )
        deep = await post(client, acme.alice, "{ tasks { assignee { company { id } } } }")
        assert code_of(deep) == "QUERY_TOO_DEEP" and "4 levels" in message_of(deep)
        fine = await post(client, acme.alice, "{ me { id } }")
        assert fine == {"data": {"me": {"id": acme.alice.id}}}


async def test_run_skill_must_be_alone_in_its_mutation(
    client: httpx.AsyncClient, engine: AsyncEngine, acme: Company
) -> None:
    """runSkill commits its run before the model answers, so it could not roll back with other fields:
    an operation mixing it with others is refused whole, and nothing of it happens."""
    skill = await create_skill(client, acme.alice)
    doomed = await create_task(client, acme.alice)
    title = unique("never")
    document = """
        mutation($skill: ID!, $title: String!, $task: ID!) {
          a: createTask(input: {title: $title}) { id }
          r: runSkill(id: $skill, input: {name: "x"}) { id }
          b: deleteTask(id: $task)
        }
    """
    result = await post(client, acme.alice, document, {"skill": skill["id"], "title": title, "task": doomed["id"]})
    assert code_of(result) == "BAD_USER_INPUT"
    assert "`runSkill` must be the only field of its mutation" in message_of(result)
    via_fragment = await post(
        client,
        acme.alice,
        'mutation($skill: ID!) { ...R createTag(input: {name: "t"}) { id } }'
        ' fragment R on Mutation { runSkill(id: $skill, input: {name: "x"}) { id } }',
        {"skill": skill["id"]},
    )
    assert code_of(via_fragment) == "BAD_USER_INPUT"
    async with engine.connect() as conn:
        assert await conn.scalar(text("select count(*) from tasks where title = :t"), {"t": title}) == 0
        assert await conn.scalar(text("select count(*) from tasks where id = :id"), {"id": doomed["id"]}) == 1
        runs = await conn.scalar(text("select count(*) from skill_runs where skill_id = :s"), {"s": skill["id"]})
    assert runs == 0
    alone = await post(
        client, acme.alice, 'mutation($s: ID!) { runSkill(id: $s, input: {name: "x"}) { status } }', {"s": skill["id"]}
    )
    assert alone == {"data": {"runSkill": {"status": "SUCCEEDED"}}}


async def test_a_subscription_over_the_limits_is_refused_over_websocket(
    settings: Settings, database_url: str, acme: Company
) -> None:

    document = "subscription {" + " ".join(f'r{i}: runSkill(id: "x", input: {{}}) {{ type }}' for i in range(101)) + "}"
    # The app builds its own engine in the server thread's event loop.
    with ThreadedServer(
        create_app(settings.model_copy(update={"indexer": False}), database_url=database_url)
    ) as server:
        url = server.url.replace("http", "ws") + "/graphql"
        async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"token": acme.alice.token}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": document}}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert answer["type"] == "error", answer
            assert answer["payload"][0]["extensions"]["code"] == "TOO_MANY_ALIASES"
            await ws.send(json.dumps({"id": "2", "type": "subscribe", "payload": {"query": "{ me { id } }"}}))
            answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert answer == {"id": "2", "type": "next", "payload": {"data": {"me": {"id": acme.alice.id}}}}


async def test_abusive_documents_do_not_stall_a_real_server(served: Serve) -> None:
    """Each of the issue's documents, two at a time without a token and two with one, while /healthz is
    asked every 20 ms: it answers within 100 ms throughout, and every document gets its refusal."""
    token = await provision_token(served, f"{unique('limits')}@example.com")
    # (document, its refusal without a token, with one)
    cases = [
        (TYPENAME_ALIASES, "PAYLOAD_TOO_LARGE", "DOCUMENT_TOO_LARGE"),
        (INCLUDES, "DOCUMENT_TOO_LARGE", "DOCUMENT_TOO_LARGE"),
        (TASK_ALIASES, "TOO_MANY_TOKENS", "TOO_MANY_TOKENS"),
        (SEARCH_ALIASES, "TOO_MANY_TOKENS", "TOO_MANY_TOKENS"),
        (REPEATED_ME, "TOO_MANY_FIELDS", "TOO_MANY_FIELDS"),
        (COSTLY, "QUERY_TOO_COSTLY", "QUERY_TOO_COSTLY"),
    ]
    # Encoded before the clock starts, so the probe measures the server, not this process.
    bodies = [(json.dumps({"query": doc}).encode(), anonymous, with_token) for doc, anonymous, with_token in cases]
    anonymous_headers = {"Content-Type": "application/json"}
    token_headers = {**anonymous_headers, "Authorization": f"Bearer {token}"}

    async def send(client: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> str:
        response = await client.post("/graphql", content=body, headers=headers)
        assert response.status_code in (200, 413), response.text
        return str(response.json()["errors"][0]["extensions"]["code"])

    with HealthProbe(served.url) as probe:
        async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
            for body, anonymous, with_token in bodies:
                answers = await asyncio.gather(
                    *(send(client, body, headers) for headers in [anonymous_headers] * 2 + [token_headers] * 2)
                )
                assert answers == [anonymous, anonymous, with_token, with_token]
    probe.assert_answered_within(0.1)
