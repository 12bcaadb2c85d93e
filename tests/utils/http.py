"""The assertions and helpers every API test uses: one definition each."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from fluxopus.rest_compat.errors import CODES_BY_STATUS


def bearer(who: str | Mapping[str, Any] | Any) -> dict[str, str]:
    """The Authorization header for a token, a GoTrue session ({"access_token": ...}) or a test User."""
    if isinstance(who, str):
        token = who
    elif isinstance(who, Mapping):
        token = who["access_token"]
    else:
        token = who.token
    return {"Authorization": f"Bearer {token}"}


def ok(result: dict[str, Any]) -> dict[str, Any]:
    """A GraphQL result without errors: its data."""
    assert "errors" not in result, result
    data: dict[str, Any] = result["data"]
    return data


def assert_error(response: httpx.Response, status: int, *, contains: str | None = None, code: str | None = None) -> str:
    """The only error shape of the REST API: `status`, JSON, exactly {"error": "<non-empty message>",
    "code": "<one of the codes this status carries>"}, no traceback. Returns the message (which
    contains `contains`, ignoring case, when given; the code is `code` when given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.headers
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error", "code"}, body
    assert isinstance(body["error"], str) and body["error"].strip(), body
    assert body["code"] in CODES_BY_STATUS[status], body
    if code is not None:
        assert body["code"] == code, body
    assert "Traceback" not in response.text
    if contains is not None:
        assert contains.lower() in body["error"].lower(), body
    return body["error"]


async def eventually(check: Callable[[], Any], what: str = "the condition", timeout: float = 10.0) -> Any:
    """Polls a check (plain or async) until it returns something truthy, and returns that; bounded,
    so nothing hangs: past `timeout` seconds it fails naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(0.02)
