"""REST errors carry a stable `code` from one closed set, declared in the OpenAPI document and the
README, each status only its own codes, and named as GraphQL names the same condition."""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

import fluxopus
from fluxopus.errors import DomainError
from fluxopus.rest_compat.errors import CODES_BY_STATUS, DOMAIN_CODES, ErrorCode, rest_code
from fluxopus.rest_compat.openapi import build_openapi
from tests.utils.builders import Company, create_tag, create_task, error_codes, gql
from tests.utils.http import assert_error

REPO_ROOT = Path(fluxopus.__file__).resolve().parent.parent
# GraphQL's code → REST's; BAD_USER_INPUT is also REST's bad_request when the request could not be read.
GRAPHQL = DOMAIN_CODES | {"INTERNAL_SERVER_ERROR": ErrorCode.internal}
MISSING = "00000000-0000-4000-8000-000000000000"


def _all_subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | _all_subclasses(sub)
    return found


def test_every_domain_error_has_a_rest_code_of_its_status() -> None:
    for info in pkgutil.walk_packages(fluxopus.__path__, prefix="fluxopus."):
        importlib.import_module(info.name)  # so every DomainError subclass is defined
    # GraphQL's transport answers its own errors in GraphQL's shape (schema/router.py); all others reach REST.
    errors = {cls for cls in _all_subclasses(DomainError) if not cls.__module__.startswith("fluxopus.schema.")}
    assert len(errors) >= 10, errors
    for cls in errors:
        assert cls.code in DOMAIN_CODES, cls
        code = rest_code(cls.__new__(cls))
        assert code in CODES_BY_STATUS[cls.status], (cls, cls.status, code)


def test_every_code_belongs_to_exactly_one_status() -> None:
    listed = [code for codes in CODES_BY_STATUS.values() for code in codes]
    assert sorted(listed) == sorted(ErrorCode), "a code is missing from CODES_BY_STATUS or under two statuses"


def test_the_document_declares_the_codes_and_which_status_carries_which() -> None:
    document = build_openapi()
    code_schema = document["components"]["schemas"]["Error"]["properties"]["code"]
    assert code_schema["enum"] == [code.value for code in ErrorCode]
    assert document["components"]["schemas"]["Error"]["required"] == ["error", "code"]
    responses = document["components"]["responses"]
    for status, codes in CODES_BY_STATUS.items():
        if status == 405:  # no operation answers it: it is for the methods no operation has
            assert f"E{status}" not in responses
            continue
        named = set(re.findall(r"`([a-z_]+)`", responses[f"E{status}"]["description"]))
        assert named & set(ErrorCode) == set(codes), (status, named)


def test_the_readme_errors_table_is_the_code_table() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \| (`[A-Z_]+`|—) \| (.+) \|$", section, flags=re.MULTILINE)
    assert {(int(status), code, when) for status, code, _, when in rows} == {
        (status, code.value, when) for status, codes in CODES_BY_STATUS.items() for code, when in codes.items()
    }
    for _, code, graphql_code, _ in rows:
        if graphql_code != "—":
            assert GRAPHQL[graphql_code.strip("`")] in (code, "validation_failed" if code == "bad_request" else code)


def _documented(document: dict[str, Any], method: str, template: str, status: int, code: str) -> None:
    """The operation documents this status, and the status's description names this code."""
    operation = document["paths"]["/api" + template][method]
    ref = operation["responses"][str(status)]["$ref"]
    description = document["components"]["responses"][ref.rsplit("/", 1)[-1]]["description"]
    assert f"`{code}`" in description, (method, template, status, code)


async def test_a_sample_of_errors_carries_codes_the_document_declares(client: httpx.AsyncClient, acme: Company) -> None:
    document = build_openapi()
    alice, bob = acme.alice.headers, acme.bob.headers
    tag = await create_tag(client, acme.alice)
    form = {**alice, "Content-Type": "application/x-www-form-urlencoded"}  # what curl -d sends
    text = {**alice, "Content-Type": "text/plain"}
    json_type = {**alice, "Content-Type": "application/json"}
    # method, documented path, concrete path, body, headers, status, code
    cases: list[tuple[str, str, str, Any, dict[str, str], int, str]] = [
        ("get", "/tasks", "/api/tasks", None, {}, 401, "unauthorized"),
        ("get", "/tasks", "/api/tasks", None, {"Authorization": "Bearer nope"}, 401, "unauthorized"),
        ("get", "/tasks/{id}", f"/api/tasks/{MISSING}", None, alice, 404, "not_found"),
        ("get", "/tasks/{id}", "/api/tasks/not-a-uuid", None, alice, 400, "bad_request"),
        ("get", "/tasks", "/api/tasks?limit=0", None, alice, 400, "validation_failed"),
        ("post", "/tasks", "/api/tasks", b'{"title": ""}', json_type, 400, "validation_failed"),
        ("post", "/tasks", "/api/tasks", b'{"title": "x", "nope": 1}', json_type, 400, "validation_failed"),
        ("post", "/tasks", "/api/tasks", b'{"assignee_id": "nobody"}', json_type, 400, "validation_failed"),
        ("post", "/tasks", "/api/tasks", b'{"title": "half', json_type, 400, "bad_request"),
        ("post", "/tasks", "/api/tasks", b"", json_type, 400, "bad_request"),
        ("post", "/tasks", "/api/tasks", b'\xff{"title": "x"}', json_type, 400, "bad_request"),
        ("post", "/tasks", "/api/tasks", b"x" * (2 << 20), json_type, 413, "payload_too_large"),
        ("post", "/tasks", "/api/tasks", b'{"title": "x"}', text, 415, "unsupported_media_type"),
        ("post", "/tags", "/api/tags", b"name=form", form, 415, "unsupported_media_type"),
        ("post", "/tags", "/api/tags", b'{"name": "%s"}' % tag["name"].encode(), json_type, 409, "conflict"),
        ("patch", "/tags/{id}", f"/api/tags/{tag['id']}", b'{"name": "b"}', bob, 403, "forbidden"),
        ("get", "/skills/{id}", f"/api/skills/{MISSING}", None, alice, 404, "not_found"),
        ("get", "/connections/status/{provider}", "/api/connections/status/nope", None, alice, 404, "not_found"),
    ]
    for method, template, path, body, headers, status, code in cases:
        response = await client.request(method, path, content=body, headers=headers)
        assert_error(response, status, code=code)
        _documented(document, method, template, status, code)
    # Outside any operation: no route, or a method the path does not have.
    assert_error(await client.get("/api/nope", headers=alice), 404, code="not_found")
    assert_error(await client.get("/nope/at/all"), 404, code="not_found")
    wrong_method = await client.put("/api/tasks", json={"title": "x"}, headers=alice)
    assert_error(wrong_method, 405, code="method_not_allowed")
    assert "GET" in wrong_method.headers["allow"]
    # A preflight from an origin not allowed (http_cors.py).
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    assert_error(await client.options("/api/tasks", headers=preflight), 403, code="forbidden")
    # None of it changed anything.
    listed = await client.get("/api/tasks", headers=alice)
    assert listed.json() == [] and listed.headers["X-Total-Count"] == "0"


async def test_json_bodies_are_accepted_with_or_without_a_declared_type(
    client: httpx.AsyncClient, acme: Company
) -> None:
    for content_type in (None, "application/json", "application/json; charset=utf-8", "application/merge-patch+json"):
        headers = acme.alice.headers | ({"Content-Type": content_type} if content_type else {})
        response = await client.post("/api/tasks", content=b'{"title": "typed"}', headers=headers)
        assert response.status_code == 201, (content_type, response.text)


@pytest.mark.parametrize("kind", ["not_found", "conflict", "validation_failed", "bad_request", "unauthorized"])
async def test_rest_and_graphql_name_the_same_condition_alike(
    client: httpx.AsyncClient, acme: Company, kind: str
) -> None:
    alice = acme.alice
    if kind == "not_found":
        rest = await client.delete(f"/api/tasks/{MISSING}", headers=alice.headers)
        result = await gql(client, alice, "mutation($id: ID!) { deleteTask(id: $id) }", {"id": MISSING})
    elif kind == "conflict":
        tag = await create_tag(client, alice)
        rest = await client.post("/api/tags", json={"name": tag["name"]}, headers=alice.headers)
        result = await gql(
            client, alice, "mutation($n: String!) { createTag(input: {name: $n}) { id } }", {"n": tag["name"]}
        )
    elif kind == "validation_failed":
        task = await create_task(client, alice)
        rest = await client.post(f"/api/tasks/{task['id']}/time-logs", json={"minutes": 0}, headers=alice.headers)
        result = await gql(
            client,
            alice,
            "mutation($id: ID!) { addTimeLog(taskId: $id, input: {minutes: 0}) { id } }",
            {"id": task["id"]},
        )
    elif kind == "bad_request":  # GraphQL has one code for what REST tells apart: BAD_USER_INPUT
        rest = await client.delete("/api/tags/not-a-uuid", headers=alice.headers)
        result = await gql(client, alice, "mutation($id: ID!) { deleteTag(id: $id) }", {"id": "not-a-uuid"})
    else:
        rest = await client.get("/api/usage")
        result = await gql(client, None, "{ tasks { id } }")
    code = rest.json()["code"]
    assert code == kind, rest.json()
    assert [GRAPHQL[c] for c in error_codes(result)] == [code if code != "bad_request" else "validation_failed"], result
