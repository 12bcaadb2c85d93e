"""Latency and throughput of the spine's hot paths over real HTTP.

Starts an embedded PostgreSQL in a temp dir and `fluxopus serve` against it (a separate
process, so client and server do not share an event loop), seeds a company, then drives
each endpoint with a fixed number of requests at a fixed concurrency and prints numbers.

    python3 bench/api_latency.py [--requests 400] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import httpx
from harness import drive, embedded_database, serving

from fluxopus.auth.jwt import mint_token
from fluxopus.db.engine import operator_engine
from fluxopus.db.users import ensure_member

SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"
GRAPHQL_NESTED = "{ tasks(limit: 50) { id title totalMinutes timeLogs { minutes } tags { name } assignee { email } } }"


async def seed(url: str, base: str, tasks: int) -> tuple[dict[str, str], str]:
    async with operator_engine(url) as engine:
        admin = await ensure_member(engine, email="admin@bench.test", company="Bench", role="admin")
        member = await ensure_member(engine, email="member@bench.test", company="Bench", role="member")
    token = mint_token(
        SECRET, user_id=admin.user_id, email=admin.email, role="admin", company_id=admin.company_id, ttl=3600
    )
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        tag = (await client.post("/api/tags", json={"name": "bench", "color": "#336699"})).json()
        task_id = ""
        for i in range(tasks):
            body = {"title": f"Task {i}", "assignee_id": str(member.user_id), "priority": "high"}
            task_id = (await client.post("/api/tasks", json=body)).json()["id"]
            await client.post(f"/api/tasks/{task_id}/time-logs", json={"minutes": 30})
            await client.post(
                "/api/tags/entity", json={"entityType": "task", "entityId": task_id, "tagIds": [tag["id"]]}
            )
    return headers, task_id


async def main(args: argparse.Namespace) -> None:
    async with embedded_database() as (url, env):
        env["FLUXOPUS_JWT_SECRET"] = SECRET
        async with serving(env) as base:
            headers, task_id = await seed(url, base, args.tasks)
            print(f"{args.tasks} tasks seeded; {args.requests} requests per row at concurrency {args.concurrency}")
            limits = httpx.Limits(max_connections=args.concurrency)
            async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:
                cases = {
                    "GET /healthz (no auth, select 1)": lambda c, i: c.get("/healthz"),
                    "GET /api/tasks/{id}": lambda c, i: c.get(f"/api/tasks/{task_id}"),
                    "GET /api/tasks?limit=50": lambda c, i: c.get("/api/tasks", params={"limit": 50}),
                    "POST /api/tasks": lambda c, i: c.post("/api/tasks", json={"title": f"bench {i}"}),
                    "GraphQL tasks(limit:50) + nested": lambda c, i: c.post("/graphql", json={"query": GRAPHQL_NESTED}),
                }
                for name, make_request in cases.items():

                    async def step(i: int, make_request: Any = make_request) -> bool:
                        return bool((await make_request(client, i)).status_code < 400)

                    await drive(name, range(args.requests), step, args.concurrency)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=100)
    asyncio.run(main(parser.parse_args()))
