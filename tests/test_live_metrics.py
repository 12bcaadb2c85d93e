"""/metrics shows live events: subscriptions open, the LISTEN connection, events queued, lag."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest

from fluxopus.app import create_app
from fluxopus.config import Settings
from tests.utils.builders import Company
from tests.utils.live import live_connection, subscribed
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
            sub = await subscribed(await admin.subscribe(TASK_EVENTS))
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
