"""What connections cost over real HTTP: authorize, the callback's code exchange, status, refresh.

Starts an embedded PostgreSQL in a temp dir, the fake OAuth provider of tests/utils/fake_oauth.py
(in this process, on its own thread) and `fluxopus serve` against both, provisions users, then:

1. times `GET /api/connections/authorize/{provider}` (a state row + the URL) at a fixed concurrency;
2. times whole connect flows (authorize → the provider's consent redirect → our callback, which
   exchanges the code and reads userinfo) and the callback step alone;
3. times `GET /api/connections/status/{provider}` with a fresh token (a read), and just after
   every access token was made to expire (a read, a row lock, a refresh at the provider, a write);
4. fires N simultaneous status calls at ONE expired connection and prints how many refreshes the
   provider saw (the row lock should make it exactly 1).

    python3 bench/connections.py [--users 100] [--concurrency 8] [--herd 50]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from fluxopus.auth.jwt import mint_token
from fluxopus.db.engine import asyncpg_dsn, operator_engine
from fluxopus.db.users import ensure_member

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from harness import drive, embedded_database, report, serving  # noqa: E402

from tests.utils.fake_oauth import FakeClient, FakeOAuth  # noqa: E402

SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"
PROVIDER = "bench"


async def main(args: argparse.Namespace) -> None:
    fake = FakeOAuth()
    client = fake.client()
    prefix = f"FLUXOPUS_OAUTH_{PROVIDER.upper()}_"
    try:
        async with embedded_database() as (url, env):
            env |= {
                "FLUXOPUS_JWT_SECRET": SECRET,
                "FLUXOPUS_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
                prefix + "CLIENT_ID": client.client_id,
                prefix + "CLIENT_SECRET": client.client_secret,
                prefix + "DISCOVERY_URL": f"{fake.url}/.well-known/openid-configuration",
            }
            async with serving(env) as base:
                await exercise(args, url, base, fake, client)
    finally:
        fake.close()


async def exercise(args: argparse.Namespace, url: str, base: str, fake: FakeOAuth, client: FakeClient) -> None:
    users = []
    for i in range(args.users):
        async with operator_engine(url) as engine:
            m = await ensure_member(engine, email=f"user{i}@bench.test", company="Bench", role="member")
        token = mint_token(SECRET, user_id=m.user_id, email=m.email, role=m.role, company_id=m.company_id, ttl=3600)
        users.append({"Authorization": f"Bearer {token}"})
    print(f"{args.users} users, concurrency {args.concurrency}; provider: the fake on {fake.url}")

    limits = httpx.Limits(max_connections=max(args.concurrency, args.herd))
    async with (
        httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as api,
        httpx.AsyncClient(limits=limits, timeout=60) as browser,
    ):
        authorize = f"/api/connections/authorize/{PROVIDER}"
        status = f"/api/connections/status/{PROVIDER}"
        json_accept = {"Accept": "application/json"}

        async def start(headers: object) -> bool:
            assert isinstance(headers, dict)
            return (await api.get(authorize, headers=headers | json_accept)).status_code == 200

        await drive("authorize (state row + URL)", users, start, args.concurrency)

        callback_times: list[float] = []

        async def connect(headers: object) -> bool:
            assert isinstance(headers, dict)
            consent = (await api.get(authorize, headers=headers | json_accept)).json()["url"]
            back = (await browser.get(consent)).headers["location"]
            began = time.perf_counter()
            landed = await api.get(back)
            callback_times.append(time.perf_counter() - began)
            return "status=connected" in landed.headers.get("location", "")

        await drive("connect: authorize + consent + callback", users, connect, args.concurrency)
        report("  of which the callback (exchange + userinfo)", callback_times, None, 0)

        async def check(headers: object) -> bool:
            assert isinstance(headers, dict)
            return (await api.get(status, headers=headers)).json().get("status") == "connected"

        await drive("status, token fresh", users * 4, check, args.concurrency)
        conn = await asyncpg.connect(asyncpg_dsn(url))
        try:
            await conn.execute("update connections set expires_at = now() - interval '1 minute'")
            refreshes = client.refreshes
            await drive("status, token expired (refresh first)", users, check, args.concurrency)
            print(f"{'':<44} the provider saw {client.refreshes - refreshes} refreshes for {args.users} calls")

            await conn.execute("update connections set expires_at = now() - interval '1 minute'")
            refreshes = client.refreshes
            client.refresh_delay = 0.05  # a provider that takes 50 ms to refresh
            herd = [users[0]] * args.herd
            await drive(f"{args.herd} simultaneous status, one expired token", herd, check, args.herd)
            print(f"{'':<44} the provider saw {client.refreshes - refreshes} refresh(es)")
        finally:
            await conn.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--herd", type=int, default=50)
    asyncio.run(main(parser.parse_args()))
