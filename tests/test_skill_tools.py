"""Skill tools end to end: the fake OpenAI and Anthropic servers scripted to call tools in their real
streaming formats, built-in tools run against the fake OAuth provider's GitHub and Slack dialects with the
caller's own connection, generic HTTP tools against a local fake, and every call recorded on the run.

Each test makes its own company: tools are switched per company, connections are per user.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx_sse import aconnect_sse
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from fluxopus.app import create_app
from fluxopus.config import OAuthProviderSettings, Settings
from tests.utils.builders import Company, User, gql, make_company, unique
from tests.utils.fake_llm import FakeAnthropic, FakeOpenAI, Script
from tests.utils.fake_oauth import FakeOAuth
from tests.utils.http import assert_error, eventually
from tests.utils.server import ThreadedServer

Json = dict[str, Any]
PROVIDERS = ["openai", "anthropic"]
SAFETY = 20
KEY = base64.b64encode(secrets.token_bytes(32)).decode()
MAX_STEPS = 2
GITHUB_TOOLS = [{"name": "github.list_issues"}, {"name": "github.create_issue"}]


# --------------------------------------------------------------------------- the world


async def _weather(request: Request) -> Response:
    body = await request.json()
    return JSONResponse({"city": body.get("city"), "temperature": 21})


async def _bounce(request: Request) -> Response:
    return RedirectResponse("http://169.254.169.254/latest/meta-data/", status_code=307)


@pytest.fixture(scope="module")
def tool_server() -> Iterator[ThreadedServer]:
    app = Starlette(routes=[Route("/weather", _weather, methods=["POST"]), Route("/bounce", _bounce, methods=["POST"])])
    with ThreadedServer(app) as running:
        yield running


def _authority(server: ThreadedServer) -> tuple[str, int]:
    host, _, port = server.url.removeprefix("http://").partition(":")
    return host, int(port)


@pytest.fixture(scope="module")
def tool_settings(ai_settings: Settings, fake_oauth: FakeOAuth, tool_server: ThreadedServer) -> Settings:
    # GitHub apps may opt in to expiring, refreshable tokens: so this one does, for the refresh test.
    github = fake_oauth.client(dialect="github", expires_in=3600, issue_refresh=True)
    slack = fake_oauth.client(dialect="slack")
    notion = fake_oauth.client(dialect="notion")
    host, port = _authority(tool_server)
    providers = {
        "github": OAuthProviderSettings(
            client_id=github.client_id,
            client_secret=SecretStr(github.client_secret),
            api_url=fake_oauth.url,
            **fake_oauth.endpoints("github"),
        ),
        "slack": OAuthProviderSettings(
            client_id=slack.client_id,
            client_secret=SecretStr(slack.client_secret),
            api_url=f"{fake_oauth.url}/api",
            **fake_oauth.endpoints("slack"),
        ),
        "notion": OAuthProviderSettings(
            client_id=notion.client_id,
            client_secret=SecretStr(notion.client_secret),
            api_url=f"{fake_oauth.url}/v1",
            **fake_oauth.endpoints("notion"),
        ),
    }
    return ai_settings.model_copy(
        update={
            "public_url": "http://test",
            "app_url": "https://app.example.com",
            "encryption_key": SecretStr(KEY),
            "oauth": providers,
            "oauth_timeout": 5.0,
            # The loopback fake is listed as its address; `localhost` is listed by name, which resolves to a
            # loopback address and so stays out of reach.
            "tool_hosts": [f"{host}:{port}", f"localhost:{port}"],
            "tool_max_steps": MAX_STEPS,
            "tool_timeout": 5.0,
        }
    )


@pytest.fixture(scope="module")
def tools_app(tool_settings: Settings, engine: AsyncEngine) -> FastAPI:
    return create_app(tool_settings, engine=engine)


@pytest.fixture
async def client(tools_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=tools_app), base_url="http://test") as c:
        yield c


@pytest.fixture
async def company(database_url: str) -> Company:
    return await make_company(database_url)


@pytest.fixture
def fakes(fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> dict[str, FakeOpenAI | FakeAnthropic]:
    return {"openai": fake_openai, "anthropic": fake_anthropic}


async def connect(client: httpx.AsyncClient, user: User, provider: str) -> None:
    """The user connects `provider` as a browser does: authorize, consent at the fake, back to the callback."""
    response = await client.get(
        f"/api/connections/authorize/{provider}", headers=user.headers | {"Accept": "application/json"}
    )
    assert response.status_code == 200, response.text
    async with httpx.AsyncClient() as browser:
        consent = await browser.get(response.json()["url"])
    assert consent.status_code == 302, consent.text
    back = await client.get(consent.headers["location"])
    assert back.status_code == 302 and "status=connected" in back.headers["location"], back.headers


def issued_tokens(fake_oauth: FakeOAuth) -> list[str]:
    return [t for c in fake_oauth.client_by_id.values() for t in c.issued]


async def make_skill(client: httpx.AsyncClient, user: User, provider: str, tools: list[Json], **fields: Any) -> Json:
    body = {
        "name": unique("skill"),
        "instructions": "Triage {{ input.repo }}",
        "provider": provider,
        "model": unique("model"),
        "tools": tools,
        **fields,
    }
    response = await client.post("/api/skills", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


class Stream:
    def __init__(self) -> None:
        self.events: list[tuple[str, Json]] = []
        self.raw: list[str] = []

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list[Json]:
        return [data for n, data in self.events if n == name]


async def run(client: httpx.AsyncClient, user: User, skill: Json, input: Json | None = None) -> Stream:
    out = Stream()
    async with asyncio.timeout(SAFETY):
        async with aconnect_sse(
            client,
            "POST",
            f"/api/skills/{skill['id']}/run",
            json={"input": input or {"repo": "r"}},
            headers=user.headers,
        ) as source:
            assert source.response.status_code == 200
            async for sse in source.aiter_sse():
                out.events.append((sse.event, sse.json()))
                out.raw.append(sse.data)
    return out


async def run_row(engine: AsyncEngine, skill: Json) -> Json:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(text("select * from skill_runs where skill_id = :id"), {"id": skill["id"]})
        ).mappings()
        found = [dict(r) for r in rows]
    assert len(found) == 1, found
    return found[0]


def requests_of(fake: FakeOpenAI | FakeAnthropic, skill: Json) -> list[Json]:
    return [r for r in list(fake.requests) if r.get("model") == skill["model"]]


def tool_results_sent(provider: str, request: Json) -> list[str]:
    """The tool results a request fed back to the model, in its provider's format."""
    if provider == "openai":
        return [m["content"] for m in request["messages"] if m["role"] == "tool"]
    return [
        part["content"]
        for m in request["messages"]
        if m["role"] == "user" and isinstance(m["content"], list)
        for part in m["content"]
        if part.get("type") == "tool_result"
    ]


# --------------------------------------------------------------------------- the loop


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_a_full_loop_with_two_tool_calls_acts_as_the_caller_and_never_shows_the_token(
    provider: str,
    client: httpx.AsyncClient,
    fakes: dict[str, Any],
    fake_oauth: FakeOAuth,
    engine: AsyncEngine,
    company: Company,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    user = company.alice
    await connect(client, user, "github")
    repo = unique("repo")
    fake_oauth.issues[("acme", repo)] = [
        {"number": 1, "title": "Login is slow", "state": "open", "html_url": "u1", "user": {"login": "x"}}
    ]
    skill = await make_skill(client, user, provider, GITHUB_TOOLS)
    fake = fakes[provider]
    fake.script_turns(
        skill["model"],
        [
            Script(
                chunks=["Looking. "], tool_calls=[("github_list_issues", json.dumps({"owner": "acme", "repo": repo}))]
            ),
            Script(
                chunks=[],
                tool_calls=[("github_create_issue", json.dumps({"owner": "acme", "repo": repo, "title": "Fix login"}))],
            ),
            Script(chunks=["Opened ", "#2."], input_tokens=50, output_tokens=4),
        ],
    )
    calls_before = len(fake_oauth.api_calls)

    out = await run(client, user, skill, {"repo": repo})

    assert out.names == [
        "run.started",
        "delta",
        "tool.call",
        "tool.result",
        "tool.call",
        "tool.result",
        "delta",
        "delta",
        "run.completed",
    ], out.names
    first, second = out.of("tool.call")
    assert (first["tool"], first["arguments"]) == ("github.list_issues", {"owner": "acme", "repo": repo})
    assert second["tool"] == "github.create_issue"
    results = out.of("tool.result")
    assert [r["status"] for r in results] == ["succeeded", "succeeded"]
    assert [r["call_id"] for r in results] == [first["call_id"], second["call_id"]]
    assert "Login is slow" in results[0]["result"] and '"number":2' in results[1]["result"]
    assert out.of("run.completed")[0]["output"] == "Looking. Opened #2."

    # The provider acted: the issue exists, created with the caller's own token.
    assert [i["title"] for i in fake_oauth.issues[("acme", repo)]] == ["Login is slow", "Fix login"]
    api_calls = fake_oauth.api_calls[calls_before:]
    assert [c.method for c in api_calls] == ["GET", "POST"]
    tokens = issued_tokens(fake_oauth)
    used_token = api_calls[0].headers["authorization"].removeprefix("Bearer ")
    assert used_token in tokens

    # The model was offered the tools, and fed back each result after its call.
    sent = requests_of(fake, skill)
    assert len(sent) == 3
    names = {t["function"]["name"] if provider == "openai" else t["name"] for t in sent[0]["tools"]}
    assert names == {"github_list_issues", "github_create_issue"}
    assert "Login is slow" in tool_results_sent(provider, sent[1])[0]
    assert len(tool_results_sent(provider, sent[2])) == 2

    # Recorded on the run: name, arguments, status, duration; charged for every round.
    row = await run_row(engine, skill)
    assert row["status"] == "succeeded"
    assert [(c["tool"], c["status"]) for c in row["tool_calls"]] == [
        ("github.list_issues", "succeeded"),
        ("github.create_issue", "succeeded"),
    ]
    assert all(isinstance(c["duration_ms"], int) and c["error"] is None for c in row["tool_calls"])
    assert row["tool_calls"][1]["arguments"] == {"owner": "acme", "repo": repo, "title": "Fix login"}
    assert row["input_tokens"] > 50 and row["output_tokens"] >= 4
    listed = await client.get(f"/api/skills/{skill['id']}/runs", headers=user.headers)
    assert listed.json()[0]["tool_calls"] == json.loads(json.dumps(row["tool_calls"]))

    # No access token reached the model, the events, the run or the logs.
    seen = {
        "model": json.dumps(sent),
        "events": "\n".join(out.raw),
        "run": json.dumps(row, default=str),
        "logs": caplog.text,
    }
    for token in tokens:
        for where, content in seen.items():
            assert token not in content, f"an access token reached {where}"
    assert len(caplog.text) > 0  # the scan read something


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_arguments_against_the_schema_are_refused_and_the_model_reads_why(
    provider: str,
    client: httpx.AsyncClient,
    fakes: dict[str, Any],
    fake_oauth: FakeOAuth,
    engine: AsyncEngine,
    company: Company,
) -> None:
    await connect(client, company.alice, "github")
    skill = await make_skill(client, company.alice, provider, GITHUB_TOOLS)
    fake = fakes[provider]
    bad = json.dumps({"owner": "acme", "repo": "../../admin"})  # no title, and a repo that is not a path segment
    fake.script_turns(
        skill["model"],
        [Script(chunks=[], tool_calls=[("github_create_issue", bad)]), Script(chunks=["Sorry."])],
    )
    calls_before = len(fake_oauth.api_calls)

    out = await run(client, company.alice, skill)

    assert out.names[-1] == "run.completed"
    (result,) = out.of("tool.result")
    assert result["status"] == "refused" and result["result"].startswith("Error: Invalid arguments")
    assert len(fake_oauth.api_calls) == calls_before  # nothing was called
    second = requests_of(fake, skill)[1]
    assert tool_results_sent(provider, second) == [result["result"]]
    row = await run_row(engine, skill)
    assert [(c["status"], c["tool"]) for c in row["tool_calls"]] == [("refused", "github.create_issue")]


async def test_a_missing_or_revoked_connection_is_a_result_the_model_reads(
    client: httpx.AsyncClient, fakes: dict[str, Any], fake_oauth: FakeOAuth, engine: AsyncEngine, company: Company
) -> None:
    user = company.bob
    tools = [{"name": "slack.post_message"}]
    call = ("slack_post_message", json.dumps({"channel": "#general", "text": "hi"}))

    async def attempt() -> Json:
        skill = await make_skill(client, user, "openai", tools)
        fakes["openai"].script_turns(skill["model"], [Script(chunks=[], tool_calls=[call]), Script(chunks=["ok"])])
        out = await run(client, user, skill)
        assert out.names[-1] == "run.completed", out.events
        (result,) = out.of("tool.result")
        row = await run_row(engine, skill)
        assert row["tool_calls"][0]["status"] == result["status"] == "failed"
        return result

    missing = await attempt()
    assert "You have not connected Slack" in missing["result"]

    await connect(client, user, "slack")
    posted = len(fake_oauth.slack_messages)
    async with engine.begin() as conn:
        await conn.execute(
            text("update connections set status = 'revoked', error = 'gone' where user_id = :u and provider = 'slack'"),
            {"u": user.id},
        )
    revoked = await attempt()
    assert "revoked" in revoked["result"]
    assert len(fake_oauth.slack_messages) == posted

    # Revoked at the provider only (the app uninstalled): the provider's own refusal, in Slack's words.
    async with engine.begin() as conn:
        await conn.execute(
            text("update connections set status = 'connected', error = null where user_id = :u and provider = 'slack'"),
            {"u": user.id},
        )
    for registered in fake_oauth.client_by_id.values():
        if registered.dialect == "slack":
            fake_oauth.uninstall(registered)
    refused = await attempt()
    assert "invalid_auth" in refused["result"]


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_the_step_limit_ends_the_loop_with_a_last_round_without_tools(
    provider: str, client: httpx.AsyncClient, fakes: dict[str, Any], engine: AsyncEngine, company: Company
) -> None:
    await connect(client, company.alice, "github")
    skill = await make_skill(client, company.alice, provider, GITHUB_TOOLS)
    fake = fakes[provider]
    # A model that would call tools for ever: the real APIs honour tool_choice none, and so does the fake.
    again = Script(chunks=["more "], tool_calls=[("github_list_issues", '{"owner":"acme","repo":"loop"}')])
    fake.script_turns(skill["model"], [again])

    out = await run(client, company.alice, skill)

    assert out.names[-1] == "run.completed", out.events
    assert len(out.of("tool.call")) == MAX_STEPS
    sent = requests_of(fake, skill)
    assert len(sent) == MAX_STEPS + 1
    none = "none" if provider == "openai" else {"type": "none"}
    assert [r.get("tool_choice") for r in sent] == [None] * MAX_STEPS + [none]
    row = await run_row(engine, skill)
    assert len(row["tool_calls"]) == MAX_STEPS


async def test_two_calls_in_one_round_post_to_slack_and_search_notion(
    client: httpx.AsyncClient, fakes: dict[str, Any], fake_oauth: FakeOAuth, engine: AsyncEngine, company: Company
) -> None:
    user = company.alice
    await connect(client, user, "slack")
    await connect(client, user, "notion")
    skill = await make_skill(client, user, "anthropic", [{"name": "slack.post_message"}, {"name": "notion.search"}])
    text = unique("standup")
    fakes["anthropic"].script_turns(
        skill["model"],
        [
            Script(
                chunks=["Both at once. "],
                tool_calls=[
                    ("notion_search", json.dumps({"query": "roadmap"})),
                    ("slack_post_message", json.dumps({"channel": "#team", "text": text})),
                ],
            ),
            Script(chunks=["Posted."]),
        ],
    )
    out = await run(client, user, skill)
    assert out.names == ["run.started", "delta", "tool.call", "tool.result", "tool.call", "tool.result", "delta",
                         "run.completed"]  # fmt: skip
    search, post = out.of("tool.result")
    assert search["status"] == post["status"] == "succeeded"
    assert json.loads(search["result"])[0]["title"] == "Notes on roadmap"
    assert json.loads(post["result"])["channel"] == "#team"
    assert [m["text"] for m in fake_oauth.slack_messages if m["text"] == text] == [text]
    second = requests_of(fakes["anthropic"], skill)[1]
    assert len(tool_results_sent("anthropic", second)) == 2  # both results in the one user message
    row = await run_row(engine, skill)
    assert [c["tool"] for c in row["tool_calls"]] == ["notion.search", "slack.post_message"]


async def test_an_expired_token_is_refreshed_before_the_call(
    client: httpx.AsyncClient, fakes: dict[str, Any], fake_oauth: FakeOAuth, engine: AsyncEngine, company: Company
) -> None:
    user = company.bob
    await connect(client, user, "github")
    github = next(c for c in fake_oauth.client_by_id.values() if c.dialect == "github" and c.issue_refresh)
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "update connections set expires_at = now() - interval '1 minute'"
                " where user_id = :u and provider = 'github'"
            ),
            {"u": user.id},
        )
    refreshes = github.refreshes
    skill = await make_skill(client, user, "openai", GITHUB_TOOLS)
    fakes["openai"].script_turns(
        skill["model"],
        [Script(chunks=[], tool_calls=[("github_list_issues", '{"owner":"acme","repo":"fresh"}')]), Script()],
    )
    out = await run(client, user, skill)
    assert out.of("tool.result")[0]["status"] == "succeeded", out.events
    assert github.refreshes == refreshes + 1
    (api_call,) = [c for c in fake_oauth.api_calls if c.path.endswith("/fresh/issues")]
    assert api_call.headers["authorization"] == f"Bearer {github.issued[-2]}"  # the refreshed access token
    async with engine.connect() as conn:
        expires = (
            await conn.execute(
                text("select expires_at > now() from connections where user_id = :u and provider = 'github'"),
                {"u": user.id},
            )
        ).scalar()
    assert expires is True  # the refresh was committed, though the run's own transaction had ended


# --------------------------------------------------------------------------- safety


async def test_admins_turn_tools_off_for_their_company(
    client: httpx.AsyncClient, fakes: dict[str, Any], engine: AsyncEngine, company: Company
) -> None:
    assert_error(
        await client.put("/api/tools/settings", json={"enabled": False}, headers=company.alice.headers),
        403,
        contains="admin",
    )
    response = await client.put("/api/tools/settings", json={"enabled": False}, headers=company.admin.headers)
    assert response.status_code == 200, response.text
    assert response.json()["enabled"] is False and "github.list_issues" in response.json()["built_in"]
    seen = await gql(client, company.bob, "{ toolSettings { enabled builtIn } }")
    assert seen["data"]["toolSettings"]["enabled"] is False

    skill = await make_skill(client, company.alice, "openai", GITHUB_TOOLS)
    fakes["openai"].script_turns(
        skill["model"], [Script(chunks=["no tools"], tool_calls=[("github_list_issues", "{}")])]
    )
    out = await run(client, company.alice, skill)
    assert out.names == ["run.started", "delta", "run.completed"]
    (sent,) = requests_of(fakes["openai"], skill)
    assert "tools" not in sent

    changed = await gql(client, company.admin, "mutation { updateToolSettings(enabled: true) { enabled } }")
    assert changed["data"]["updateToolSettings"]["enabled"] is True
    again = await run(client, company.alice, skill)
    assert "tool.call" in again.names


async def test_http_tools_reach_only_allowed_public_hosts(
    client: httpx.AsyncClient,
    fakes: dict[str, Any],
    engine: AsyncEngine,
    company: Company,
    tool_server: ThreadedServer,
) -> None:
    host, port = _authority(tool_server)
    params = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}

    def tool(name: str, url: str) -> Json:
        return {"name": name, "description": f"{name} tool", "parameters": params, "url": url}

    # Saved only with a host on the list, a valid schema, a known built-in.
    for bad, says in [
        ([tool("weather", "https://example.org/weather")], "allow-list"),
        (
            [tool("weather", f"http://{host}:{port}/weather") | {"parameters": {"type": "object", "required": 3}}],
            "JSON",
        ),
        ([{"name": "github.delete_repo"}], "unknown built-in"),
    ]:
        response = await client.post(
            "/api/skills", json={"name": "x", "instructions": "x", "tools": bad}, headers=company.alice.headers
        )
        assert_error(response, 400, contains=says)

    skill = await make_skill(
        client,
        company.alice,
        "openai",
        [
            tool("weather", f"http://{host}:{port}/weather"),
            tool("bounce", f"http://{host}:{port}/bounce"),
            tool("local", f"http://localhost:{port}/weather"),
        ],
    )
    city = json.dumps({"city": "Oslo"})
    fakes["openai"].script_turns(
        skill["model"],
        [
            Script(chunks=[], tool_calls=[("weather", city), ("bounce", city), ("local", city)]),
            Script(chunks=["done"]),
        ],
    )
    out = await run(client, company.alice, skill)
    assert out.names[-1] == "run.completed", out.events
    weather, bounce, local = out.of("tool.result")
    assert weather["status"] == "succeeded" and json.loads(weather["result"]) == {"city": "Oslo", "temperature": 21}
    assert bounce["status"] == "refused" and "169.254.169.254" in bounce["result"] and "allow-list" in bounce["result"]
    assert local["status"] == "refused" and "private or local address" in local["result"]
    row = await run_row(engine, skill)
    assert [c["status"] for c in row["tool_calls"]] == ["succeeded", "refused", "refused"]


async def test_echo_says_which_tools_it_would_offer(client: httpx.AsyncClient, company: Company) -> None:
    skill = await make_skill(client, company.alice, "echo", GITHUB_TOOLS)
    out = await run(client, company.alice, skill, {"repo": "app"})
    output = out.of("run.completed")[0]["output"]
    assert output.startswith("Triage app")
    assert "[echo: tools offered: github.list_issues, github.create_issue]" in output


async def test_tools_are_versioned_content(client: httpx.AsyncClient, company: Company) -> None:
    skill = await make_skill(client, company.alice, "echo", [{"name": "github.list_issues"}])
    response = await client.patch(
        f"/api/skills/{skill['id']}", json={"tools": GITHUB_TOOLS}, headers=company.alice.headers
    )
    assert response.status_code == 200 and response.json()["version"] == 2
    versions = (await client.get(f"/api/skills/{skill['id']}/versions", headers=company.alice.headers)).json()
    assert [v["tools"] for v in versions] == [GITHUB_TOOLS, [{"name": "github.list_issues"}]]
    old = await client.post(
        f"/api/skills/{skill['id']}/run",
        json={"version": 1, "input": {"repo": "r"}},
        headers=company.alice.headers | {"Accept": "application/json"},
    )
    assert old.json()["output"].endswith("[echo: tools offered: github.list_issues]")


# --------------------------------------------------------------------------- a client that goes away


@pytest.fixture(scope="module")
def server(tool_settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(tool_settings, database_url=database_url)) as running:
        yield running


async def test_a_disconnect_mid_tool_call_cancels_the_run_and_records_the_call(
    server: ThreadedServer,
    client: httpx.AsyncClient,
    fakes: dict[str, Any],
    fake_oauth: FakeOAuth,
    engine: AsyncEngine,
    company: Company,
) -> None:
    await connect(client, company.alice, "github")
    skill = await make_skill(client, company.alice, "openai", GITHUB_TOOLS)
    fakes["openai"].script_turns(
        skill["model"],
        [
            Script(chunks=[], tool_calls=[("github_list_issues", '{"owner":"acme","repo":"slow"}')]),
            Script(chunks=["x"]),
        ],
    )
    fake_oauth.hold = hold = threading.Event()
    try:
        seen: list[str] = []
        async with httpx.AsyncClient(base_url=server.url, timeout=SAFETY) as http:
            async with asyncio.timeout(SAFETY):
                async with aconnect_sse(
                    http,
                    "POST",
                    f"/api/skills/{skill['id']}/run",
                    json={"input": {"repo": "r"}},
                    headers=company.alice.headers,
                ) as source:
                    async with aclosing(source.aiter_sse()) as events:
                        async for sse in events:
                            seen.append(sse.event)
                            if sse.event == "tool.call":
                                await eventually(
                                    lambda: any(c.path.endswith("/slow/issues") for c in fake_oauth.api_calls),
                                    "the tool call reaching GitHub",
                                )
                                break
        assert seen == ["run.started", "tool.call"]

        async def closed() -> Json | None:
            row = await run_row(engine, skill)
            return row if row["status"] != "running" else None

        row = await eventually(closed, "the run being closed")
    finally:
        hold.set()
        fake_oauth.hold = None
    assert row["status"] == "cancelled"
    assert [(c["tool"], c["status"]) for c in row["tool_calls"]] == [("github.list_issues", "cancelled")]
    assert len(requests_of(fakes["openai"], skill)) == 1  # the model was not asked again


TOOL_SUBSCRIPTION = """
subscription($id: ID!, $input: JSON!) {
  runSkill(id: $id, input: $input) {
    __typename type runId
    ... on RunToolCall { callId tool arguments }
    ... on RunToolResult { callId tool status result durationMs }
    ... on RunCompleted { output }
  }
}
"""


async def test_the_graphql_subscription_streams_typed_tool_events(
    server: ThreadedServer, client: httpx.AsyncClient, fakes: dict[str, Any], fake_oauth: FakeOAuth, company: Company
) -> None:
    await connect(client, company.alice, "github")
    repo = unique("repo")
    skill = await make_skill(client, company.alice, "anthropic", GITHUB_TOOLS)
    fakes["anthropic"].script_turns(
        skill["model"],
        [
            Script(chunks=[], tool_calls=[("github_list_issues", json.dumps({"owner": "acme", "repo": repo}))]),
            Script(chunks=["none open"]),
        ],
    )
    body = {"query": TOOL_SUBSCRIPTION, "variables": {"id": skill["id"], "input": {"repo": repo}}}
    received: list[Json] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=SAFETY) as http, asyncio.timeout(SAFETY):
        headers = company.alice.headers | {"Accept": "text/event-stream"}
        async with aconnect_sse(http, "POST", "/graphql", json=body, headers=headers) as source:
            async for message in source.aiter_sse():
                if message.event == "next":
                    received.append(json.loads(message.data)["data"]["runSkill"])

    assert [e["__typename"] for e in received] == [
        "RunStarted",
        "RunToolCall",
        "RunToolResult",
        "RunDelta",
        "RunCompleted",
    ]
    call, result = received[1], received[2]
    assert (call["type"], call["tool"], call["arguments"]) == (
        "tool.call",
        "github.list_issues",
        {"owner": "acme", "repo": repo},
    )
    assert (result["type"], result["callId"], result["status"], result["result"]) == (
        "tool.result",
        call["callId"],
        "SUCCEEDED",
        "[]",
    )
    assert isinstance(result["durationMs"], int)

    run = await gql(
        client,
        company.alice,
        "query($id: ID!) { skillRun(id: $id) { toolCalls { callId tool arguments status error durationMs } } }",
        {"id": received[0]["runId"]},
    )
    (recorded,) = run["data"]["skillRun"]["toolCalls"]
    assert recorded["callId"] == call["callId"] and recorded["status"] == "SUCCEEDED" and recorded["error"] is None
