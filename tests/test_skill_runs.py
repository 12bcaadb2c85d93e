"""Skill runs over REST against the fake OpenAI and Anthropic servers, end to end.

Streams are read with a real SSE client (httpx-sse). Every run is checked three ways: what the
client saw, what the fake provider was asked, and what the database recorded (the run row and
the company's token usage, whose reservation must always be released).

Grouped by concern: successful streams and JSON answers, provider failures, version pinning,
input validation, visibility and permissions, and clients that disconnect mid-run (over a
real uvicorn server, since the ASGI test transport only answers once the app has finished).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx_sse import aconnect_sse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.app import create_app
from fluxopus.config import Settings
from tests.utils.builders import Company, User, create_skill, unique
from tests.utils.fake_llm import FakeAnthropic, FakeOpenAI, Script
from tests.utils.http import assert_error, eventually
from tests.utils.server import ThreadedServer

Json = dict[str, Any]
PROVIDERS = ["openai", "anthropic"]
JSON_ACCEPT = {"Accept": "application/json"}
GREETING = "Greet {{ input.name }} warmly"
NAME_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "minLength": 1}, "count": {"type": "integer"}},
    "required": ["name"],
}
SAFETY = 20  # seconds: a broken server fails the test instead of hanging it
SHORT_TIMEOUT = 0.5  # llm_timeout of the app used for the timeout cases


# --------------------------------------------------------------------------- helpers


@dataclass
class Event:
    name: str
    data: Json


@dataclass
class Stream:
    status: int
    events: list[Event] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [e.name for e in self.events]

    @property
    def last(self) -> Json:
        return self.events[-1].data

    def text(self) -> str:
        return "".join(e.data["text"] for e in self.events if e.name == "delta")


async def stream_run(client: httpx.AsyncClient, user: User, skill_id: str, body: Json | None = None) -> Stream:
    """POSTs the run with a real SSE client and reads every event up to the end of the stream."""
    async with asyncio.timeout(SAFETY):
        async with aconnect_sse(
            client, "POST", f"/api/skills/{skill_id}/run", json=body or {"input": {}}, headers=user.headers
        ) as source:
            out = Stream(source.response.status_code)
            if out.status != 200:
                await source.response.aread()
                return out
            async for sse in source.aiter_sse():
                out.events.append(Event(sse.event, sse.json()))
    return out


async def json_run(client: httpx.AsyncClient, user: User, skill_id: str, body: Json | None = None) -> httpx.Response:
    async with asyncio.timeout(SAFETY):
        return await client.post(
            f"/api/skills/{skill_id}/run", json=body or {"input": {}}, headers={**user.headers, **JSON_ACCEPT}
        )


def error_of(response: httpx.Response, status: int) -> str:
    return assert_error(response, status)


async def usage(client: httpx.AsyncClient, user: User) -> Json:
    response = await client.get("/api/usage", headers=user.headers)
    assert response.status_code == 200, response.text
    body: Json = response.json()
    return body


async def listed_runs(client: httpx.AsyncClient, user: User, skill_id: str) -> list[Json]:
    response = await client.get(f"/api/skills/{skill_id}/runs", headers=user.headers)
    assert response.status_code == 200, response.text
    runs: list[Json] = response.json()
    assert response.headers["x-total-count"] == str(len(runs))
    return runs


async def run_rows(engine: AsyncEngine, skill_id: str) -> list[Json]:
    async with engine.connect() as conn:
        result = await conn.execute(
            text("select * from skill_runs where skill_id = :id order by created_at"), {"id": skill_id}
        )
        return [dict(r) for r in result.mappings()]


async def run_row(engine: AsyncEngine, skill_id: str) -> Json:
    rows = await run_rows(engine, skill_id)
    assert len(rows) == 1, rows
    return rows[0]


async def usage_row(engine: AsyncEngine, company_id: str) -> tuple[int, int]:
    """(used, reserved) summed over the company's periods, straight from the table."""
    async with engine.connect() as conn:
        result = await conn.execute(
            text("select coalesce(sum(used), 0), coalesce(sum(reserved), 0) from token_usage where company_id = :c"),
            {"c": company_id},
        )
        used, reserved = result.one()
        return int(used), int(reserved)


def requests_for(fake: FakeOpenAI | FakeAnthropic, model: str) -> list[Json]:
    return [r for r in list(fake.requests) if r.get("model") == model]


def reservation(prompt: str, max_tokens: int) -> int:
    """What a run reserves: UTF-8 bytes of the prompt + 16 + max_tokens (API contract)."""
    return len(prompt.encode()) + 16 + max_tokens


@pytest.fixture
def fakes(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> dict[str, FakeOpenAI | FakeAnthropic]:
    return {"openai": fake_openai, "anthropic": fake_anthropic}


@dataclass
class Scripted:
    """A skill whose model is scripted on its provider's fake."""

    skill: Json
    fake: FakeOpenAI | FakeAnthropic
    model: str

    @property
    def id(self) -> str:
        return str(self.skill["id"])

    def requests(self) -> list[Json]:
        return requests_for(self.fake, self.model)


async def scripted_skill(
    client: httpx.AsyncClient,
    user: User,
    fakes: dict[str, FakeOpenAI | FakeAnthropic],
    provider: str | None,
    script: Script,
    **fields: Any,
) -> Scripted:
    """provider None: the skill names none and runs on the server's default (openai)."""
    fake, model = fakes[provider or "openai"], unique("model")
    fake.script(model, script)
    skill = await create_skill(client, user, provider=provider, model=model, **fields)
    return Scripted(skill, fake, model)


# --------------------------------------------------------------------------- apps with other settings


@pytest.fixture(scope="module")
async def variant_apps(ai_settings: Settings, engine: AsyncEngine) -> AsyncIterator[Callable[..., FastAPI]]:
    """Builds (once per set of overrides) an app like ai_app with some settings changed."""
    apps: dict[tuple[tuple[str, Any], ...], FastAPI] = {}

    def build(**update: Any) -> FastAPI:
        key = tuple(sorted(update.items()))
        if key not in apps:
            apps[key] = create_app(ai_settings.model_copy(update=update), engine=engine)
        return apps[key]

    yield build
    for app in apps.values():
        for provider in app.state.runtime.ai.providers.values():
            if hasattr(provider, "client"):
                await provider.client.close()


@pytest.fixture
async def variant_client(variant_apps: Callable[..., FastAPI]) -> AsyncIterator[Callable[..., httpx.AsyncClient]]:
    clients: list[httpx.AsyncClient] = []

    def make(**update: Any) -> httpx.AsyncClient:
        clients.append(
            httpx.AsyncClient(transport=httpx.ASGITransport(app=variant_apps(**update)), base_url="http://t")
        )
        return clients[-1]

    yield make
    for c in clients:
        await c.aclose()


# --------------------------------------------------------------------------- streaming runs that succeed


@pytest.mark.parametrize("provider", [None, "openai", "anthropic"], ids=["default-openai", "openai", "anthropic"])
async def test_streamed_run_reports_deltas_usage_and_records_the_run(
    provider: str | None, ai_client: httpx.AsyncClient, fakes: dict[str, Any], engine: AsyncEngine, acme: Company
) -> None:
    chunks = ["Hel", "lo ", "Ada", ", ", "welcome!"]
    script = Script(chunks=chunks, input_tokens=11, output_tokens=5)
    s = await scripted_skill(
        ai_client,
        acme.alice,
        fakes,
        provider,
        script,
        instructions=GREETING,
        input_schema=NAME_SCHEMA,
        temperature=0.3,
        max_tokens=77,
    )
    before = await usage(ai_client, acme.alice)
    assert before["reserved"] == 0

    out = await stream_run(ai_client, acme.alice, s.id, {"input": {"name": "Ada"}})

    assert out.status == 200
    assert out.names == ["run.started"] + ["delta"] * len(chunks) + ["run.completed"]
    run_id = out.events[0].data["run_id"]
    assert out.events[0].data == {"run_id": run_id, "skill_id": s.id, "version": 1, "model": s.model}
    assert [e.data for e in out.events[1:-1]] == [{"run_id": run_id, "text": c} for c in chunks]
    assert out.last == {
        "run_id": run_id,
        "output": "Hello Ada, welcome!",
        "usage": {"input_tokens": 11, "output_tokens": 5},
        "citations": [],
    }
    assert out.text() == out.last["output"]

    [sent] = s.requests()
    assert sent["messages"] == [{"role": "user", "content": "Greet Ada warmly"}]
    assert (sent["model"], sent["max_tokens"], sent["stream"]) == (s.model, 77, True)
    if provider == "anthropic":
        assert "temperature" not in sent  # the Anthropic SDK 2.x has no temperature parameter
    else:
        assert sent["temperature"] == pytest.approx(0.3)

    [listed] = await listed_runs(ai_client, acme.alice, s.id)
    assert listed["id"] == run_id
    expected = {
        "skill_id": s.id,
        "user_id": acme.alice.id,
        "version": 1,
        "status": "succeeded",
        "input": {"name": "Ada"},
        "output": "Hello Ada, welcome!",
        "provider": provider or "openai",
        "model": s.model,
        "input_tokens": 11,
        "output_tokens": 5,
        "error": None,
    }
    assert {k: listed[k] for k in expected} == expected
    assert dt.datetime.fromisoformat(listed["started_at"]) <= dt.datetime.fromisoformat(listed["finished_at"])

    row = await run_row(engine, s.id)
    assert {k: str(row[k]) if k.endswith("_id") else row[k] for k in expected} == expected
    assert str(row["id"]) == run_id and str(row["company_id"]) == acme.alice.company_id
    assert row["started_at"] <= row["finished_at"]
    assert row["reserved_tokens"] == reservation("Greet Ada warmly", 77)

    after = await usage(ai_client, acme.alice)
    assert after["reserved"] == 0
    assert after["used"] == before["used"] + 11 + 5
    assert await usage_row(engine, acme.alice.company_id) == (after["used"], 0)


async def test_default_model_is_used_when_the_skill_names_none(
    ai_client: httpx.AsyncClient, ai_settings: Settings, fake_openai: FakeOpenAI, engine: AsyncEngine, acme: Company
) -> None:
    skill = await create_skill(ai_client, acme.alice, instructions="Unique prompt {{ input.tag }}")
    tag = unique("tag")
    out = await stream_run(ai_client, acme.alice, skill["id"], {"input": {"tag": tag}})
    assert out.names[0] == "run.started" and out.names[-1] == "run.completed", out.events
    model = ai_settings.llm_model or ai_settings.openai_model
    assert out.events[0].data["model"] == model
    sent = [r for r in list(fake_openai.requests) if r["messages"][0]["content"] == f"Unique prompt {tag}"]
    assert [r["model"] for r in sent] == [model]
    row = await run_row(engine, skill["id"])
    assert (row["provider"], row["model"], row["status"]) == ("openai", model, "succeeded")


# --------------------------------------------------------------------------- Accept: application/json


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_json_answer_is_the_finished_run(
    provider: str, ai_client: httpx.AsyncClient, fakes: dict[str, Any], engine: AsyncEngine, acme: Company
) -> None:
    script = Script(chunks=["Hi ", "Bo"], input_tokens=4, output_tokens=2)
    s = await scripted_skill(ai_client, acme.alice, fakes, provider, script, instructions=GREETING)

    response = await json_run(ai_client, acme.alice, s.id, {"input": {"name": "Bo"}})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    run = response.json()
    expected = {"status": "succeeded", "output": "Hi Bo", "model": s.model, "provider": provider, "version": 1}
    assert {k: run[k] for k in expected} == expected
    assert (run["input_tokens"], run["output_tokens"], run["error"]) == (4, 2, None)
    assert len(s.requests()) == 1
    row = await run_row(engine, s.id)
    assert (str(row["id"]), row["status"], row["output"]) == (run["id"], "succeeded", "Hi Bo")
    assert (await usage(ai_client, acme.alice))["reserved"] == 0


async def test_echo_provider_without_keys(client: httpx.AsyncClient, engine: AsyncEngine, acme: Company) -> None:
    skill = await create_skill(client, acme.alice, instructions="Please say hello to {{ input.name }} from the echo")
    prompt = "Please say hello to Cy from the echo"

    response = await json_run(client, acme.alice, skill["id"], {"input": {"name": "Cy"}})
    assert response.status_code == 200, response.text
    run = response.json()
    words = len(prompt.split())
    assert (run["status"], run["model"], run["provider"], run["output"]) == ("succeeded", "echo", "echo", prompt)
    assert (run["input_tokens"], run["output_tokens"]) == (words, words)

    streamed = await stream_run(client, acme.alice, skill["id"], {"input": {"name": "Cy"}})
    assert streamed.names[0] == "run.started" and streamed.events[0].data["model"] == "echo"
    assert streamed.names[-1] == "run.completed" and set(streamed.names[1:-1]) == {"delta"}
    assert streamed.text() == streamed.last["output"] == prompt
    assert [r["status"] for r in await run_rows(engine, skill["id"])] == ["succeeded", "succeeded"]
    spent = await usage(client, acme.alice)
    assert (spent["used"], spent["reserved"]) == (4 * words, 0)  # two runs, each input + output


# --------------------------------------------------------------------------- provider failures


@dataclass(frozen=True)
class Failure:
    id: str
    script: Script
    expect: tuple[str, ...]  # fragments of the run's error; unless `internal`, it also names the provider
    streamed: tuple[str, ...] | None = ()  # the deltas sent before the failure (None: some, how many varies)
    settings: tuple[tuple[str, Any], ...] = ()  # app settings to override; "{p}" stands for the provider
    internal: bool = False  # our own limit, not the provider's failure


FAILURES = [
    Failure("http-400", Script(status=400, error_message="prompt is too odd"), ("HTTP 400", "prompt is too odd")),
    Failure("http-401", Script(), ("HTTP 401", "invalid api key"), settings=(("{p}_api_key", "wrong-key"),)),
    Failure("http-429", Script(status=429, error_message="slow down"), ("HTTP 429", "slow down")),
    Failure("http-500", Script(status=500, error_message="it broke"), ("HTTP 500", "it broke")),
    Failure("timeout", Script(hang=True), ("did not answer in time",), settings=(("llm_timeout", SHORT_TIMEOUT),)),
    Failure("malformed", Script(chunks=["a ", "b ", "c"], malformed=True), ("could not be read",), ("a ",)),
    Failure("dropped", Script(chunks=["a ", "b ", "c ", "d"], drop_after=2), ("connection",), ("a ", "b ")),
    Failure("stream-error", Script(chunks=["a ", "b"], stream_error="overloaded now"), ("overloaded now",), ("a ",)),
    Failure(
        "run-timeout",
        Script(chunks=["x "] * 30, delay=0.1),
        ("longer than 0.5 s",),
        None,
        settings=(("run_timeout", 0.5),),
        internal=True,
    ),
]


@pytest.mark.slow  # 72 cases: every failure × provider × transport
@pytest.mark.parametrize("accept", ["sse", "json"])
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("failure", FAILURES, ids=[f.id for f in FAILURES])
async def test_provider_failure_ends_the_run_failed(
    failure: Failure,
    provider: str,
    accept: str,
    ai_client: httpx.AsyncClient,
    variant_client: Callable[..., httpx.AsyncClient],
    fakes: dict[str, Any],
    engine: AsyncEngine,
    acme: Company,
) -> None:
    """Each failure ends the stream with run.failed (or, as JSON, 200 with status failed): never a hang."""
    overrides = {k.replace("{p}", provider): v for k, v in failure.settings}
    http = variant_client(**overrides) if overrides else ai_client
    s = await scripted_skill(http, acme.alice, fakes, provider, failure.script, instructions=GREETING)
    before = await usage(http, acme.alice)
    body = {"input": {"name": "Eve"}}

    if accept == "sse":
        out = await stream_run(http, acme.alice, s.id, body)
        assert out.status == 200
        assert out.names[0] == "run.started" and out.names[-1] == "run.failed", out.names
        assert set(out.names[1:-1]) <= {"delta"}
        if failure.streamed is not None:
            assert [e.data["text"] for e in out.events[1:-1]] == list(failure.streamed)
        error = out.last["error"]
        assert out.last == {"run_id": out.events[0].data["run_id"], "error": error}
    else:
        response = await json_run(http, acme.alice, s.id, body)
        assert response.status_code == 200, response.text  # the run happened; it failed
        run = response.json()
        assert (run["status"], run["model"]) == ("failed", s.model)
        error = run["error"]

    assert isinstance(error, str)
    for fragment in failure.expect:
        assert fragment in error, error
    assert failure.internal or provider in error, error
    assert len(s.requests()) == 1  # no retries (llm_max_retries=0)

    row = await run_row(engine, s.id)
    assert (row["status"], row["error"]) == ("failed", error)
    if failure.streamed is not None:
        assert row["output"] == "".join(failure.streamed)
    assert row["finished_at"] is not None and row["input_tokens"] is not None and row["output_tokens"] is not None
    after = await usage(http, acme.alice)
    assert after["reserved"] == before["reserved"] == 0
    assert after["used"] == before["used"] + row["input_tokens"] + row["output_tokens"]


# --------------------------------------------------------------------------- version pinning


async def test_a_run_can_pin_an_older_version(
    ai_client: httpx.AsyncClient, fakes: dict[str, Any], engine: AsyncEngine, acme: Company
) -> None:
    v1 = {"instructions": "Version one for {{ input.name }}", "max_tokens": 50}
    s = await scripted_skill(ai_client, acme.alice, fakes, "openai", Script(), **v1)
    v2 = {"instructions": "Version two for {{ input.name }}", "max_tokens": 60}
    patched = await ai_client.patch(f"/api/skills/{s.id}", json=v2, headers=acme.alice.headers)
    assert patched.status_code == 200 and patched.json()["version"] == 2, patched.text

    old = await stream_run(ai_client, acme.alice, s.id, {"input": {"name": "Flo"}, "version": 1})
    assert old.events[0].data["version"] == 1 and old.names[-1] == "run.completed", old.events
    assert old.last["output"] == "Version one for Flo"
    current = await json_run(ai_client, acme.alice, s.id, {"input": {"name": "Flo"}})
    assert (current.json()["version"], current.json()["output"]) == (2, "Version two for Flo")

    sent = [(r["messages"][0]["content"], r["max_tokens"]) for r in s.requests()]
    assert sent == [("Version one for Flo", 50), ("Version two for Flo", 60)]
    assert [r["version"] for r in await run_rows(engine, s.id)] == [1, 2]
    assert sorted(r["version"] for r in await listed_runs(ai_client, acme.alice, s.id)) == [1, 2]


@pytest.mark.parametrize(
    ("version", "fragment"),
    [(3, "Unknown version 3"), (99, "Unknown version 99"), (0, "version"), (-1, "version"), ("x", "version")],
)
async def test_bad_version_is_400_without_a_run(
    version: Any, fragment: str, ai_client: httpx.AsyncClient, fakes: dict[str, Any], engine: AsyncEngine, acme: Company
) -> None:
    s = await scripted_skill(ai_client, acme.alice, fakes, "openai", Script(), instructions=GREETING)
    await ai_client.patch(f"/api/skills/{s.id}", json={"max_tokens": 10}, headers=acme.alice.headers)

    response = await json_run(ai_client, acme.alice, s.id, {"input": {"name": "G"}, "version": version})

    assert fragment in error_of(response, 400)
    assert await run_rows(engine, s.id) == [] and s.requests() == []
    assert (await usage(ai_client, acme.alice))["reserved"] == 0


# --------------------------------------------------------------------------- input validation


@pytest.mark.parametrize("accept", ["sse", "json"])
@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"input": {"name": 5}}, "input.name"),
        ({"input": {"name": ""}}, "input.name"),
        ({"input": {}}, "'name' is a required property"),
        ({}, "'name' is a required property"),
        ({"input": {"name": "H", "count": "many"}}, "input.count"),
        ({"input": [1, 2]}, "input"),
        ({"input": "Hal"}, "input"),
        ({"input": None}, "input"),
        ({"input": {"name": "H"}, "surprise": 1}, "surprise"),
        (None, "body"),
        ([], ""),
        ("not json", ""),
    ],
    ids=[
        "wrong-type",
        "too-short",
        "missing-field",
        "no-input",
        "other-field",
        "input-array",
        "input-string",
        "input-null",
        "unknown-key",
        "no-body",
        "body-array",
        "body-not-json",
    ],
)
async def test_bad_input_is_400_without_a_run_or_model_call(
    body: Any,
    fragment: str,
    accept: str,
    ai_client: httpx.AsyncClient,
    fakes: dict[str, Any],
    engine: AsyncEngine,
    acme: Company,
) -> None:
    s = await scripted_skill(
        ai_client, acme.alice, fakes, "openai", Script(), instructions=GREETING, input_schema=NAME_SCHEMA
    )
    headers = {**acme.alice.headers, **(JSON_ACCEPT if accept == "json" else {"Accept": "text/event-stream"})}
    content = None if body is None else body.encode() if isinstance(body, str) else json.dumps(body).encode()
    if content is not None:
        headers["Content-Type"] = "application/json"

    response = await ai_client.post(f"/api/skills/{s.id}/run", content=content, headers=headers)

    assert fragment in error_of(response, 400)
    assert await run_rows(engine, s.id) == [] and s.requests() == []
    assert await usage_row(engine, acme.alice.company_id) == (0, 0)


async def test_template_error_at_run_time_is_400(
    ai_client: httpx.AsyncClient, fakes: dict[str, Any], engine: AsyncEngine, acme: Company
) -> None:
    """Without an input_schema nothing promises `input.name`; the strict template then refuses."""
    s = await scripted_skill(ai_client, acme.alice, fakes, "openai", Script(), instructions=GREETING)
    response = await json_run(ai_client, acme.alice, s.id, {"input": {"other": 1}})
    assert "name" in error_of(response, 400)
    assert await run_rows(engine, s.id) == [] and s.requests() == []


# --------------------------------------------------------------------------- visibility and permissions


async def test_runs_are_visible_to_the_runner_and_admins_only(
    ai_client: httpx.AsyncClient, fakes: dict[str, Any], acme: Company
) -> None:
    s = await scripted_skill(ai_client, acme.alice, fakes, "openai", Script(), visibility="company")
    alices = await json_run(ai_client, acme.alice, s.id, {"input": {"name": "A"}})
    assert alices.status_code == 200 and alices.json()["status"] == "succeeded", alices.text
    assert await listed_runs(ai_client, acme.bob, s.id) == []  # bob sees the skill, not alice's run
    bobs = await json_run(ai_client, acme.bob, s.id, {"input": {"name": "B"}})  # a colleague may run it
    assert bobs.status_code == 200, bobs.text
    assert bobs.json()["status"] == "succeeded" and bobs.json()["user_id"] == acme.bob.id

    assert [r["id"] for r in await listed_runs(ai_client, acme.alice, s.id)] == [alices.json()["id"]]
    assert [r["id"] for r in await listed_runs(ai_client, acme.bob, s.id)] == [bobs.json()["id"]]
    admin_sees = {r["id"] for r in await listed_runs(ai_client, acme.admin, s.id)}
    assert admin_sees == {alices.json()["id"], bobs.json()["id"]}

    patched = await ai_client.patch(f"/api/skills/{s.id}", json={"name": "mine now"}, headers=acme.bob.headers)
    assert error_of(patched, 403)


async def test_other_company_and_private_skills_are_404(
    ai_client: httpx.AsyncClient, fakes: dict[str, Any], engine: AsyncEngine, acme: Company, globex: Company
) -> None:
    shared = await scripted_skill(ai_client, acme.alice, fakes, "openai", Script(), visibility="company")
    private = await scripted_skill(ai_client, acme.alice, fakes, "openai", Script())
    for user, s in [(globex.alice, shared), (globex.admin, shared), (acme.bob, private), (acme.admin, private)]:
        assert error_of(await json_run(ai_client, user, s.id, {"input": {"name": "x"}}), 404) == "Skill not found"
        assert (await stream_run(ai_client, user, s.id, {"input": {"name": "x"}})).status == 404
        runs = await ai_client.get(f"/api/skills/{s.id}/runs", headers=user.headers)
        assert error_of(runs, 404)
    assert await run_rows(engine, shared.id) == [] and await run_rows(engine, private.id) == []
    assert shared.requests() == [] and private.requests() == []


async def test_run_needs_a_token_and_a_known_skill(
    ai_client: httpx.AsyncClient, fakes: dict[str, Any], engine: AsyncEngine, acme: Company
) -> None:
    s = await scripted_skill(ai_client, acme.alice, fakes, "openai", Script())
    for headers in [{}, {"Authorization": "Bearer not-a-jwt"}]:
        response = await ai_client.post(f"/api/skills/{s.id}/run", json={"input": {"name": "x"}}, headers=headers)
        assert error_of(response, 401)
    unknown = "00000000-0000-4000-8000-000000000000"
    assert error_of(await json_run(ai_client, acme.alice, unknown, {"input": {}}), 404)
    assert error_of(await json_run(ai_client, acme.alice, "not-a-uuid", {"input": {}}), 400)
    assert await run_rows(engine, s.id) == [] and s.requests() == []


# --------------------------------------------------------------------------- clients that go away


@pytest.fixture(scope="module")
def server(ai_settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    # Like ai_app, but the app builds its own engine inside the server thread's event loop.
    with ThreadedServer(create_app(ai_settings, database_url=database_url)) as running:
        yield running


SLOW = Script(chunks=[f"w{i} " for i in range(20)], delay=0.2, input_tokens=9, output_tokens=20)


async def cancelled_row(engine: AsyncEngine, skill_id: str) -> Json:
    async def closed() -> Json | None:
        rows = await run_rows(engine, skill_id)
        return rows[0] if rows and rows[0]["status"] != "running" else None

    row: Json = await eventually(closed, "the run being closed")
    return row


async def assert_cancelled(engine: AsyncEngine, s: Scripted, company_id: str) -> Json:
    row = await cancelled_row(engine, s.id)
    assert row["status"] == "cancelled", row
    assert row["finished_at"] is not None
    assert row["input_tokens"] is not None and row["output_tokens"] is not None
    assert row["input_tokens"] > 0  # the model read the prompt: charged with an estimate
    used, reserved = await usage_row(engine, company_id)
    assert reserved == 0
    assert used == row["input_tokens"] + row["output_tokens"]
    await eventually(lambda: s.fake.disconnects(s.model) == 1, "the fake seeing the disconnect")
    assert s.fake.completed(s.model) == 0
    return row


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_disconnect_mid_stream_cancels_the_model_call(
    provider: str, server: ThreadedServer, fakes: dict[str, Any], engine: AsyncEngine, acme: Company
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=SAFETY) as http:
        s = await scripted_skill(http, acme.alice, fakes, provider, SLOW, instructions=GREETING)
        seen: list[str] = []
        async with asyncio.timeout(SAFETY):
            async with aconnect_sse(
                http, "POST", f"/api/skills/{s.id}/run", json={"input": {"name": "Ida"}}, headers=acme.alice.headers
            ) as source:
                async with aclosing(source.aiter_sse()) as events:
                    async for sse in events:
                        seen.append(sse.event)
                        if sse.event == "delta":
                            break
        assert seen == ["run.started", "delta"]

    row = await assert_cancelled(engine, s, acme.alice.company_id)
    assert row["output"].startswith("w0 ") and len(row["output"].split()) < 20


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_disconnect_while_waiting_for_json_cancels_the_run(
    provider: str, server: ThreadedServer, fakes: dict[str, Any], engine: AsyncEngine, acme: Company
) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=SAFETY) as http:
        s = await scripted_skill(http, acme.alice, fakes, provider, SLOW, instructions=GREETING)
        post = asyncio.create_task(json_run(http, acme.alice, s.id, {"input": {"name": "Jo"}}))
        await eventually(s.requests, "the model call")
        post.cancel()
        with pytest.raises(asyncio.CancelledError):
            await post

    await assert_cancelled(engine, s, acme.alice.company_id)
