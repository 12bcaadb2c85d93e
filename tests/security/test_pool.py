"""One user cannot exhaust the connection pool: a request uses at most one pooled connection at a time
(the budget's statements have a small pool of their own, and a search is charged and embedded before
its transaction opens), and the pool is fixed, so load does not open and close database sessions."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx
import pytest

from tests.utils.builders import unique
from tests.utils.serve import HealthProbe, Serve, provision_token

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

SEARCHES = 60


async def sessions_opened(served: Serve) -> int:
    """PostgreSQL's count of sessions ever opened on the server's database (this one included)."""
    socket_dir = (served.pgdata / "postmaster.pid").read_text().splitlines()[4].strip()
    conn = await asyncpg.connect(f"postgresql://postgres:@/postgres?host={socket_dir}")
    try:
        return int(await conn.fetchval("select sessions from pg_stat_database where datname = current_database()"))
    finally:
        await conn.close()


async def test_sixty_searches_by_one_user_leave_another_company_served(served: Serve) -> None:
    searcher = {"Authorization": "Bearer " + await provision_token(served, unique("searcher") + "@a.example")}
    other = {"Authorization": "Bearer " + await provision_token(served, unique("other") + "@b.example")}
    async with httpx.AsyncClient(base_url=served.url, timeout=60, limits=httpx.Limits(max_connections=200)) as client:
        for i in range(3):
            body = {"title": f"Leave policy {i}", "content": f"Parents get {10 + i} weeks of paid leave."}
            assert (await client.post("/api/knowledge", json=body, headers=searcher)).status_code == 201
        # The embedding model loads on first use (about a second): that is start-up, not the abuse.
        assert (await client.get("/api/knowledge/search", params={"q": "leave"}, headers=searcher)).status_code == 200

        async def search(i: int) -> int:
            response = await client.get("/api/knowledge/search", params={"q": f"leave {i}"}, headers=searcher)
            return response.status_code

        async def other_company() -> list[float]:
            """Its own client, as another company's would be (one shared client queues its requests)."""
            waits = []
            async with httpx.AsyncClient(base_url=served.url, timeout=60) as own:
                for _ in range(5):
                    await asyncio.sleep(0.1)
                    began = time.perf_counter()
                    assert (await own.get("/api/tasks", headers=other)).status_code == 200
                    waits.append(time.perf_counter() - began)
            return waits

        rounds = []
        for _ in range(2):
            before = await sessions_opened(served)
            with HealthProbe(served.url) as probe:
                statuses, waits = await asyncio.gather(
                    asyncio.gather(*(search(i) for i in range(SEARCHES))), other_company()
                )
            rounds.append((await sessions_opened(served) - before - 1, statuses, waits, probe))
    for _, statuses, waits, probe in rounds:
        assert statuses == [200] * SEARCHES
        assert max(waits) < 1.0, f"another company's request waited {max(waits):.2f} s"
        probe.assert_answered_within(0.5)
    # The first round may fill the pools (20 + 4 by default); the second reuses them.
    assert rounds[0][0] <= 24, f"{rounds[0][0]} sessions opened for one burst"
    assert rounds[1][0] <= 2, f"{rounds[1][0]} sessions opened again: the pool churns"
