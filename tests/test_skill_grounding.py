"""Skills grounded in knowledge: settings (REST and GraphQL, versioned), retrieval as the caller, the
prompt the model gets, citations, and the budget.

Runs use the offline stack: the local MiniLM embeddings (the `indexer` fixture embeds what is queued
when a test calls `await indexer.work()`) and the `echo` provider, whose answer is the rendered prompt:
what a test reads in `output` is exactly what a model would have been given. The property that matters
most is isolation: a run's prompt and citations never hold an item its caller could not GET — another
company's, or a colleague's private one — even when that item is the best match.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx_sse import aconnect_sse
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.ai.indexer import Indexer
from fluxopus.ai.prompts import MAX_QUERY_CHARS, input_text
from fluxopus.app import create_app
from fluxopus.config import Settings
from fluxopus.models.skills import Citation, CitedChunk, SkillKnowledge
from tests.utils.builders import Company, User, create_tag, error_codes, gql, make_company, set_budget, unique
from tests.utils.http import assert_error, eventually
from tests.utils.server import ThreadedServer

Json = dict[str, Any]
JSON_ACCEPT = {"Accept": "application/json"}
BLOCK = "Knowledge (excerpts from the company's documents"
NOTHING = "Knowledge: nothing in the company's knowledge matched this request."

# The company's documents (title, content): one obvious subject each.
LIBRARY: dict[str, tuple[str, str]] = {
    "leave": (
        "Holiday allowance",
        "Every employee has twenty-five days of paid annual leave. Unused days carry over until the end of March.",
    ),
    "invoice": (
        "Invoice payment terms",
        "Invoices are payable within thirty days of issue. Late payment incurs a fee of two percent per month "
        "on the outstanding amount.",
    ),
    "deploy": (
        "Deploying services",
        "Services are deployed with Helm charts to the production Kubernetes cluster. A failed release is "
        "undone with helm rollback.",
    ),
    "dogs": (
        "Dogs in the office",
        "Dogs are welcome in the office on Fridays, provided they are vaccinated, on a leash in shared areas "
        "and well behaved.",
    ),
}
# Better matches for the leave question than the company's own document, which its runs must never see:
# a colleague's private note and another company's handbook. Their markers must never reach a prompt.
COLLEAGUE_SECRET = (
    "Bob's private holiday allowance note",
    "PRIVATE-MARKER-7781: my paid annual leave is forty days of holiday allowance; every employee asks about it.",
)
OTHER_COMPANY = (
    "Holiday allowance and paid annual leave",
    "OTHERCO-MARKER-3319: every employee has sixty days of paid annual leave and holiday allowance.",
)
LEAVE_QUESTION = "How many days of paid annual leave does every employee have?"


# --------------------------------------------------------------------------- helpers


async def create_item(client: httpx.AsyncClient, user: User, title: str, content: str, **fields: Any) -> str:
    response = await client.post(
        "/api/knowledge", json={"title": title, "content": content, **fields}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    item_id: str = response.json()["id"]
    return item_id


async def library(client: httpx.AsyncClient, indexer: Indexer, user: User) -> dict[str, str]:
    """LIBRARY written by `user` (company-visible) and embedded: name → item id."""
    ids = {name: await create_item(client, user, title, content) for name, (title, content) in LIBRARY.items()}
    await indexed(client, indexer, user, list(ids.values()))
    return ids


async def indexed(client: httpx.AsyncClient, indexer: Indexer, user: User, item_ids: list[str]) -> None:
    """Embeds what is queued and waits until every item is `indexed` (a real server's own worker, when
    one runs, may hold some of the jobs)."""

    async def done() -> bool:
        await indexer.work()
        for item_id in item_ids:
            response = await client.get(f"/api/knowledge/{item_id}", headers=user.headers)
            if response.json()["status"] != "indexed":
                return False
        return True

    await eventually(done, "the items to be indexed", timeout=30)


async def skill(client: httpx.AsyncClient, user: User, knowledge: Json | None, **fields: Any) -> Json:
    body = {
        "name": unique("grounded"),
        "instructions": "Answer the question: {{ input.question }}",
        "visibility": "company",
        "knowledge": knowledge,
        **fields,
    }
    response = await client.post("/api/skills", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    created: Json = response.json()
    return created


async def run(client: httpx.AsyncClient, user: User, skill_id: str, input: Json, **body: Any) -> Json:
    response = await client.post(
        f"/api/skills/{skill_id}/run", json={"input": input, **body}, headers={**user.headers, **JSON_ACCEPT}
    )
    assert response.status_code == 200, response.text
    answer: Json = response.json()
    assert answer["status"] == "succeeded", answer
    return answer


async def stream(client: httpx.AsyncClient, user: User, skill_id: str, input: Json) -> list[tuple[str, Json]]:
    """The run's SSE events, (name, data)."""
    response = await client.post(f"/api/skills/{skill_id}/run", json={"input": input}, headers=user.headers)
    assert response.status_code == 200, response.text
    events = []
    for block in response.text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


def block_titles(prompt: str) -> list[str]:
    """The titles of the default knowledge block, in order."""
    _, _, block = prompt.partition(BLOCK)
    return re.findall(r"^\[\d+\] (.+)$", block, flags=re.MULTILINE)


def cited_ids(run: Json) -> list[str]:
    return [c["item_id"] for c in run["citations"]]


async def used_tokens(engine: AsyncEngine, company: Company) -> int:
    async with engine.connect() as conn:
        used = await conn.scalar(
            text(
                "select coalesce(sum(u.used), 0) from token_usage u join companies c on c.id = u.company_id"
                " where c.name = :name"
            ),
            {"name": company.name},
        )
    return int(used)


def retrieval_tokens(app: FastAPI, q: str) -> int:
    """What the query's embedding costs: its tokens and the model's two markers ([CLS], [SEP])."""
    return int(app.state.runtime.ai.embedder.count_tokens(q)) + 2


# --------------------------------------------------------------------------- declarations


def test_stored_models_list_their_fields_in_jsonb_key_order() -> None:
    """REST lists write jsonb as PostgreSQL keeps it (models.common.Rows): for the bytes to be those the
    models would write, each nested model's fields must come in jsonb's order (shorter keys first)."""
    for model in (SkillKnowledge, Citation, CitedChunk):
        names = list(model.model_fields)
        assert names == sorted(names, key=lambda n: (len(n), n.encode())), model.__name__


def test_default_query_is_the_inputs_values_as_one_line() -> None:
    assert input_text({"question": " How  many\ndays? ", "n": 3, "flag": True, "deep": {"x": ["a", "b"]}}) == (
        "How many days? 3 a b"
    )
    assert input_text({}) == ""
    long = input_text({"q": "word " * 1000})
    assert len(long) <= MAX_QUERY_CHARS and long.endswith("word")


# --------------------------------------------------------------------------- grounding end to end


async def test_the_prompt_gets_the_right_snippets_and_the_run_cites_them(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer
) -> None:
    ids = await library(client, indexer, acme.alice)
    s = await skill(client, acme.alice, {"enabled": True, "top_k": 2})
    assert s["knowledge"] == {"mode": "hybrid", "tags": None, "query": None, "top_k": 2, "enabled": True}

    answer = await run(client, acme.alice, s["id"], {"question": LEAVE_QUESTION})
    prompt = answer["output"]
    assert prompt.startswith(f"Answer the question: {LEAVE_QUESTION}\n\n---\n{BLOCK}")
    # The best item first, with its passage: the model is given the text that answers the question.
    assert cited_ids(answer)[0] == ids["leave"]
    assert "twenty-five days" in prompt.replace("**", "")
    assert len(answer["citations"]) == 2
    # The citations are what the prompt shows, in its order.
    assert block_titles(prompt) == [c["title"] for c in answer["citations"]]
    assert [c["title"] for c in answer["citations"]] == [LIBRARY[_name(ids, i)][0] for i in cited_ids(answer)]
    for citation in answer["citations"]:
        assert set(citation) == {"score", "title", "chunks", "item_id"}
        assert citation["chunks"] and all(set(c) == {"position"} for c in citation["chunks"])
        assert citation["chunks"][0]["position"] == 0  # each document is one chunk
    scores = [c["score"] for c in answer["citations"]]
    assert scores == sorted(scores, reverse=True) and all(s > 0 for s in scores)

    # The run keeps them: the runs list says the same.
    listed = await client.get(f"/api/skills/{s['id']}/runs", headers=acme.alice.headers)
    assert listed.status_code == 200
    assert [r["citations"] for r in listed.json() if r["id"] == answer["id"]] == [answer["citations"]]
    # Written straight from the rows, in the order of the models' fields (see the declarations test).
    assert list(listed.json()[0]["citations"][0]) == list(Citation.model_fields)
    skills_listed = await client.get("/api/skills", params={"q": s["name"]}, headers=acme.alice.headers)
    assert list(skills_listed.json()[0]["knowledge"]) == list(SkillKnowledge.model_fields)


def _name(ids: dict[str, str], item_id: str) -> str:
    return next(name for name, i in ids.items() if i == item_id)


async def test_a_run_never_sees_other_companies_or_colleagues_private_items(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer, database_url: str
) -> None:
    ids = await library(client, indexer, acme.alice)
    secret = await create_item(client, acme.bob, *COLLEAGUE_SECRET, visibility="private")
    globex = await make_company(database_url)
    foreign = await create_item(client, globex.alice, *OTHER_COMPANY)
    await indexed(client, indexer, acme.bob, [secret])
    await indexed(client, indexer, globex.alice, [foreign])
    # Both are found by their owners' own searches: they are indexed, and they match.
    for user, item_id in ((acme.bob, secret), (globex.alice, foreign)):
        response = await client.get("/api/knowledge/search", params={"q": LEAVE_QUESTION}, headers=user.headers)
        assert item_id in [h["item"]["id"] for h in response.json()]

    s = await skill(client, acme.alice, {"enabled": True, "top_k": 20})
    for mode in ("hybrid", "semantic", "keyword"):
        patched = await client.patch(
            f"/api/skills/{s['id']}", json={"knowledge": {"mode": mode, "top_k": 20}}, headers=acme.alice.headers
        )
        assert patched.status_code == 200, patched.text
        for user in (acme.alice, acme.admin):  # the admin too: private means the owner's alone
            answer = await run(client, user, s["id"], {"question": LEAVE_QUESTION})
            assert ids["leave"] in cited_ids(answer), (mode, user.role)
            assert secret not in cited_ids(answer) and foreign not in cited_ids(answer), mode
            for marker in ("PRIVATE-MARKER", "OTHERCO-MARKER", COLLEAGUE_SECRET[0]):
                assert marker not in answer["output"], (mode, marker)
            assert set(cited_ids(answer)) <= set(ids.values())

        # The same skill run by Bob retrieves as Bob: his own private note is his to be given.
        bobs = await run(client, acme.bob, s["id"], {"question": LEAVE_QUESTION})
        assert secret in cited_ids(bobs), mode
        assert "PRIVATE-MARKER-7781" in bobs["output"].replace("**", "")
        assert foreign not in cited_ids(bobs) and "OTHERCO-MARKER" not in bobs["output"]

    # And the other company's run of its own skill sees only its own handbook.
    theirs = await skill(client, globex.alice, {"top_k": 20})
    answer = await run(client, globex.alice, theirs["id"], {"question": LEAVE_QUESTION})
    assert cited_ids(answer) == [foreign]
    assert "twenty-five days" not in answer["output"]


async def test_run_completed_event_carries_the_citations(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer
) -> None:
    ids = await library(client, indexer, acme.alice)
    s = await skill(client, acme.alice, {"top_k": 1})
    events = await stream(client, acme.alice, s["id"], {"question": "helm rollback of a failed release"})
    assert [name for name, _ in events][0] == "run.started" and events[-1][0] == "run.completed"
    completed = events[-1][1]
    assert [c["item_id"] for c in completed["citations"]] == [ids["deploy"]]
    assert completed["citations"][0]["title"] == "Deploying services"
    streamed = "".join(data["text"] for name, data in events if name == "delta")
    assert streamed == completed["output"] and "[1] Deploying services" in streamed
    # The run row agrees with the event.
    listed = (await client.get(f"/api/skills/{s['id']}/runs", headers=acme.alice.headers)).json()
    assert listed[0]["citations"] == completed["citations"]


async def test_a_template_that_places_knowledge_itself_gets_no_default_block(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer
) -> None:
    ids = await library(client, indexer, acme.alice)
    instructions = (
        "Q: {{ input.question }}\n"
        "{% for k in knowledge %}<{{ loop.index }}|{{ k.title }}|{{ k.item_id }}|{{ k.score > 0 }}|{{ k.snippet }}>\n"
        "{% endfor %}"
    )
    s = await skill(client, acme.alice, {"top_k": 3}, instructions=instructions)
    answer = await run(client, acme.alice, s["id"], {"question": "invoice late payment fee"})
    prompt = answer["output"]
    assert BLOCK not in prompt and "---" not in prompt
    shown = re.findall(r"^<(\d+)\|([^|]+)\|([^|]+)\|(\w+)\|", prompt, flags=re.MULTILINE)
    assert [(title, item_id) for _, title, item_id, _ in shown] == [
        (c["title"], c["item_id"]) for c in answer["citations"]
    ]
    assert shown[0][2] == ids["invoice"] and all(positive == "True" for *_, positive in shown)
    assert "two percent per month" in prompt.replace("**", "")


async def test_skills_without_grounding_see_an_empty_knowledge(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer
) -> None:
    await library(client, indexer, acme.alice)
    plain = await skill(client, acme.alice, None, instructions="{{ input.question }} ({{ knowledge | length }})")
    answer = await run(client, acme.alice, plain["id"], {"question": LEAVE_QUESTION})
    assert answer["output"] == f"{LEAVE_QUESTION} (0)" and answer["citations"] == []
    off = await skill(client, acme.alice, {"enabled": False, "top_k": 3})
    answer = await run(client, acme.alice, off["id"], {"question": LEAVE_QUESTION})
    assert answer["output"] == f"Answer the question: {LEAVE_QUESTION}" and answer["citations"] == []


async def test_query_template_and_tag_filter(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer, engine: AsyncEngine, app: FastAPI
) -> None:
    ids = await library(client, indexer, acme.alice)
    ops = await create_tag(client, acme.alice, name=unique("Ops")[:50])
    for name in ("deploy", "dogs"):
        assigned = await client.post(
            "/api/tags/entity",
            json={"entityType": "knowledge", "entityId": ids[name], "tagIds": [ops["id"]]},
            headers=acme.alice.headers,
        )
        assert assigned.status_code == 200, assigned.text
    # Tags by name (any case) are stored as ids.
    s = await skill(client, acme.alice, {"query": "{{ input.topic }}", "tags": [ops["name"].upper()], "top_k": 5})
    assert s["knowledge"]["tags"] == [ops["id"]]
    no_tags = await skill(client, acme.alice, {"tags": []})
    assert no_tags["knowledge"]["tags"] is None  # no tags, no filter
    for mode in ("hybrid", "semantic", "keyword"):
        await client.patch(
            f"/api/skills/{s['id']}",
            json={"knowledge": {**s["knowledge"], "mode": mode}},
            headers=acme.alice.headers,
        )
        # The question is about leave, but the query is the topic; and only Ops items may come back.
        answer = await run(client, acme.alice, s["id"], {"question": LEAVE_QUESTION, "topic": "paid annual leave"})
        assert set(cited_ids(answer)) <= {ids["deploy"], ids["dogs"]}, mode
        assert "twenty-five" not in answer["output"]
        answer = await run(client, acme.alice, s["id"], {"question": "x", "topic": "helm rollback release"})
        assert cited_ids(answer)[0] == ids["deploy"], mode

    # A query that renders empty searches nothing, and costs nothing.
    before = await used_tokens(engine, acme)
    answer = await run(client, acme.alice, s["id"], {"question": LEAVE_QUESTION, "topic": "   "})
    assert answer["citations"] == [] and answer["output"].endswith(NOTHING + "\n")
    assert await used_tokens(engine, acme) - before == answer["input_tokens"] + answer["output_tokens"]
    assert retrieval_tokens(app, "x") > 0


async def test_retrieval_tokens_are_charged_to_the_budget(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer, engine: AsyncEngine, app: FastAPI, database_url: str
) -> None:
    await library(client, indexer, acme.alice)
    question = "How much is the late payment fee on invoices?"
    for mode, embedded in (("hybrid", True), ("semantic", True), ("keyword", False)):
        s = await skill(client, acme.alice, {"mode": mode})
        before = await used_tokens(engine, acme)
        answer = await run(client, acme.alice, s["id"], {"question": question})
        run_tokens = answer["input_tokens"] + answer["output_tokens"]
        searched = retrieval_tokens(app, question) if embedded else 0
        assert await used_tokens(engine, acme) - before == run_tokens + searched, mode

    # Over budget, the run is refused before any model (or embedding) is called, and nothing is recorded.
    s = await skill(client, acme.alice, {"mode": "semantic"})
    await set_budget(database_url, acme, await used_tokens(engine, acme) + 3)
    try:
        response = await client.post(
            f"/api/skills/{s['id']}/run", json={"input": {"question": question}}, headers=acme.alice.headers
        )
        assert_error(response, 429)
        listed = (await client.get(f"/api/skills/{s['id']}/runs", headers=acme.alice.headers)).json()
        assert listed == []
    finally:
        await set_budget(database_url, acme, None)


# --------------------------------------------------------------------------- versions


async def test_knowledge_settings_are_versioned_content(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer
) -> None:
    ids = await library(client, indexer, acme.alice)
    s = await skill(client, acme.alice, {"top_k": 1})
    assert s["version"] == 1

    changed = await client.patch(
        f"/api/skills/{s['id']}", json={"knowledge": {"top_k": 3, "mode": "keyword"}}, headers=acme.alice.headers
    )
    assert changed.json()["version"] == 2
    same = await client.patch(
        f"/api/skills/{s['id']}", json={"knowledge": {"top_k": 3, "mode": "keyword"}}, headers=acme.alice.headers
    )
    assert same.json()["version"] == 2  # no change of content, no new version
    cleared = await client.patch(f"/api/skills/{s['id']}", json={"knowledge": None}, headers=acme.alice.headers)
    assert (cleared.json()["version"], cleared.json()["knowledge"]) == (3, None)

    versions = (await client.get(f"/api/skills/{s['id']}/versions", headers=acme.alice.headers)).json()
    assert [(v["version"], v["knowledge"] and v["knowledge"]["top_k"]) for v in versions] == [
        (3, None),
        (2, 3),
        (1, 1),
    ]
    question = {"question": "paid annual leave days of every employee"}
    assert len((await run(client, acme.alice, s["id"], question, version=1))["citations"]) == 1
    v2 = await run(client, acme.alice, s["id"], question, version=2)
    assert v2["citations"][0]["item_id"] == ids["leave"] and v2["version"] == 2
    current = await run(client, acme.alice, s["id"], question)
    assert current["citations"] == [] and BLOCK not in current["output"]

    # Restoring version 1 (GraphQL has the mutation) brings its settings back, as version 4.
    result = await gql(
        client,
        acme.alice,
        "mutation($id: ID!) { restoreSkillVersion(skillId: $id, version: 1) { version knowledge { topK mode } } }",
        {"id": s["id"]},
    )
    assert result["data"]["restoreSkillVersion"] == {"version": 4, "knowledge": {"topK": 1, "mode": "HYBRID"}}
    assert len((await run(client, acme.alice, s["id"], question))["citations"]) == 1


# --------------------------------------------------------------------------- GraphQL

CREATE = """
mutation($input: CreateSkillInput!) {
  createSkill(input: $input) { id version knowledge { enabled mode topK query tags } }
}"""
UPDATE = (
    "mutation($id: ID!, $input: UpdateSkillInput!) {"
    " updateSkill(id: $id, input: $input) { version knowledge { mode topK } } }"
)
RUN = """
mutation($id: ID!, $input: JSON!) {
  runSkill(id: $id, input: $input) {
    id output citations { score title itemId chunks { position } item { id title visibility } }
  }
}"""
READ_RUN = "query($id: ID!) { skillRun(id: $id) { citations { itemId title item { id title } } } }"


async def test_graphql_declares_runs_and_resolves_citations_as_the_reader_sees_them(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer
) -> None:
    ids = await library(client, indexer, acme.alice)
    input = {
        "name": unique("grounded"),
        "instructions": "Answer: {{ input.question }}",
        "visibility": "COMPANY",
        "knowledge": {"mode": "SEMANTIC", "topK": 2, "query": "{{ input.question }}"},
    }
    created = await gql(client, acme.alice, CREATE, {"input": input})
    assert "errors" not in created, created
    skill = created["data"]["createSkill"]
    assert skill["knowledge"] == {
        "enabled": True, "mode": "SEMANTIC", "topK": 2, "query": "{{ input.question }}", "tags": None,
    }  # fmt: skip

    result = await gql(client, acme.alice, RUN, {"id": skill["id"], "input": {"question": "helm rollback release"}})
    assert "errors" not in result, result
    ran = result["data"]["runSkill"]
    assert ran["citations"][0]["itemId"] == ids["deploy"]
    assert ran["citations"][0]["item"] == {"id": ids["deploy"], "title": "Deploying services", "visibility": "COMPANY"}
    assert [c["title"] for c in ran["citations"]] == block_titles(ran["output"])
    assert all(c["chunks"] == [{"position": 0}] for c in ran["citations"])

    # Later the item turns private: its owner still sees it through the citation, the admin (who reads
    # every run of the company) gets null — and the citation's own title, recorded at run time.
    made_private = await client.patch(
        f"/api/knowledge/{ids['deploy']}", json={"visibility": "private"}, headers=acme.alice.headers
    )
    assert made_private.status_code == 200
    for user, visible in ((acme.alice, True), (acme.admin, False)):
        read = await gql(client, user, READ_RUN, {"id": ran["id"]})
        assert "errors" not in read, read
        first = read["data"]["skillRun"]["citations"][0]
        assert first["title"] == "Deploying services"
        assert first["item"] == ({"id": ids["deploy"], "title": "Deploying services"} if visible else None)

    updated = await gql(client, acme.alice, UPDATE, {"id": skill["id"], "input": {"knowledge": {"topK": 4}}})
    assert updated["data"]["updateSkill"] == {"version": 2, "knowledge": {"mode": "HYBRID", "topK": 4}}
    cleared = await gql(client, acme.alice, UPDATE, {"id": skill["id"], "input": {"knowledge": None}})
    assert cleared["data"]["updateSkill"] == {"version": 3, "knowledge": None}


SUBSCRIPTION = """
subscription($id: ID!, $input: JSON!) {
  runSkill(id: $id, input: $input) {
    type ... on RunCompleted { output citations { itemId title score item { id title } } }
  }
}"""


@pytest.fixture(scope="module")
def server(settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    with ThreadedServer(create_app(settings, database_url=database_url)) as running:
        yield running


async def test_the_subscriptions_run_completed_carries_the_citations(
    client: httpx.AsyncClient, acme: Company, indexer: Indexer, server: ThreadedServer
) -> None:
    ids = await library(client, indexer, acme.alice)
    s = await skill(client, acme.bob, {"top_k": 2})
    body = {"query": SUBSCRIPTION, "variables": {"id": s["id"], "input": {"question": "dogs at the office on Fridays"}}}
    headers = {"Accept": "text/event-stream", **acme.bob.headers}
    async with (
        httpx.AsyncClient(base_url=server.url, timeout=20) as http,
        aconnect_sse(http, "POST", "/graphql", json=body, headers=headers) as source,
    ):
        assert source.response.status_code == 200
        payloads = [json.loads(m.data) async for m in source.aiter_sse() if m.event == "next"]
    completed = payloads[-1]["data"]["runSkill"]
    assert completed["type"] == "run.completed"
    citations = completed["citations"]
    assert citations[0]["itemId"] == ids["dogs"]
    assert citations[0]["item"] == {"id": ids["dogs"], "title": "Dogs in the office"}
    assert [c["title"] for c in citations] == block_titles(completed["output"])


# --------------------------------------------------------------------------- bad input

BAD_KNOWLEDGE: dict[str, tuple[Any, str]] = {
    "top-k-zero": ({"top_k": 0}, "knowledge.top_k"),
    "top-k-too-many": ({"top_k": 21}, "knowledge.top_k"),
    "top-k-text": ({"top_k": "five"}, "knowledge.top_k"),
    "unknown-mode": ({"mode": "fuzzy"}, "knowledge.mode"),
    "unknown-field": ({"topk": 3}, "knowledge.topk"),
    "enabled-text": ({"enabled": "yes"}, "knowledge.enabled"),
    "not-an-object": ("hybrid", "knowledge"),
    "empty-query": ({"query": ""}, "knowledge.query"),
    "bad-template": ({"query": "{{ input.q "}, "knowledge.query"),
    "unknown-tag": ({"tags": ["no-such-tag-anywhere"]}, "no tag 'no-such-tag-anywhere'"),
    "tags-not-a-list": ({"tags": "ops"}, "knowledge.tags"),
    "too-many-tags": ({"tags": [f"t{i}" for i in range(21)]}, "knowledge.tags"),
}


@pytest.mark.parametrize(("knowledge", "says"), BAD_KNOWLEDGE.values(), ids=BAD_KNOWLEDGE.keys())
async def test_bad_knowledge_settings_are_400_and_store_nothing(
    client: httpx.AsyncClient, acme: Company, knowledge: Any, says: str
) -> None:
    name = unique("bad")
    body = {"name": name, "instructions": "Hi", "knowledge": knowledge}
    response = await client.post("/api/skills", json=body, headers=acme.alice.headers)
    assert_error(response, 400)
    assert says in response.json()["error"], response.json()
    listed = await client.get("/api/skills", params={"q": name}, headers=acme.alice.headers)
    assert listed.json() == []

    s = await skill(client, acme.alice, {"top_k": 2})
    response = await client.patch(f"/api/skills/{s['id']}", json={"knowledge": knowledge}, headers=acme.alice.headers)
    assert_error(response, 400)
    unchanged = (await client.get(f"/api/skills/{s['id']}", headers=acme.alice.headers)).json()
    assert (unchanged["version"], unchanged["knowledge"]["top_k"]) == (1, 2)


async def test_another_companys_tag_is_refused(client: httpx.AsyncClient, acme: Company, globex: Company) -> None:
    theirs = await create_tag(client, globex.alice)
    response = await client.post(
        "/api/skills",
        json={"name": unique("s"), "instructions": "Hi", "knowledge": {"tags": [theirs["id"]]}},
        headers=acme.alice.headers,
    )
    assert_error(response, 400)
    assert theirs["id"] in response.json()["error"]


@pytest.mark.parametrize(
    ("knowledge", "code"),
    [
        ({"topK": 0}, "BAD_USER_INPUT"),
        ({"topK": 21}, "BAD_USER_INPUT"),
        ({"mode": "FUZZY"}, "BAD_USER_INPUT"),
        ({"tags": ["no-such-tag-anywhere"]}, "BAD_USER_INPUT"),
        ({"query": "{% if %}"}, "BAD_USER_INPUT"),
    ],
)
async def test_graphql_bad_knowledge_settings(
    client: httpx.AsyncClient, acme: Company, knowledge: Json, code: str
) -> None:
    input = {"name": unique("bad"), "instructions": "Hi", "knowledge": knowledge}
    result = await gql(client, acme.alice, CREATE, {"input": input})
    assert code in error_codes(result) or (
        # an enum value GraphQL itself refuses is a validation error, with no data
        knowledge.get("mode") == "FUZZY" and result.get("data") is None and result["errors"]
    ), result


async def test_a_query_template_that_fails_at_run_time_is_400_and_records_no_run(
    client: httpx.AsyncClient, acme: Company
) -> None:
    s = await skill(client, acme.alice, {"query": "{{ input.topic.missing }}"})
    response = await client.post(
        f"/api/skills/{s['id']}/run", json={"input": {"question": "q"}}, headers=acme.alice.headers
    )
    assert_error(response, 400)
    assert "knowledge.query" in response.json()["error"]
    assert (await client.get(f"/api/skills/{s['id']}/runs", headers=acme.alice.headers)).json() == []
