"""What the built-in sign-in (/auth/v1) costs over real HTTP: sign-up, password sign-in, refresh.

Starts an embedded PostgreSQL in a temp dir and `fluxopus serve` with the built-in auth (no JWT
secret, no JWKS), then drives each step at a fixed concurrency. Sign-up and sign-in hash or
check an argon2id password (64 MiB, 3 passes): that is the cost meant to slow down guessing.

    python3 bench/auth.py [--users 60] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio

import httpx
from harness import drive, embedded_database, serving

PASSWORD = "bench password 0123"


async def main(args: argparse.Namespace) -> None:
    # No FLUXOPUS_JWT_SECRET or JWKS: the server signs users in itself, at /auth/v1.
    async with embedded_database() as (_, env), serving(env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            emails = [f"user{i}@bench.test" for i in range(args.users)]
            refresh_tokens: dict[int, str] = {}

            async def sign_up(i: int) -> bool:
                body = {"email": emails[i], "password": PASSWORD}
                return (await client.post("/auth/v1/signup", json=body)).status_code == 200

            async def sign_in(i: int) -> bool:
                body = {"email": emails[i], "password": PASSWORD}
                response = await client.post("/auth/v1/token", params={"grant_type": "password"}, json=body)
                refresh_tokens[i] = response.json().get("refresh_token", "")
                return response.status_code == 200

            async def refresh(i: int) -> bool:
                body = {"refresh_token": refresh_tokens[i]}
                response = await client.post("/auth/v1/token", params={"grant_type": "refresh_token"}, json=body)
                refresh_tokens[i] = response.json().get("refresh_token", "")
                return response.status_code == 200

            print(f"{args.users} users, concurrency {args.concurrency}")
            await drive("sign-up (argon2 hash)", range(args.users), sign_up, args.concurrency)
            await drive("sign-in, password grant (argon2)", range(args.users), sign_in, args.concurrency)
            await drive("refresh_token grant (rotation)", range(args.users), refresh, args.concurrency)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=60)
    parser.add_argument("--concurrency", type=int, default=4)
    asyncio.run(main(parser.parse_args()))
