"""The database going away is a 503 with Retry-After (GraphQL UNAVAILABLE), the embedded server is
restarted by `fluxopus serve` within seconds, and no acknowledged write is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import httpx
import pytest

from tests.utils.builders import unique
from tests.utils.serve import Serve, is_alive, postmaster_pid, provision_token, wait_until

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

WRITES = 200
WRITERS = 4


async def test_kill_9_of_the_postmaster_during_writes_loses_no_acknowledged_write(served: Serve) -> None:
    token = await provision_token(served, f"{unique('outage')}@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    acknowledged: dict[str, str] = {}  # task id -> title
    refusals: list[httpx.Response] = []
    unexpected: list[str] = []
    done_after_kill = 0
    killed = asyncio.Event()
    old_pid = postmaster_pid(served.pgdata)
    assert old_pid is not None

    async def writer(client: httpx.AsyncClient, numbers: range) -> None:
        nonlocal done_after_kill
        for n in numbers:
            title = f"write {n}"
            try:
                response = await client.post("/api/tasks", json={"title": title}, headers=headers)
            except httpx.HTTPError as exc:  # the server itself must stay up: a transport error is a failure
                unexpected.append(repr(exc))
                continue
            if response.status_code == 201:
                acknowledged[response.json()["id"]] = title
                done_after_kill += killed.is_set()
            elif response.status_code == 503:
                refusals.append(response)
            else:
                unexpected.append(f"{response.status_code} {response.text}")
            await asyncio.sleep(0.03)  # spread the writes over the outage and the recovery

    async def killer() -> None:
        while len(acknowledged) < 40:
            await asyncio.sleep(0.01)
        os.kill(old_pid, signal.SIGKILL)
        killed.set()

    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        per_writer = WRITES // WRITERS
        await asyncio.gather(
            killer(), *(writer(client, range(w * per_writer, (w + 1) * per_writer)) for w in range(WRITERS))
        )
        assert not unexpected, unexpected[:5]
        # Writes met the outage (the supervisor may bring the server back before the next write asks:
        # then none is refused at all); each refusal is a 503 that says to retry.
        for response in refusals:
            assert response.headers["Retry-After"].isdigit()
            assert "not available" in response.json()["error"], response.text
        # Restarted by serve itself, with the dead postmaster's pid handled.
        wait_until(lambda: _healthy(served), 30, f"the embedded PostgreSQL to come back\n{served.logs()}")
        new_pid = postmaster_pid(served.pgdata)
        assert new_pid is not None and new_pid != old_pid and is_alive(new_pid)
        assert served.proc.poll() is None
        assert done_after_kill > 0, "no write succeeded after the restart"
        for task_id, title in acknowledged.items():
            found = await client.get(f"/api/tasks/{task_id}", headers=headers)
            assert found.status_code == 200 and found.json()["title"] == title, (task_id, found.text)
        assert len(acknowledged) + len(refusals) == WRITES
        graphql = await client.post("/graphql", json={"query": "{ me { id } }"}, headers=headers)
        assert "errors" not in graphql.json(), graphql.text


async def test_graphql_answers_unavailable_while_the_database_is_down(served: Serve) -> None:
    token = await provision_token(served, f"{unique('outage')}@example.com")
    headers = {"Authorization": f"Bearer {token}"}
    pid = postmaster_pid(served.pgdata)
    assert pid is not None
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not is_alive(pid), 10, "the postmaster to die")
        answers: list[dict[str, Any]] = []
        health: list[httpx.Response] = []
        began = time.monotonic()
        # Until the supervisor brings it back: every answer is either data or UNAVAILABLE, never a crash
        # (a 503 when the token's session could not even be looked up, with Retry-After).
        while time.monotonic() - began < 30:
            result = await client.post(
                "/graphql", json={"query": 'mutation { createTask(input: {title: "x"}) { id } }'}, headers=headers
            )
            assert result.status_code in (200, 503), result.text
            if result.status_code == 503:
                assert result.headers["Retry-After"].isdigit()
            answers.append(result.json())
            health.append(await client.get("/healthz"))
            if "errors" not in answers[-1] and len(answers) > 1:
                break
            await asyncio.sleep(0.05)
    codes = [a["errors"][0]["extensions"]["code"] for a in answers if "errors" in a]
    assert codes and set(codes) == {"UNAVAILABLE"}, answers[:3]
    assert all("not available" in a["errors"][0]["message"] for a in answers if "errors" in a)
    assert "errors" not in answers[-1], "the service did not recover"
    down = [h for h in health if h.status_code == 503]
    assert all(h.headers.get("Retry-After") for h in down)


def _healthy(served: Serve) -> bool:
    response = served.healthz()
    return response is not None and response.status_code == 200
