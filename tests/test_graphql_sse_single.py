"""graphql-sse's single-connection mode on /graphql (schema/sse_single.py), over real HTTP to a real
uvicorn server: PUT reserves a stream, GET opens it, POSTs run operations whose results arrive on it
as `next {id, payload}` / `complete {id}`, DELETE stops one. Each request carries its user's bearer
token; a reservation serves only the user who made it. The browser's side (graphql-sse's own client,
on another origin) is tests/test_cross_origin_browser.py."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.auth.jwt import mint_token
from fluxopus.config import Settings
from fluxopus.schema import sse_single
from tests.utils.builders import SECRET, Company, User, unique
from tests.utils.fake_llm import FakeOpenAI, Script
from tests.utils.http import eventually
from tests.utils.server import ThreadedServer

TOKEN = "X-GraphQL-Event-Stream-Token"
TIMEOUT = 15  # a safety net: a broken server fails the test instead of hanging it
RUN = "subscription($id: ID!, $input: JSON!) { runSkill(id: $id, input: $input) { type __typename } }"


@pytest.fixture(scope="module")
def server(ai_settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(ai_settings, database_url=database_url)) as running:
        yield running


@pytest.fixture
async def http(server: ThreadedServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
        yield client


async def reserve(http: httpx.AsyncClient, user: User) -> str:
    response = await http.put("/graphql", headers=user.headers)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("text/plain")
    token = response.text
    assert len(token) >= 40, token
    return token


@dataclass
class Stream:
    token: str
    events: AsyncIterator[ServerSentEvent]

    async def until_complete(self, *operation_ids: str, stopped: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Every payload of these operations, read until each one's `complete`; another id fails, but for
        `next` events of a `stopped` operation that were queued before it was stopped."""
        payloads: dict[str, list[dict[str, Any]]] = {i: [] for i in operation_ids}
        pending = set(operation_ids)
        async with asyncio.timeout(TIMEOUT):
            async for event in self.events:
                data = json.loads(event.data)
                if (data["id"], event.event) == (stopped, "next"):
                    continue
                assert data["id"] in payloads, (event, operation_ids)
                if event.event == "next":
                    assert set(data) == {"id", "payload"}, data
                    payloads[data["id"]].append(data["payload"])
                else:
                    assert (event.event, set(data)) == ("complete", {"id"}), event
                    pending.discard(data["id"])
                if not pending:
                    return payloads
        raise AssertionError(f"the stream ended before {pending} completed")


@asynccontextmanager
async def stream(http: httpx.AsyncClient, user: User, token: str | None = None) -> AsyncIterator[Stream]:
    token = token or await reserve(http, user)
    async with aconnect_sse(http, "GET", "/graphql", headers={**user.headers, TOKEN: token}) as source:
        assert source.response.status_code == 200, await source.response.aread()
        assert source.response.headers["content-type"].startswith("text/event-stream")
        async with aclosing(source.aiter_sse()) as events:
            yield Stream(token, events)


async def post(
    http: httpx.AsyncClient, user: User | None, token: str, query: str, variables: Any = None, op: str | None = "op"
) -> httpx.Response:
    body: dict[str, Any] = {"query": query, "variables": variables or {}}
    if op is not None:
        body["extensions"] = {"operationId": op}
    headers = {**(user.headers if user else {}), TOKEN: token}
    return await http.post("/graphql", json=body, headers=headers)


def assert_error(response: httpx.Response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["error"]
    assert all(w.lower() in message.lower() for w in words), message


def kind(event_type: str) -> str:
    """`run.completed` or RUN_COMPLETED alike (the event names' spelling is not this file's subject)."""
    return re.sub(r"[^a-z]", "", event_type.lower())


async def skill(http: httpx.AsyncClient, user: User, **fields: Any) -> str:
    body = {"name": unique("skill"), "instructions": "Say hello to {{ input.name }}", **fields}
    response = await http.post("/api/skills", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


# --------------------------------------------------------------------------------------------


async def test_query_and_subscription_share_one_stream(http: httpx.AsyncClient, acme: Company) -> None:
    skill_id = await skill(http, acme.alice)
    async with stream(http, acme.alice) as s:
        me = await post(http, acme.alice, s.token, "{ me { id } }", op="q")
        run = await post(http, acme.alice, s.token, RUN, {"id": skill_id, "input": {"name": "Ada"}}, op="s")
        assert (me.status_code, run.status_code) == (202, 202), (me.text, run.text)
        payloads = await s.until_complete("q", "s")
        # Still open for more after both completed.
        again = await post(http, acme.alice, s.token, "{ me { email } }", op="q2")
        assert again.status_code == 202, again.text
        [email] = (await s.until_complete("q2"))["q2"]
    assert payloads["q"] == [{"data": {"me": {"id": acme.alice.id}}}]
    events = [p["data"]["runSkill"] for p in payloads["s"]]
    assert all("errors" not in p for p in payloads["s"]), payloads["s"]
    assert kind(events[0]["type"]) == "runstarted" and kind(events[-1]["type"]) == "runcompleted", events
    assert len(events) >= 3 and all(e["__typename"] for e in events), events
    assert email == {"data": {"me": {"email": acme.alice.email}}}


async def test_the_token_may_come_as_a_query_parameter(http: httpx.AsyncClient, acme: Company) -> None:
    token = await reserve(http, acme.bob)
    async with aconnect_sse(http, "GET", f"/graphql?token={token}", headers=acme.bob.headers) as source:
        assert source.response.status_code == 200, await source.response.aread()
        async with aclosing(source.aiter_sse()) as events:
            response = await http.post(
                f"/graphql?token={token}",
                json={"query": "{ me { id } }", "extensions": {"operationId": "1"}},
                headers=acme.bob.headers,
            )
            assert response.status_code == 202, response.text
            payloads = await Stream(token, events).until_complete("1")
    assert payloads == {"1": [{"data": {"me": {"id": acme.bob.id}}}]}


async def test_graphql_errors_arrive_on_the_stream(http: httpx.AsyncClient, acme: Company) -> None:
    # Like the distinct mode: the request is accepted, the operation's errors are its result. (A 400 would
    # make graphql-sse's client retry the POST as a network error and never show the GraphQL errors.)
    async with stream(http, acme.alice) as s:
        invalid = await post(http, acme.alice, s.token, "{ me { noSuchField } }", op="bad")
        unknown = await post(http, acme.alice, s.token, RUN, {"id": str(UUID(int=1)), "input": {}}, op="gone")
        assert (invalid.status_code, unknown.status_code) == (202, 202)
        payloads = await s.until_complete("bad", "gone")
    [bad] = payloads["bad"]
    assert bad["data"] is None and "noSuchField" in bad["errors"][0]["message"], bad
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    [gone] = payloads["gone"]
    assert gone["errors"][0]["extensions"]["code"] == "NOT_FOUND", gone


async def test_put_needs_a_valid_bearer_token(http: httpx.AsyncClient) -> None:
    assert_error(await http.put("/graphql"), 401, "authorization")
    assert_error(await http.put("/graphql", headers={"Authorization": "Bearer nope"}), 401)


async def test_stream_requests_are_checked(http: httpx.AsyncClient, acme: Company) -> None:
    token = await reserve(http, acme.alice)
    sse = {"Accept": "text/event-stream"}
    assert_error(await http.get("/graphql", headers={**sse, TOKEN: token}), 401, "authorization")
    assert_error(await http.get("/graphql", headers={**sse, **acme.bob.headers, TOKEN: token}), 403, "another user")
    assert_error(await http.get("/graphql", headers={**sse, **acme.alice.headers, TOKEN: "x" * 43}), 404, "PUT")
    assert_error(await http.get("/graphql", headers={**acme.alice.headers, TOKEN: token}), 406, "text/event-stream")
    async with stream(http, acme.alice, token):
        second = await http.get("/graphql", headers={**sse, **acme.alice.headers, TOKEN: token})
        assert_error(second, 409, "already open")


async def test_operations_are_checked(http: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    async with stream(http, acme.alice) as s:
        assert_error(await post(http, None, s.token, "{ me { id } }"), 401, "authorization")
        assert_error(await post(http, acme.bob, s.token, "{ me { id } }"), 403, "another user")
        assert_error(await post(http, globex.admin, s.token, "{ me { id } }"), 403, "another user")
        assert_error(await post(http, acme.alice, "x" * 43, "{ me { id } }"), 404, "unknown")
        assert_error(await post(http, acme.alice, s.token, "{ me { id } }", op=None), 400, "operationId")
        batch = await http.post(
            "/graphql", json=[{"query": "{ me { id } }"}], headers={**acme.alice.headers, TOKEN: s.token}
        )
        assert batch.status_code == 400, batch.text
        assert (await post(http, acme.alice, s.token, "{ me { id } }", op="once")).status_code == 202
        assert_error(await post(http, acme.alice, s.token, "{ me { id } }", op="once"), 409, "already")
        # Nothing the refused requests asked for reached the stream: the first event is "once"'s.
        assert await s.until_complete("once") == {"once": [{"data": {"me": {"id": acme.alice.id}}}]}


async def test_two_users_streams_stay_apart(http: httpx.AsyncClient, acme: Company) -> None:
    async with stream(http, acme.alice) as a, stream(http, acme.bob) as b:
        # Bob naming Alice's stream is refused; then each asks under the same operation id.
        assert_error(await post(http, acme.bob, a.token, "{ me { id } }", op="same"), 403)
        assert (await post(http, acme.bob, b.token, "{ me { id } }", op="same")).status_code == 202
        assert (await post(http, acme.alice, a.token, "{ me { id } }", op="same")).status_code == 202
        assert await a.until_complete("same") == {"same": [{"data": {"me": {"id": acme.alice.id}}}]}
        assert await b.until_complete("same") == {"same": [{"data": {"me": {"id": acme.bob.id}}}]}
        # Nor can Bob stop Alice's operations.
        assert_error(await http.delete("/graphql?operationId=same", headers={**acme.bob.headers, TOKEN: a.token}), 403)


async def test_delete_stops_a_running_subscription(
    http: httpx.AsyncClient, acme: Company, fake_openai: FakeOpenAI, engine: AsyncEngine
) -> None:
    model = unique("m")
    gate = threading.Event()
    fake_openai.script(model, Script(chunks=["one ", "two ", "three"], gate=gate, gate_at=1))
    skill_id = await skill(http, acme.alice, provider="openai", model=model)
    try:
        async with stream(http, acme.alice) as s:
            run = await post(http, acme.alice, s.token, RUN, {"id": skill_id, "input": {"name": "Ada"}}, op="run")
            assert run.status_code == 202, run.text
            started = json.loads((await anext(s.events)).data)
            assert kind(started["payload"]["data"]["runSkill"]["type"]) == "runstarted", started
            stop = await http.delete("/graphql?operationId=run", headers={**acme.alice.headers, TOKEN: s.token})
            assert stop.status_code == 200, stop.text

            async def cancelled() -> bool:
                async with engine.connect() as conn:
                    status = await conn.execute(
                        text("select status from skill_runs where skill_id = :id"), {"id": skill_id}
                    )
                    return status.scalar_one_or_none() == "cancelled"

            await eventually(cancelled, "the run to be cancelled")
            # A second DELETE of the finished operation is fine (graphql-sse's client may send one late);
            # an id never started is not; the stream itself goes on.
            again = await http.delete("/graphql?operationId=run", headers={**acme.alice.headers, TOKEN: s.token})
            assert again.status_code == 200, again.text
            never = await http.delete("/graphql?operationId=nope", headers={**acme.alice.headers, TOKEN: s.token})
            assert_error(never, 404, "nope")
            assert_error(await http.delete("/graphql", headers={**acme.alice.headers, TOKEN: s.token}), 400)
            assert_error(await http.delete("/graphql?operationId=run", headers=acme.alice.headers), 400, "token")
            assert (await post(http, acme.alice, s.token, "{ me { id } }", op="after")).status_code == 202
            after = await s.until_complete("after", stopped="run")  # and no `complete` for "run"
            assert after == {"after": [{"data": {"me": {"id": acme.alice.id}}}]}
    finally:
        gate.set()


async def test_closing_the_stream_ends_its_reservation_and_operations(
    http: httpx.AsyncClient, acme: Company, fake_openai: FakeOpenAI, engine: AsyncEngine
) -> None:
    model = unique("m")
    gate = threading.Event()
    fake_openai.script(model, Script(chunks=["one ", "two "], gate=gate, gate_at=1))
    skill_id = await skill(http, acme.alice, provider="openai", model=model)
    try:
        async with stream(http, acme.alice) as s:
            variables = {"id": skill_id, "input": {"name": "Ada"}}
            assert (await post(http, acme.alice, s.token, RUN, variables, op="r")).status_code == 202
            started = json.loads((await anext(s.events)).data)  # the run is under way
            assert kind(started["payload"]["data"]["runSkill"]["type"]) == "runstarted", started

        async def run_cancelled() -> bool:
            async with engine.connect() as conn:
                status = await conn.execute(
                    text("select status from skill_runs where skill_id = :id"), {"id": skill_id}
                )
                return status.scalar_one_or_none() == "cancelled"

        await eventually(run_cancelled, "the run to be cancelled with its stream")

        async def token_gone() -> bool:
            return (await post(http, acme.alice, s.token, "{ me { id } }", op="late")).status_code == 404

        await eventually(token_gone, "the reservation to be dropped")
    finally:
        gate.set()


async def test_an_unopened_reservation_expires(
    http: httpx.AsyncClient, acme: Company, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse_single, "UNCLAIMED_SECONDS", 0.2)
    token = await reserve(http, acme.alice)
    await asyncio.sleep(0.4)
    headers = {**acme.alice.headers, TOKEN: token, "Accept": "text/event-stream"}
    assert_error(await http.get("/graphql", headers=headers), 404, "expired")


async def test_reservations_are_bounded_per_user(
    http: httpx.AsyncClient, acme: Company, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse_single, "MAX_RESERVATIONS_PER_USER", 2)
    monkeypatch.setattr(sse_single, "UNCLAIMED_SECONDS", 1.0)  # so this test's leave no trace for others
    await reserve(http, acme.admin)
    await reserve(http, acme.admin)
    assert_error(await http.put("/graphql", headers=acme.admin.headers), 429, "at most 2")
    await reserve(http, acme.bob)  # another user is not affected


async def test_operations_are_bounded_per_stream(
    http: httpx.AsyncClient, acme: Company, monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI
) -> None:
    monkeypatch.setattr(sse_single, "MAX_OPERATIONS", 1)
    model = unique("m")
    gate = threading.Event()
    fake_openai.script(model, Script(chunks=["one ", "two "], gate=gate, gate_at=1))
    skill_id = await skill(http, acme.alice, provider="openai", model=model)
    try:
        async with stream(http, acme.alice) as s:
            run = await post(http, acme.alice, s.token, RUN, {"id": skill_id, "input": {"name": "Ada"}}, op="a")
            assert run.status_code == 202, run.text
            assert_error(await post(http, acme.alice, s.token, "{ me { id } }", op="b"), 429, "at most 1")
    finally:
        gate.set()


async def test_the_stream_ends_when_its_token_expires(
    http: httpx.AsyncClient, acme: Company, settings: Settings
) -> None:
    short = mint_token(
        SECRET,
        user_id=UUID(acme.bob.id),
        email=acme.bob.email,
        role="member",
        company_id=UUID(acme.bob.company_id),
        ttl=2,
    )
    bob = User(acme.bob.id, acme.bob.email, acme.bob.company_id, acme.bob.company, acme.bob.role, short)
    async with stream(http, bob) as s, asyncio.timeout(TIMEOUT):
        remaining = [event async for event in s.events]
    assert remaining == []  # ended (no operation was running), not cut by the timeout
