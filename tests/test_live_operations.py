"""Live events as an operator sees them: /metrics (subscriptions open, the LISTEN connection, events queued,
lag), and one LISTEN connection per process however many subscribe."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from uuid import UUID

import httpx
import pytest
from httpx_sse import aconnect_sse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.auth.jwt import mint_token
from fluxopus.config import Settings
from tests.utils.builders import SECRET, Company
from tests.utils.live import listening, live_connection, live_sub
from tests.utils.server import ThreadedServer

TASK_EVENTS = "subscription { taskEvents { type taskId } }"


@pytest.fixture(scope="module")
def server(settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(settings, database_url=database_url)) as running:
        yield running


def sample(text: str, name: str) -> float:
    found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


async def test_metrics_count_live_subscribers_and_events(server: ThreadedServer, acme: Company) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        before = (await http.get("/metrics")).text
        assert sample(before, "fluxopus_live_listening") == 1
        subscribers = sample(before, "fluxopus_live_subscribers")
        async with live_connection(server.url, acme.admin.token) as admin:
            sub = await live_sub(server, admin, acme.admin, TASK_EVENTS)
            during = (await http.get("/metrics")).text
            assert sample(during, "fluxopus_live_subscribers") == subscribers + 1
            await http.post("/api/tasks", json={"title": "counted"}, headers=acme.alice.headers)
            assert (await sub.next())["type"] == "CREATED"
            after = (await http.get("/metrics")).text
            assert sample(after, "fluxopus_live_events_total") >= sample(before, "fluxopus_live_events_total") + 1
            assert sample(after, "fluxopus_live_lag_changes") >= 0
        for _ in range(50):  # the server notices the closed socket on its own time
            if sample((await http.get("/metrics")).text, "fluxopus_live_subscribers") == subscribers:
                break
            await asyncio.sleep(0.1)
        assert sample((await http.get("/metrics")).text, "fluxopus_live_subscribers") == subscribers


async def test_one_listen_connection_whatever_the_number_of_subscribers(
    server: ThreadedServer, acme: Company, engine: AsyncEngine
) -> None:
    async def sessions() -> dict[str, int]:
        async with engine.connect() as conn:
            rows = await conn.execute(text("select application_name, count(*) from pg_stat_activity group by 1"))
            return {name: int(count) for name, count in rows}

    before = await sessions()
    assert before.get("fluxopus-live", 0) >= 1  # this module's server, and any other still running
    async with (
        live_connection(server.url, acme.admin.token) as admin,
        live_connection(server.url, acme.alice.token) as alice,
    ):
        subs = [await connection.subscribe(TASK_EVENTS) for connection in (admin, alice) for _ in range(10)]
        await listening(server, acme.admin, 10)
        await listening(server, acme.alice, 10)
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.post(
                "/api/tasks", json={"title": "to everyone", "assignee_id": acme.alice.id}, headers=acme.bob.headers
            )
        for sub in subs:
            assert (await sub.next())["type"] == "CREATED"
        during = await sessions()
    assert during.get("fluxopus-live", 0) == before["fluxopus-live"]


async def test_a_graphql_sse_subscription_ends_when_its_token_expires(server: ThreadedServer, acme: Company) -> None:
    """A WebSocket is closed (4401) when its token expires; a graphql-sse stream has no socket to close,
    so the subscription itself ends, with UNAUTHENTICATED."""
    token = mint_token(
        SECRET,
        user_id=UUID(acme.alice.id),
        email=acme.alice.email,
        role="member",
        company_id=UUID(acme.alice.company_id),
        ttl=2,
    )
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=15) as http,
        aconnect_sse(http, "POST", "/graphql", json={"query": TASK_EVENTS}, headers=headers) as source,
    ):
        assert source.response.status_code == 200, await source.response.aread()
        events = [(event.event, event.data) async for event in source.aiter_sse()]
    payloads = [json.loads(data) for kind, data in events if kind == "next"]
    assert payloads and payloads[-1]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", events
    assert "expired" in payloads[-1]["errors"][0]["message"]
    assert events[-1][0] == "complete", events
