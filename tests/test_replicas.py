"""Several `fluxopus serve` processes on one database, as behind a load balancer: given one signing key
(FLUXOPUS_JWT_PRIVATE_KEY or _FILE) each accepts the tokens the others issue, runs and searches what
the others stored, and the indexers they all run embed each knowledge item once. A replica given
another key answers the clear unknown-key 401; `--forwarded-allow-ips` decides whose X-Forwarded-For
counts as the client's address.

The first process starts the embedded PostgreSQL in its data dir; the others reach it with
DATABASE_URL. Every process is stopped by PID (the `processes` fixture), also when the test fails.
"""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import text

from fluxopus.db.engine import operator_engine
from tests.utils.http import bearer
from tests.utils.serve import Processes, Serve, clean_env, embedded_url, wait_until

pytestmark = pytest.mark.slow

PASSWORD = "replicas-share-one-key"
UNKNOWN = "signed by a key this server does not know"
INDEXING_SECONDS = 180  # the first embedding loads the model in each process, on a busy machine
# Distinct topics, so a semantic search has one right answer.
NOTES = [
    ("Coffee machine", "The espresso machine in the kitchen must be descaled every month with citric acid."),
    ("Parking", "Parking permits for the garage are renewed every January at the front desk."),
    ("Expenses", "Travel expenses are reimbursed within ten days once receipts are uploaded."),
    ("Holidays", "Each employee has twenty-eight days of paid leave a year, booked in the HR portal."),
    ("Wi-Fi", "Guests join the visitor wireless network with the password printed at reception."),
    ("Fire drill", "Fire drills happen twice a year; the assembly point is the car park by the river."),
    ("Printer", "The third floor printer jams on thick paper; use the manual feed tray for card."),
    ("Security badges", "Lost security badges are replaced by facilities for a ten euro fee."),
    ("Bicycles", "Bicycles are stored in the locked shed behind the building; ask for a key."),
    ("Plants", "The office plants are watered by the cleaning staff every Tuesday and Friday."),
    ("Deploys", "Production deploys are frozen on Fridays after noon and during public holidays."),
    ("Mail", "Parcels delivered for staff are kept in the post room until the end of the week."),
]


def new_key_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def anon_key_in_banner(server: Serve) -> str:
    pattern = re.compile(r"anon key: ([A-Za-z0-9_.-]+)")
    wait_until(lambda: pattern.search(server.stdout) is not None, 20, f"the banner of {server.url}\n{server.logs()}")
    match = pattern.search(server.stdout)
    assert match is not None
    return match[1]


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()


def graphql(server: Serve, token: str, query: str, **variables: Any) -> dict[str, Any]:
    body: dict[str, Any] = ok(
        httpx.post(
            f"{server.url}/graphql", json={"query": query, "variables": variables}, headers=bearer(token), timeout=30
        )
    )
    return body


def sign_up(server: Serve, email: str, forwarded_for: str | None = None) -> httpx.Response:
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for else {}
    return httpx.post(
        f"{server.url}/auth/v1/signup", json={"email": email, "password": PASSWORD}, headers=headers, timeout=30
    )


def assert_unknown_key(server: Serve, token: str) -> None:
    """The 401 of a token signed by another key: REST's {"error": ...}, GraphQL's UNAUTHENTICATED."""
    rest = httpx.get(f"{server.url}/api/tasks", headers=bearer(token), timeout=10)
    assert rest.status_code == 401, rest.text
    assert UNKNOWN in rest.json()["error"] and "algorithm" not in rest.json()["error"], rest.text
    result = graphql(server, token, "{ me { email } }")
    assert result["data"] is None, result
    [error] = result["errors"]
    assert error["extensions"]["code"] == "UNAUTHENTICATED" and UNKNOWN in error["message"], result


async def test_replicas_given_one_key_share_tokens_runs_search_and_indexing(
    processes: Processes, work_dir: Path
) -> None:
    pem = new_key_pem()
    # A: the key in the environment as an env file holds it (one line, `\n` escapes); it starts the
    # embedded PostgreSQL. B: the same key from a file, on A's database.
    a = processes.serve(work_dir / "a", clean_env(FLUXOPUS_JWT_PRIVATE_KEY=pem.replace("\n", "\\n")))
    a.wait_healthy()
    database_url = embedded_url(a)
    key_file = work_dir / "signing-key.pem"
    key_file.write_text(pem)
    b = processes.serve(
        work_dir / "b",
        clean_env(
            DATABASE_URL=database_url, FLUXOPUS_JWT_PRIVATE_KEY_FILE=str(key_file), FLUXOPUS_SIGNUPS_PER_ADDRESS="1"
        ),
        args=["--forwarded-allow-ips", "127.0.0.1"],
    )
    b.wait_healthy()
    for server in (a, b):  # the configured key is used, none generated
        assert not (server.data_dir / "jwt-signing-key.pem").exists()

    # One anon key and one JWKS everywhere: banners, `fluxopus anon-key`, /.well-known/jwks.json.
    anon = anon_key_in_banner(a)
    assert anon_key_in_banner(b) == anon
    printed = b.run_cli("anon-key")
    assert printed.returncode == 0 and printed.stdout.strip() == anon, printed.stderr
    jwks = [ok(httpx.get(f"{s.url}/auth/v1/.well-known/jwks.json")) for s in (a, b)]
    assert jwks[0] == jwks[1] and len(jwks[0]["keys"]) == 1, jwks

    # Sign up on A, sign in on B: each token works on the other replica, REST and GraphQL.
    email = "replica-user@example.com"
    session_a = ok(sign_up(a, email))
    session_b = ok(
        httpx.post(
            f"{b.url}/auth/v1/token",
            params={"grant_type": "password"},
            json={"email": email, "password": PASSWORD},
            timeout=30,
        )
    )
    for token in (session_a["access_token"], session_b["access_token"]):
        for server in (a, b):
            assert ok(httpx.get(f"{server.url}/api/tasks", headers=bearer(token), timeout=10)) == []
            me = graphql(server, token, "{ me { email } }")
            assert me.get("data") == {"me": {"email": email}}, me
    # A's refresh token is honoured by B (sessions live in the database).
    refreshed = ok(
        httpx.post(
            f"{b.url}/auth/v1/token",
            params={"grant_type": "refresh_token"},
            json={"refresh_token": session_a["refresh_token"]},
            timeout=30,
        )
    )
    token = refreshed["access_token"]
    assert ok(httpx.get(f"{a.url}/api/tasks", headers=bearer(token), timeout=10)) == []

    # A skill created on A runs on B (REST and GraphQL).
    skill = ok(
        httpx.post(
            f"{a.url}/api/skills", json={"name": "Greet", "instructions": "Hi {{ input.who }}"}, headers=bearer(token)
        ),
        201,
    )
    run = ok(
        httpx.post(
            f"{b.url}/api/skills/{skill['id']}/run",
            json={"input": {"who": "from B"}},
            headers={**bearer(token), "Accept": "application/json"},
            timeout=30,
        )
    )
    assert (run["status"], run["output"]) == ("succeeded", "Hi from B"), run
    ran = graphql(
        b,
        token,
        "mutation($id: ID!, $input: JSON!) { runSkill(id: $id, input: $input) { output } }",
        id=skill["id"],
        input={"who": "over GraphQL"},
    )
    assert ran.get("data") == {"runSkill": {"output": "Hi over GraphQL"}}, ran

    # Knowledge written on both replicas at once; both run the indexer and race for every job.
    created = []
    for i, (title, content) in enumerate(NOTES):
        server = (a, b)[i % 2]
        item = ok(
            httpx.post(
                f"{server.url}/api/knowledge",
                json={"title": title, "content": content},
                headers=bearer(token),
                timeout=30,
            ),
            201,
        )
        created.append(item["id"])

    def all_indexed() -> bool:
        statuses = [
            ok(httpx.get(f"{b.url}/api/knowledge/{item_id}", headers=bearer(token), timeout=10))["status"]
            for item_id in created
        ]
        assert "failed" not in statuses, statuses
        return all(s == "indexed" for s in statuses)

    deadline = time.monotonic() + INDEXING_SECONDS
    while not all_indexed():
        assert time.monotonic() < deadline, f"not all indexed in {INDEXING_SECONDS} s\n{a.logs()}\n{b.logs()}"
        time.sleep(0.5)

    # Searched on B: a question with no word in common with the item's title, and a keyword.
    descale = created[0]
    hits = ok(
        httpx.get(
            f"{b.url}/api/knowledge/search",
            params={"q": "how often should the coffee maker be cleaned", "mode": "semantic"},
            headers=bearer(token),
            timeout=30,
        )
    )
    assert hits and hits[0]["item"]["id"] == descale, hits
    searched = graphql(a, token, '{ searchKnowledge(q: "bicycle shed key") { item { id } } }')
    assert searched["data"]["searchKnowledge"][0]["item"]["id"] == created[8], searched

    # Each job ran once. A job is deleted when done, so the proof is in the chunks: an item embedded a
    # second time would have had its chunks deleted and inserted again, spending identity values, so
    # the chunks' sequence would have gone past the number of chunks that exist.
    async with operator_engine(database_url) as engine, engine.connect() as conn:
        chunks, items = (
            await conn.execute(
                text(
                    "select count(*), count(distinct knowledge_id) from knowledge_chunks"
                    " where knowledge_id = any(cast(:ids as uuid[]))"
                ),
                {"ids": created},
            )
        ).one()
        total = (await conn.execute(text("select count(*) from knowledge_chunks"))).scalar_one()
        issued = (
            await conn.execute(
                text("select last_value from pg_sequences where sequencename = 'knowledge_chunks_id_seq'")
            )
        ).scalar_one()
        jobs = (await conn.execute(text("select count(*) from embedding_jobs"))).scalar_one()
    assert items == len(NOTES) and chunks >= len(NOTES), (chunks, items)
    assert issued == total == chunks, f"{issued} chunk ids issued for {total} chunks: some item was embedded twice"
    assert jobs == 0

    # A replica given another key: a token of the shared key is "signed by a key this server does not
    # know" there, and the other way round. It trusts no proxy, so X-Forwarded-For is not believed.
    c = processes.serve(
        work_dir / "c",
        clean_env(
            DATABASE_URL=database_url,
            FLUXOPUS_JWT_PRIVATE_KEY=new_key_pem(),
            FLUXOPUS_INDEXER="false",
            FLUXOPUS_SIGNUPS_PER_ADDRESS="1",
            FORWARDED_ALLOW_IPS="10.9.9.9",
        ),
    )
    c.wait_healthy()
    assert anon_key_in_banner(c) != anon
    assert_unknown_key(c, token)
    c_token = ok(
        httpx.post(
            f"{c.url}/auth/v1/token",
            params={"grant_type": "password"},
            json={"email": email, "password": PASSWORD},
            timeout=30,
        )
    )["access_token"]
    assert ok(httpx.get(f"{c.url}/api/tasks", headers=bearer(c_token), timeout=10)) == []
    assert_unknown_key(a, c_token)

    # Sign-ups per address (1 here) count the client's address: on C, behind an untrusted "proxy", the
    # loopback address that already signed up on A; on B, which trusts 127.0.0.1, the forwarded one.
    refused = sign_up(c, "via-c@example.com", forwarded_for="198.51.100.99")
    assert refused.status_code == 429, refused.text
    assert ok(sign_up(b, "via-b@example.com", forwarded_for="198.51.100.7"))["access_token"]
    again = sign_up(b, "via-b-again@example.com", forwarded_for="198.51.100.7")
    assert again.status_code == 429, again.text

    # The replicas using A's database stop first; A then stops its PostgreSQL.
    for server in (c, b, a):
        server.stop(signal.SIGTERM)
