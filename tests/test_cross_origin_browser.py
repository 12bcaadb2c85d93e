"""A page on another origin, in headless Chromium, uses the API the ways frontends do: REST (asking for
X-Total-Count with `Prefer: count=exact`), GraphQL over HTTP, graphql-ws, and graphql-sse in both its modes
(distinct connections and single connection), each a query and a `runSkill` subscription streamed by the
offline echo provider.

The page (tests/js/cross_origin.html, with graphql-ws's and graphql-sse's UMD builds from
tests/js/node_modules) is served from a second 127.0.0.1 port, so its origin differs from the API's;
tests/js/cross_origin.mjs drives Chromium with playwright-core and aborts any request to another host.
Against a server that does not allow the page's origin every step must fail: the test can fail."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from fluxopus.app import create_app
from fluxopus.config import Settings
from tests.utils.builders import Company, unique
from tests.utils.server import ThreadedServer

pytestmark = [pytest.mark.js, pytest.mark.slow]

JS = Path(__file__).resolve().parent / "js"
FILES = {
    "/": (JS / "cross_origin.html", "text/html; charset=utf-8"),
    "/graphql-ws.js": (JS / "node_modules" / "graphql-ws" / "umd" / "graphql-ws.min.js", "text/javascript"),
    "/graphql-sse.js": (JS / "node_modules" / "graphql-sse" / "umd" / "graphql-sse.min.js", "text/javascript"),
}
CHROMIUM = "/usr/bin/chromium"
STEPS = ("rest", "http", "ws", "sseDistinct", "sseSingle")


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        found = FILES.get(self.path)
        if found is None:
            self.send_error(404)
            return
        body = found[0].read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", found[1])
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the page's requests are not news
        return


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    node, chromium = shutil.which("node"), Path(CHROMIUM)
    assert node, "Node.js is required"
    assert chromium.exists(), f"{CHROMIUM} is required (Debian's chromium package)"
    assert (JS / "node_modules" / "playwright-core").is_dir(), "run: npm ci --prefix tests/js"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def run_page(page_origin: str, settings: Settings, database_url: str, company: Company) -> dict[str, Any]:
    """The page's steps against a real server configured with `settings`, as the test's user."""
    with ThreadedServer(create_app(settings, database_url=database_url)) as api:
        assert api.url != page_origin
        body = {"name": unique("skill"), "instructions": "Say hello to {{ input.name }}"}
        created = httpx.post(f"{api.url}/api/skills", json=body, headers=company.alice.headers, timeout=15)
        assert created.status_code == 201, created.text
        node = shutil.which("node")
        assert node
        command = [node, str(JS / "cross_origin.mjs"), f"{page_origin}/", api.url, company.alice.token]
        result = subprocess.run([*command, created.json()["id"]], capture_output=True, text=True, timeout=120, cwd=JS)
    assert result.returncode == 0, result.stderr
    outcome: dict[str, Any] = json.loads(result.stdout)
    assert outcome["blocked"] == [], outcome["blocked"]  # the page needed nothing from another host
    assert sorted(outcome["steps"]) == sorted(STEPS), outcome
    return outcome


def kind(event_type: str) -> str:
    """`run.completed` or RUN_COMPLETED alike (the event names' spelling is not this file's subject)."""
    return re.sub(r"[^a-z]", "", event_type.lower())


def test_a_page_on_an_allowed_origin_uses_every_transport(
    page_origin: str, settings: Settings, database_url: str, acme: Company
) -> None:
    own = settings.model_copy(update={"cors_origins": [page_origin]})
    outcome = run_page(page_origin, own, database_url, acme)
    steps = outcome["steps"]
    failed = {name: s["error"] for name, s in steps.items() if not s["ok"]}
    assert not failed, (failed, outcome["console"])
    rest = steps["rest"]["value"]
    assert rest["status"] == 200 and isinstance(rest["body"], list), rest
    # Prefer passed the preflight; X-Total-Count and Preference-Applied are exposed
    assert rest["total"] is not None and rest["total"].isdigit(), rest
    assert rest["applied"] == "count=exact", rest
    assert steps["http"]["value"] == {"status": 200, "body": {"data": {"me": {"id": acme.alice.id}}}}
    for name in ("ws", "sseDistinct", "sseSingle"):
        value = steps[name]["value"]
        assert value["me"] == acme.alice.id, (name, value)
        events = value["events"]
        assert kind(events[0]["type"]) == "runstarted" and kind(events[-1]["type"]) == "runcompleted", (name, events)
        assert len(events) >= 3 and all(e["__typename"] for e in events), (name, events)


def test_a_page_on_an_origin_not_allowed_gets_nothing(
    page_origin: str, settings: Settings, database_url: str, acme: Company
) -> None:
    assert settings.cors_origins == []
    steps = run_page(page_origin, settings, database_url, acme)["steps"]
    assert all(not s["ok"] for s in steps.values()), steps
    assert steps["rest"]["error"] == "TypeError: Failed to fetch", steps["rest"]
    assert steps["ws"]["error"] == "close 1006", steps["ws"]  # the handshake was refused (403)
