"""The monthly token budget: what GET /api/usage and GraphQL `usage` report, how runs reserve and settle.

Every run reserves its worst case — UTF-8 bytes of the rendered prompt + 16 + max_tokens — in
Postgres before the model is called, and settles the usage the provider reported when it ends.
Grouped by concern: reading the budget, one run's reservation and settlement, refusals over budget,
twenty concurrent runs, failed and cancelled runs, stale reservations, isolation between companies,
and the `fluxopus budget` command. Model calls go to the fake OpenAI server, scripted per model name.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx_sse import aconnect_sse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.config import Settings
from tests.utils.builders import Company, User, create_skill, error_codes, gql, set_budget, unique
from tests.utils.cli import CliResult, cli_env, run_cli
from tests.utils.fake_llm import FakeOpenAI, Script
from tests.utils.server import ThreadedServer

DEFAULT_LIMIT = 1_000_000  # Settings.token_budget
MAX_TOKENS = 50
# Non-ASCII on purpose: the reservation counts UTF-8 bytes, not characters.
INSTRUCTIONS = "Grüße an {{ input.name }} ☃"
INPUT = {"name": "Zoë"}
PROMPT = "Grüße an Zoë ☃"
RESERVATION = len(PROMPT.encode()) + 16 + MAX_TOKENS
TIMEOUT = 20  # a safety net so a broken server fails the test instead of hanging it
USAGE_QUERY = "{ usage { periodStart used reserved limit } }"
RUN_MUTATION = """
mutation($id: ID!, $input: JSON!) { runSkill(id: $id, input: $input) { id status inputTokens outputTokens } }
"""


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def this_period() -> dt.date:
    return dt.datetime.now(dt.UTC).date().replace(day=1)


@dataclass(frozen=True)
class Budget:
    period_start: dt.date
    used: int
    reserved: int
    limit: int


async def rest_usage(client: httpx.AsyncClient, user: User) -> Budget:
    response = await client.get("/api/usage", headers=user.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"period_start", "used", "reserved", "limit"}, body
    return Budget(dt.date.fromisoformat(body["period_start"]), body["used"], body["reserved"], body["limit"])


async def graphql_usage(client: httpx.AsyncClient, user: User) -> Budget:
    result = await gql(client, user, USAGE_QUERY)
    assert "errors" not in result, result
    u = result["data"]["usage"]
    return Budget(dt.date.fromisoformat(u["periodStart"]), u["used"], u["reserved"], u["limit"])


async def usage(client: httpx.AsyncClient, user: User) -> Budget:
    """The budget as REST and GraphQL both report it (they must agree)."""
    rest = await rest_usage(client, user)
    assert await graphql_usage(client, user) == rest
    return rest


async def stored_usage(engine: AsyncEngine, company: Company) -> tuple[int, int] | None:
    """(used, reserved) of this month's token_usage row, read as superuser; None when there is no row."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "select u.used, u.reserved from token_usage u join companies c on c.id = u.company_id"
                    " where lower(c.name) = lower(:name) and u.period_start = :period"
                ),
                {"name": company.name, "period": this_period()},
            )
        ).first()
    return None if row is None else (row.used, row.reserved)


async def stored_runs(engine: AsyncEngine, skill_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "select id, status, input_tokens, output_tokens, reserved_tokens, budget_period, output, error"
                " from skill_runs where skill_id = :skill order by created_at"
            ),
            {"skill": skill_id},
        )
        return [dict(r) for r in rows.mappings()]


async def stored_budget(engine: AsyncEngine, company: Company) -> int | None:
    async with engine.connect() as conn:
        return (
            await conn.execute(
                text("select monthly_token_budget from companies where name = :name"), {"name": company.name}
            )
        ).scalar_one()


def model_requests(fake: FakeOpenAI, model: str) -> list[dict[str, Any]]:
    return [r for r in fake.requests if r.get("model") == model]


async def scripted_skill(
    client: httpx.AsyncClient, fake: FakeOpenAI, user: User, script: Script, **fields: Any
) -> tuple[dict[str, Any], str]:
    """A skill on its own fake OpenAI model, which answers as `script` says."""
    model = unique("m")
    fake.script(model, script)
    skill = await create_skill(
        client, user, instructions=INSTRUCTIONS, provider="openai", model=model, max_tokens=MAX_TOKENS, **fields
    )
    return skill, model


async def run(
    client: httpx.AsyncClient, user: User, skill_id: str, *, accept: str | None = "application/json"
) -> httpx.Response:
    headers = {**user.headers, **({"Accept": accept} if accept else {})}
    return await client.post(f"/api/skills/{skill_id}/run", json={"input": INPUT}, headers=headers)


async def run_ok(client: httpx.AsyncClient, user: User, skill_id: str) -> dict[str, Any]:
    response = await run(client, user, skill_id)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def assert_budget_exceeded(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": "Token budget exceeded", "code": "budget_exceeded"}


async def wait_for(probe: Callable[[], Awaitable[Any]]) -> Any:
    """Polls until `probe` returns something truthy (work the server finishes after the client left)."""
    async with asyncio.timeout(TIMEOUT):
        while not (value := await probe()):
            await asyncio.sleep(0.05)
    return value


def model_clients(app: FastAPI) -> list[Any]:
    """The SDK clients (openai.AsyncOpenAI, anthropic.AsyncAnthropic) of the app's model providers."""
    return [p.client for p in app.state.runtime.ai.providers.values() if hasattr(p, "client")]


@pytest.fixture(scope="module")
def server(ai_settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    """A real server (providers = the fakes); the app builds its own engine in the server thread's loop."""
    app = create_app(ai_settings, database_url=database_url)
    with ThreadedServer(app) as running:
        yield running


@pytest.fixture
async def http(server: ThreadedServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
        yield client


# --------------------------------------------------------------------------------------------
# reading the budget
# --------------------------------------------------------------------------------------------


async def test_a_fresh_company_has_the_default_budget_this_month(ai_client: httpx.AsyncClient, acme: Company) -> None:
    for user in (acme.admin, acme.alice):
        assert await usage(ai_client, user) == Budget(this_period(), 0, 0, DEFAULT_LIMIT)


async def test_a_company_override_is_the_limit_until_reset(
    ai_client: httpx.AsyncClient, database_url: str, engine: AsyncEngine, acme: Company, globex: Company
) -> None:
    await set_budget(database_url, acme, 12_345)
    assert await stored_budget(engine, acme) == 12_345
    assert (await usage(ai_client, acme.bob)).limit == 12_345
    assert (await usage(ai_client, globex.bob)).limit == DEFAULT_LIMIT

    await set_budget(database_url, acme, None)
    assert await stored_budget(engine, acme) is None
    assert (await usage(ai_client, acme.bob)).limit == DEFAULT_LIMIT


async def test_usage_needs_a_token(ai_client: httpx.AsyncClient, acme: Company) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-jwt"}):
        response = await ai_client.get("/api/usage", headers=headers)
        assert response.status_code == 401, response.text
        assert response.json()["code"] == "unauthorized" and set(response.json()) == {"error", "code"}
    assert error_codes(await gql(ai_client, None, USAGE_QUERY)) == ["UNAUTHENTICATED"]


# --------------------------------------------------------------------------------------------
# one run: reserve, then settle what the provider reported
# --------------------------------------------------------------------------------------------


async def test_a_run_adds_exactly_its_reported_usage(
    ai_client: httpx.AsyncClient, fake_openai: FakeOpenAI, engine: AsyncEngine, acme: Company, globex: Company
) -> None:
    script = Script(chunks=["Hallo ", "Zoë"], input_tokens=37, output_tokens=5)
    skill, model = await scripted_skill(ai_client, fake_openai, acme.alice, script)

    first = await run_ok(ai_client, acme.alice, skill["id"])
    assert (first["status"], first["input_tokens"], first["output_tokens"]) == ("succeeded", 37, 5)
    # The fake got the rendered prompt the reservation was computed from.
    assert model_requests(fake_openai, model)[0]["messages"][-1]["content"] == PROMPT
    # Every member sees the company's budget, not just the runner.
    assert await usage(ai_client, acme.bob) == Budget(this_period(), 42, 0, DEFAULT_LIMIT)
    assert await stored_usage(engine, acme) == (42, 0)

    await run_ok(ai_client, acme.alice, skill["id"])
    assert (await usage(ai_client, acme.admin)).used == 84
    [one, two] = await stored_runs(engine, skill["id"])
    assert one["reserved_tokens"] == two["reserved_tokens"] == RESERVATION
    assert one["budget_period"] == this_period()

    assert await usage(ai_client, globex.alice) == Budget(this_period(), 0, 0, DEFAULT_LIMIT)
    assert await stored_usage(engine, globex) is None


async def test_a_run_in_progress_holds_its_reservation(
    http: httpx.AsyncClient, fake_openai: FakeOpenAI, engine: AsyncEngine, acme: Company
) -> None:
    # The model holds its answer until usage has been read: the run is still waiting on it meanwhile.
    answered = threading.Event()
    script = Script(chunks=["slow ", "answer"], gate=answered, input_tokens=9, output_tokens=2)
    skill, _ = await scripted_skill(http, fake_openai, acme.alice, script)

    url = f"/api/skills/{skill['id']}/run"
    async with aconnect_sse(http, "POST", url, json={"input": INPUT}, headers=acme.alice.headers) as source:
        events = source.aiter_sse()
        assert (await anext(events)).event == "run.started"
        try:
            during = await usage(http, acme.bob)
            assert await stored_usage(engine, acme) == (0, RESERVATION)
        finally:
            answered.set()
        rest = [e.event async for e in events]
    assert during == Budget(this_period(), 0, RESERVATION, DEFAULT_LIMIT)
    assert rest == ["delta", "delta", "run.completed"]
    assert await usage(http, acme.bob) == Budget(this_period(), 11, 0, DEFAULT_LIMIT)


# --------------------------------------------------------------------------------------------
# over budget: 429 / BUDGET_EXCEEDED, no model call, no run
# --------------------------------------------------------------------------------------------


async def graphql_run(client: httpx.AsyncClient, user: User, skill_id: str) -> str | None:
    """runSkill over GraphQL; the error code, or None when the run succeeded."""
    result = await gql(client, user, RUN_MUTATION, {"id": skill_id, "input": INPUT})
    if "errors" in result:
        [code] = error_codes(result)
        assert result["data"] is None
        return code
    assert result["data"]["runSkill"]["status"] == "SUCCEEDED", result
    return None


async def rest_sse_run(client: httpx.AsyncClient, user: User, skill_id: str) -> str | None:
    response = await run(client, user, skill_id, accept=None)
    if response.status_code == 429:
        assert_budget_exceeded(response)
        return "BUDGET_EXCEEDED"
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert "event: run.completed" in response.text, response.text
    return None


async def rest_json_run(client: httpx.AsyncClient, user: User, skill_id: str) -> str | None:
    response = await run(client, user, skill_id)
    if response.status_code == 429:
        assert_budget_exceeded(response)
        return "BUDGET_EXCEEDED"
    assert response.status_code == 200 and response.json()["status"] == "succeeded", response.text
    return None


RUNNERS = {"rest-sse": rest_sse_run, "rest-json": rest_json_run, "graphql": graphql_run}


@pytest.mark.parametrize("how", RUNNERS)
async def test_a_run_that_does_not_fit_is_refused_before_the_model(
    how: str,
    ai_client: httpx.AsyncClient,
    fake_openai: FakeOpenAI,
    database_url: str,
    engine: AsyncEngine,
    acme: Company,
) -> None:
    run_via = RUNNERS[how]
    skill, model = await scripted_skill(ai_client, fake_openai, acme.alice, Script(input_tokens=3, output_tokens=1))

    await set_budget(database_url, acme, RESERVATION - 1)
    assert await run_via(ai_client, acme.alice, skill["id"]) == "BUDGET_EXCEEDED"
    assert model_requests(fake_openai, model) == []
    assert await stored_runs(engine, skill["id"]) == []
    assert await usage(ai_client, acme.alice) == Budget(this_period(), 0, 0, RESERVATION - 1)

    # Exactly the reservation fits (used + reserved + amount <= limit).
    await set_budget(database_url, acme, RESERVATION)
    assert await run_via(ai_client, acme.alice, skill["id"]) is None
    assert len(model_requests(fake_openai, model)) == 1

    # Back on the server default, the next run fits again although 4 tokens are now used.
    assert await run_via(ai_client, acme.alice, skill["id"]) == "BUDGET_EXCEEDED"
    await set_budget(database_url, acme, None)
    assert await run_via(ai_client, acme.alice, skill["id"]) is None
    assert [r["status"] for r in await stored_runs(engine, skill["id"])] == ["succeeded", "succeeded"]
    assert await usage(ai_client, acme.alice) == Budget(this_period(), 8, 0, DEFAULT_LIMIT)


async def test_used_tokens_count_against_the_budget(
    ai_client: httpx.AsyncClient, fake_openai: FakeOpenAI, database_url: str, acme: Company
) -> None:
    skill, _ = await scripted_skill(ai_client, fake_openai, acme.alice, Script(input_tokens=100, output_tokens=20))
    await run_ok(ai_client, acme.alice, skill["id"])

    await set_budget(database_url, acme, 120 + RESERVATION - 1)
    assert_budget_exceeded(await run(ai_client, acme.alice, skill["id"]))
    await set_budget(database_url, acme, 120 + RESERVATION)
    await run_ok(ai_client, acme.alice, skill["id"])
    assert await usage(ai_client, acme.alice) == Budget(this_period(), 240, 0, 120 + RESERVATION)


# --------------------------------------------------------------------------------------------
# twenty concurrent runs against a budget that fits seven
# --------------------------------------------------------------------------------------------

CONCURRENT = 20
FITTING = 7
CONCURRENT_BUDGET = FITTING * RESERVATION + RESERVATION // 2


async def run_concurrently(
    client: httpx.AsyncClient, fake: FakeOpenAI, database_url: str, company: Company, script: Script
) -> tuple[list[httpx.Response], dict[str, Any], str]:
    """Twenty simultaneous runs of one skill; the model is slow, so all reserve before any settles."""
    skill, model = await scripted_skill(client, fake, company.alice, script, visibility="company")
    await set_budget(database_url, company, CONCURRENT_BUDGET)
    users = [company.alice, company.bob, company.admin]
    responses = await asyncio.gather(*(run(client, users[i % len(users)], skill["id"]) for i in range(CONCURRENT)))
    return list(responses), skill, model


def split_outcomes(responses: list[httpx.Response]) -> list[dict[str, Any]]:
    """The succeeded runs; asserts that every other response is a 429."""
    refused = [r for r in responses if r.status_code == 429]
    for response in refused:
        assert_budget_exceeded(response)
    done = [r.json() for r in responses if r.status_code == 200]
    assert len(done) + len(refused) == len(responses), [r.text for r in responses]
    assert all(d["status"] == "succeeded" for d in done), done
    return done


@pytest.mark.slow
async def test_concurrent_runs_never_spend_more_than_the_budget(
    ai_client: httpx.AsyncClient, fake_openai: FakeOpenAI, database_url: str, engine: AsyncEngine, acme: Company
) -> None:
    script = Script(chunks=["fits ", "the budget"], delay=1.5, input_tokens=10, output_tokens=4)
    responses, skill, model = await run_concurrently(ai_client, fake_openai, database_url, acme, script)

    done = split_outcomes(responses)
    assert len(done) == FITTING
    assert len(model_requests(fake_openai, model)) == FITTING  # the 13 refused never reached the model
    rows = await stored_runs(engine, skill["id"])
    assert len(rows) == FITTING and all(r["status"] == "succeeded" for r in rows)
    assert sum(r["reserved_tokens"] for r in rows) <= CONCURRENT_BUDGET
    settled = sum(r["input_tokens"] + r["output_tokens"] for r in rows)
    assert settled == FITTING * 14 <= CONCURRENT_BUDGET
    assert await stored_usage(engine, acme) == (settled, 0)
    assert await usage(ai_client, acme.admin) == Budget(this_period(), settled, 0, CONCURRENT_BUDGET)


@pytest.mark.slow
async def test_concurrent_runs_settle_what_the_provider_reports_even_above_the_reservation(
    ai_client: httpx.AsyncClient, fake_openai: FakeOpenAI, database_url: str, engine: AsyncEngine, acme: Company
) -> None:
    """The budget bounds what runs *reserve* (their worst case): a provider cannot count more input tokens
    than prompt bytes + framing, nor more output tokens than max_tokens, so real settled usage stays within
    it. A provider that reports more anyway (scripted here) is charged in full: `used` records reported
    usage and may then pass the limit, after which every run is refused until the budget is raised."""
    big = 2 * RESERVATION
    script = Script(chunks=["over ", "reports"], delay=1.5, input_tokens=big, output_tokens=1)
    responses, skill, _ = await run_concurrently(ai_client, fake_openai, database_url, acme, script)

    assert len(split_outcomes(responses)) == FITTING
    rows = await stored_runs(engine, skill["id"])
    assert sum(r["reserved_tokens"] for r in rows) == FITTING * RESERVATION <= CONCURRENT_BUDGET
    settled = sum(r["input_tokens"] + r["output_tokens"] for r in rows)
    assert settled == FITTING * (big + 1) > CONCURRENT_BUDGET
    assert await stored_usage(engine, acme) == (settled, 0)
    assert_budget_exceeded(await run(ai_client, acme.alice, skill["id"]))


# --------------------------------------------------------------------------------------------
# failed and cancelled runs
# --------------------------------------------------------------------------------------------


async def test_a_failed_run_uses_nothing_and_releases_its_reservation(
    ai_client: httpx.AsyncClient, fake_openai: FakeOpenAI, engine: AsyncEngine, acme: Company
) -> None:
    skill, model = await scripted_skill(ai_client, fake_openai, acme.alice, Script(status=500))

    body = await run_ok(ai_client, acme.alice, skill["id"])
    assert (body["status"], body["input_tokens"], body["output_tokens"]) == ("failed", 0, 0)
    assert "500" in body["error"]
    assert len(model_requests(fake_openai, model)) == 1
    assert await stored_usage(engine, acme) == (0, 0)
    assert await usage(ai_client, acme.alice) == Budget(this_period(), 0, 0, DEFAULT_LIMIT)


def estimate(text_: str) -> int:
    """The service's estimate for unreported usage: about four UTF-8 bytes a token, rounded up."""
    return (len(text_.encode()) + 3) // 4


async def test_a_cancelled_run_is_charged_an_estimate(
    http: httpx.AsyncClient, fake_openai: FakeOpenAI, engine: AsyncEngine, acme: Company
) -> None:
    # The model sends one chunk, then holds the rest until the test is long gone.
    script = Script(chunks=["one ", "two ", "three ", "four"], gate=threading.Event(), gate_at=1)
    skill, model = await scripted_skill(http, fake_openai, acme.alice, script)

    url = f"/api/skills/{skill['id']}/run"
    async with aconnect_sse(http, "POST", url, json={"input": INPUT}, headers=acme.alice.headers) as source:
        events = source.aiter_sse()
        assert (await anext(events)).event == "run.started"
        assert (await anext(events)).event == "delta"
    # The client is gone: the server cancels the model call and closes the run.

    async def closed() -> list[dict[str, Any]]:
        rows = await stored_runs(engine, skill["id"])
        return rows if rows[0]["status"] != "running" else []

    [row] = await wait_for(closed)
    assert row["status"] == "cancelled"
    assert row["output"].startswith("one ")
    assert (row["input_tokens"], row["output_tokens"]) == (estimate(PROMPT), estimate(row["output"]))
    assert await stored_usage(engine, acme) == (row["input_tokens"] + row["output_tokens"], 0)
    assert await wait_for(lambda: asyncio.to_thread(fake_openai.disconnects, model)) == 1


# --------------------------------------------------------------------------------------------
# stale reservations: runs whose server died
# --------------------------------------------------------------------------------------------


async def insert_open_run(engine: AsyncEngine, user: User, skill_id: str, *, age_seconds: int, tokens: int) -> str:
    """As superuser: a run still `running` since `age_seconds` ago, holding `tokens` of this month's budget."""
    async with engine.begin() as conn:
        run_id = (
            await conn.execute(
                text(
                    "insert into skill_runs (skill_id, company_id, user_id, version, status, provider, model,"
                    " reserved_tokens, budget_period, created_at, started_at)"
                    " values (:skill, :company, :user, 1, 'running', 'openai', 'lost', :tokens, :period,"
                    " now() - make_interval(secs => :age), now() - make_interval(secs => :age)) returning id"
                ),
                {
                    "skill": skill_id,
                    "company": user.company_id,
                    "user": user.id,
                    "tokens": tokens,
                    "period": this_period(),
                    "age": float(age_seconds),
                },
            )
        ).scalar_one()
        await conn.execute(
            text(
                "insert into token_usage (company_id, period_start, reserved) values (:company, :period, :tokens)"
                " on conflict (company_id, period_start) do update set reserved = token_usage.reserved + :tokens"
            ),
            {"company": user.company_id, "period": this_period(), "tokens": tokens},
        )
    return str(run_id)


async def run_row(engine: AsyncEngine, run_id: str) -> dict[str, Any]:
    async with engine.connect() as conn:
        row = await conn.execute(
            text("select status, error, finished_at from skill_runs where id = :id"), {"id": run_id}
        )
        return dict(row.mappings().one())


async def test_a_stale_run_gives_its_reservation_back(
    ai_client: httpx.AsyncClient, fake_openai: FakeOpenAI, database_url: str, engine: AsyncEngine, acme: Company
) -> None:
    skill, _ = await scripted_skill(ai_client, fake_openai, acme.alice, Script(input_tokens=6, output_tokens=2))
    budget = 10 * RESERVATION
    await set_budget(database_url, acme, budget)
    stale = await insert_open_run(engine, acme.bob, skill["id"], age_seconds=2 * 3600, tokens=budget)
    assert await usage(ai_client, acme.alice) == Budget(this_period(), 0, budget, budget)

    body = await run_ok(ai_client, acme.alice, skill["id"])
    assert body["status"] == "succeeded"
    closed = await run_row(engine, stale)
    assert closed["status"] == "failed" and closed["finished_at"] is not None
    assert "interrupted" in closed["error"]
    assert await stored_usage(engine, acme) == (8, 0)


async def test_a_stale_run_is_released_even_when_the_new_run_still_does_not_fit(
    ai_client: httpx.AsyncClient, fake_openai: FakeOpenAI, database_url: str, engine: AsyncEngine, acme: Company
) -> None:
    skill, model = await scripted_skill(ai_client, fake_openai, acme.alice, Script())
    await set_budget(database_url, acme, RESERVATION - 1)
    stale = await insert_open_run(engine, acme.bob, skill["id"], age_seconds=2 * 3600, tokens=RESERVATION - 1)

    assert_budget_exceeded(await run(ai_client, acme.alice, skill["id"]))
    assert model_requests(fake_openai, model) == []
    # The refusal still commits the clean-up: the lost run is closed and its tokens are free.
    assert (await run_row(engine, stale))["status"] == "failed"
    assert await usage(ai_client, acme.alice) == Budget(this_period(), 0, 0, RESERVATION - 1)


async def test_a_run_younger_than_the_timeout_keeps_its_reservation(
    ai_client: httpx.AsyncClient, fake_openai: FakeOpenAI, database_url: str, engine: AsyncEngine, acme: Company
) -> None:
    # run_timeout is 600 s; an open run counts as stale only after run_timeout + 60 s.
    skill, model = await scripted_skill(ai_client, fake_openai, acme.alice, Script())
    budget = 10 * RESERVATION
    await set_budget(database_url, acme, budget)
    open_run = await insert_open_run(engine, acme.bob, skill["id"], age_seconds=9 * 60, tokens=budget)

    assert_budget_exceeded(await run(ai_client, acme.alice, skill["id"]))
    assert (await run_row(engine, open_run))["status"] == "running"
    assert model_requests(fake_openai, model) == []
    assert await stored_usage(engine, acme) == (0, budget)


# --------------------------------------------------------------------------------------------
# per-company isolation
# --------------------------------------------------------------------------------------------


async def test_an_exhausted_budget_stops_only_its_company(
    ai_client: httpx.AsyncClient,
    fake_openai: FakeOpenAI,
    database_url: str,
    engine: AsyncEngine,
    acme: Company,
    globex: Company,
) -> None:
    script = Script(input_tokens=4, output_tokens=3)
    acme_skill, _ = await scripted_skill(ai_client, fake_openai, acme.alice, script)
    globex_skill, _ = await scripted_skill(ai_client, fake_openai, globex.alice, script)
    await set_budget(database_url, acme, 0)

    assert_budget_exceeded(await run(ai_client, acme.alice, acme_skill["id"]))
    assert (await run_ok(ai_client, globex.alice, globex_skill["id"]))["status"] == "succeeded"
    assert await usage(ai_client, globex.bob) == Budget(this_period(), 7, 0, DEFAULT_LIMIT)
    assert await usage(ai_client, acme.bob) == Budget(this_period(), 0, 0, 0)
    assert await stored_usage(engine, globex) == (7, 0)


# --------------------------------------------------------------------------------------------
# the `fluxopus budget` command
# --------------------------------------------------------------------------------------------


@pytest.fixture
def budget_cli(tmp_path: Path, database_url: str) -> Callable[..., Awaitable[CliResult]]:
    """`python -m fluxopus.cli budget …` against the session database (DATABASE_URL), in an empty dir."""

    async def run(*args: str) -> CliResult:
        return await run_cli(cli_env(tmp_path, database_url), tmp_path, "budget", *args)

    return run


@pytest.mark.slow
async def test_cli_sets_and_resets_a_company_budget(
    budget_cli: Callable[..., Awaitable[CliResult]], ai_client: httpx.AsyncClient, engine: AsyncEngine, acme: Company
) -> None:
    result = await budget_cli("--company", acme.name.upper(), "--tokens", "4321")
    assert result.code == 0, result.stderr
    assert "4321" in result.stdout
    assert await stored_budget(engine, acme) == 4321
    assert (await usage(ai_client, acme.alice)).limit == 4321

    result = await budget_cli("--company", acme.name)
    assert result.code == 0, result.stderr
    assert await stored_budget(engine, acme) is None
    assert (await usage(ai_client, acme.alice)).limit == DEFAULT_LIMIT


@pytest.mark.slow
async def test_cli_refuses_an_unknown_company_and_a_negative_budget(
    budget_cli: Callable[..., Awaitable[CliResult]], engine: AsyncEngine, acme: Company
) -> None:
    missing = unique("no-such-company")
    result = await budget_cli("--company", missing, "--tokens", "10")
    assert result.code == 1
    assert missing in result.stderr

    result = await budget_cli("--company", acme.name, "--tokens", "-1")
    assert result.code == 2, result.stdout + result.stderr
    assert await stored_budget(engine, acme) is None


# --------------------------------------------------------------------------------------------
# shutdown
# --------------------------------------------------------------------------------------------


async def serve_one_run(app: FastAPI, fake: FakeOpenAI, user: User) -> list[bool]:
    """Runs a skill on a real server for `app`, stops the server, and says which model clients are closed."""
    with ThreadedServer(app) as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=TIMEOUT) as client:
            skill, _ = await scripted_skill(client, fake, user, Script(input_tokens=1, output_tokens=1))
            await run_ok(client, user, skill["id"])
        used = model_clients(app)
    return [client.is_closed() for client in used]


@pytest.mark.slow
async def test_a_stopped_server_has_closed_its_model_clients(
    ai_settings: Settings, database_url: str, fake_openai: FakeOpenAI, acme: Company
) -> None:
    """The app's shutdown must close the provider SDK clients (their pooled keep-alive connection to the
    model). Left open, a server stopped within the provider's keep-alive time after a run cannot close its
    event loop (uvloop: OSError EBUSY in the server thread) and the socket leaks (ResourceWarning)."""
    closed = await serve_one_run(create_app(ai_settings, database_url=database_url), fake_openai, acme.alice)
    gc.collect()  # any leaked transport is reported here, not in a later test
    assert closed == [True, True]
