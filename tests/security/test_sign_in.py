"""The sign-in rate limit cannot be raced, another address cannot lock a user out, and sign-ups are
limited per address; against a real `fluxopus serve`, with clients on different loopback addresses."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.utils.builders import unique
from tests.utils.serve import Serve

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

PASSWORD = "correct horse battery staple"
SERVE_ENV = {"FLUXOPUS_SIGNUPS_PER_ADDRESS": "4"}


def client_from(served: Serve, address: str) -> httpx.AsyncClient:
    """A client whose connections come from `address` (any 127.x.y.z is this machine)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=served.url, transport=transport, timeout=60)


async def sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(
        "/auth/v1/token", params={"grant_type": "password"}, json={"email": email, "password": password}
    )


async def test_forty_parallel_guesses_are_not_all_evaluated(served: Serve) -> None:
    """Today all forty were checked (and a right one among them got in). Each attempt is counted before
    its password is checked: five are evaluated, thirty-five refused, and the right password after them
    is refused too, from that address; the owner, elsewhere, is not locked out."""
    email = f"{unique('victim')}@example.com"
    async with client_from(served, "127.0.0.11") as owner, client_from(served, "127.0.0.12") as attacker:
        assert (await owner.post("/auth/v1/signup", json={"email": email, "password": PASSWORD})).status_code == 200
        answers = await asyncio.gather(*(sign_in(attacker, email, f"wrong guess {i}") for i in range(40)))
        statuses = [a.status_code for a in answers]
        assert (statuses.count(400), statuses.count(429)) == (5, 35), statuses
        assert all(a.json()["error_code"] == "over_request_rate_limit" for a in answers if a.status_code == 429)
        right = await sign_in(attacker, email, PASSWORD)
        assert right.status_code == 429 and "access_token" not in right.json()
        mine = await sign_in(owner, email, PASSWORD)
        assert mine.status_code == 200, mine.text


async def test_a_guess_from_many_addresses_is_still_bounded(served: Serve) -> None:
    email = f"{unique('target')}@example.com"
    async with client_from(served, "127.0.0.21") as owner:
        assert (await owner.post("/auth/v1/signup", json={"email": email, "password": PASSWORD})).status_code == 200
    refused = 0
    for n in range(25):  # 25 addresses × 5 guesses = 125 > the 100 an email takes from anywhere
        async with client_from(served, f"127.0.1.{n + 1}") as attacker:
            for _ in range(5):
                refused += (await sign_in(attacker, email, "guess guess")).status_code == 429
    assert refused == 25


async def test_sign_ups_are_limited_per_address(served: Serve) -> None:
    async with client_from(served, "127.0.0.31") as busy, client_from(served, "127.0.0.32") as other:
        for _ in range(4):
            body = {"email": f"{unique('many')}@example.com", "password": PASSWORD}
            assert (await busy.post("/auth/v1/signup", json=body)).status_code == 200
        body = {"email": f"{unique('many')}@example.com", "password": PASSWORD}
        limited = await busy.post("/auth/v1/signup", json=body)
        assert limited.status_code == 429 and limited.json()["error_code"] == "over_request_rate_limit"
        assert (await busy.post("/auth/v1/signup", json=body)).status_code == 429
        assert (await other.post("/auth/v1/signup", json=body)).status_code == 200
        # Parallel sign-ups cannot race past it either.
        racers = await asyncio.gather(
            *(
                other.post("/auth/v1/signup", json={"email": f"{unique('race')}@example.com", "password": PASSWORD})
                for _ in range(10)
            )
        )
        assert sorted(r.status_code for r in racers) == [200] * 3 + [429] * 7
