"""Fluxopus's GraphiQL in a real browser (Debian's Chromium, headless, driven by playwright-core in
tests/js/graphiql.mjs) against a real server, with no network: every request to another host is
refused and recorded, and none may be attempted. The editor renders with the Fluxopus query, the query
answers data once a token is typed into the page's field (and not before), a header of the Headers
pane takes the field's place, the token survives a reload,
and a runSkill subscription streams its events over the page's own WebSocket, authenticated by the
connection_init payload. Screenshots land in tests/output/ (graphiql.png: the query's data;
graphiql-subscription.png: the last event), which CI keeps as artefacts."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fluxopus.app import create_app
from fluxopus.config import Settings
from tests.utils.builders import Company, unique
from tests.utils.server import ThreadedServer

pytestmark = [pytest.mark.js, pytest.mark.slow]

TESTS = Path(__file__).resolve().parent
JS = TESTS / "js"
SCREENSHOT = TESTS / "output" / "graphiql.png"
SUBSCRIPTION_SCREENSHOT = TESTS / "output" / "graphiql-subscription.png"


@pytest.fixture(scope="module")
def server(settings: Settings, database_url: str) -> Iterator[ThreadedServer]:
    """No model keys: skills run on the offline echo provider, which streams."""
    # The app builds its own engine inside the server thread's event loop.
    with ThreadedServer(create_app(settings, database_url=database_url)) as running:
        yield running


def drive(server: ThreadedServer, token: str, skill_id: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node, "Node.js is required for tests/test_graphiql_browser.py"
    assert (JS / "node_modules" / "playwright-core").is_dir(), "run: npm ci --prefix tests/js"
    assert Path("/usr/bin/chromium").exists(), "Debian's chromium is required (apt-get install chromium)"
    SCREENSHOT.unlink(missing_ok=True)
    SUBSCRIPTION_SCREENSHOT.unlink(missing_ok=True)
    result = subprocess.run(
        [node, str(JS / "graphiql.mjs"), server.url, token, skill_id, str(SCREENSHOT)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=JS,
    )
    outcome: dict[str, Any] = json.loads(result.stdout) if result.stdout else {}
    assert result.returncode == 0, f"{result.stderr}\n{json.dumps(outcome, indent=1)}"
    return outcome


async def test_graphiql_works_offline_in_chromium(server: ThreadedServer, acme: Company) -> None:
    user = acme.alice
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        created = await http.post(
            "/api/skills",
            json={"name": unique("greet"), "instructions": "Say hello to {{ input.name }} from the browser"},
            headers=user.headers,
        )
        assert created.status_code == 201, created.text
        skill_id = created.json()["id"]

        outcome = drive(server, user.token, skill_id)

        runs = await http.get(f"/api/skills/{skill_id}/runs", headers=user.headers)
    assert runs.status_code == 200, runs.text

    # Self-contained: nothing but this server was asked for, and the page ran without errors.
    assert outcome["external"] == []
    assert outcome["requested"] and all(url.startswith(server.url + "/") for url in outcome["requested"])
    assert f"{server.url}/graphql/assets/graphiql.min.js?v=" in " ".join(outcome["requested"])
    assert [line for line in outcome["console"] if line.startswith(("error", "pageerror"))] == []
    assert outcome["title"] == "Fluxopus GraphiQL"

    # The editor rendered with the Fluxopus query; without a token it runs and is refused.
    assert "query Me {" in outcome["defaultQuery"] and "tasks {" in outcome["defaultQuery"]
    anonymous = json.loads(outcome["anonymous"])
    assert anonymous["data"] is None
    assert {e["extensions"]["code"] for e in anonymous["errors"]} == {"UNAUTHENTICATED"}

    # With the token in the page's field, the same query answers the caller's data.
    assert outcome["tokenState"].startswith(user.email)
    data = json.loads(outcome["query"])
    assert "errors" not in data, data
    assert data["data"]["me"]["email"] == user.email
    assert data["data"]["me"]["company"] == {"name": acme.name}
    assert isinstance(data["data"]["tasks"], list)
    # A header of the Headers pane wins over the field (and the server judges that one).
    pane = json.loads(outcome["paneHeader"])
    assert pane["data"] is None and {e["extensions"]["code"] for e in pane["errors"]} == {"UNAUTHENTICATED"}
    assert {e["message"] for e in pane["errors"]} == {"Malformed token"}  # "not-a-token", not the field's
    assert outcome["rememberedToken"] == user.token

    # The subscription went over one WebSocket to this server, authenticated in connection_init, and
    # streamed several events before the server completed it; the pane shows the last one.
    sockets = [s for s in outcome["sockets"] if any(m["type"] == "subscribe" for m in s["sent"])]
    assert len(sockets) == 1, outcome["sockets"]
    socket = sockets[0]
    assert socket["url"] == server.url.replace("http://", "ws://") + "/graphql"
    init = socket["sent"][0]
    assert init["type"] == "connection_init" and init["payload"]["Authorization"] == f"Bearer {user.token}"
    received = [m["type"] for m in socket["received"]]
    assert received[0] == "connection_ack" and received[-1] == "complete", received
    events = [m["payload"] for m in socket["received"] if m["type"] == "next"]
    assert len(events) >= 3, events  # started, at least one delta, completed
    assert all("errors" not in e and e["data"]["runSkill"]["__typename"] for e in events), events
    assert json.loads(outcome["subscription"]) == events[-1]
    # The run it started is recorded, finished.
    assert [run["status"] for run in runs.json()] == ["succeeded"]

    assert SCREENSHOT.stat().st_size > 10_000 and SUBSCRIPTION_SCREENSHOT.stat().st_size > 10_000
