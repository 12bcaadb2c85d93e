"""Connections over GraphQL: the OAuth flow driven from `authorizeConnection`, and the errors of every field.

The browser steps (consent at the fake provider, the callback) are REST, as in a real browser; everything a
frontend calls is POST /graphql on the app of `tests.utils.connections.world`. Rows are read with the owner
`engine` (no RLS): what is really stored.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.config import Settings
from tests.utils.builders import Company, User, error_codes, gql
from tests.utils.connections import APP_URL, World, expire, pending_states, stored, world
from tests.utils.fake_oauth import FakeOAuth
from tests.utils.http import ok

CONNECTION_FIELDS = "id userId provider status account scopes expiresAt error createdAt updatedAt"
STATUS_FIELDS = "provider connected status connectionId account scopes expiresAt error"

CONNECTIONS = (
    "query($limit: Int! = 50, $offset: Int! = 0) "
    f"{{ connections(limit: $limit, offset: $offset) {{ {CONNECTION_FIELDS} }} }}"
)
STATUS = f"query($provider: String!) {{ connectionStatus(provider: $provider) {{ {STATUS_FIELDS} }} }}"
AUTHORIZE = "mutation($provider: String!, $to: String) { authorizeConnection(provider: $provider, redirectTo: $to) }"
DISCONNECT = "mutation($id: ID!) { disconnect(id: $id) { id deleted revoked revokeError } }"


@pytest.fixture
async def w(settings: Settings, engine: AsyncEngine, fake_oauth: FakeOAuth) -> AsyncIterator[World]:
    async with world(settings, engine, fake_oauth) as w:
        yield w


def failed(result: dict[str, Any], code: str) -> str:
    """Asserts the operation failed with exactly `code`, and returns the message."""
    assert error_codes(result) == [code], result
    message: str = result["errors"][0]["message"]
    return message


async def connect(w: World, user: User, **variables: Any) -> dict[str, str]:
    """The flow as a frontend runs it: the URL from GraphQL, then the browser at the provider and back."""
    url = ok(await gql(w.client, user, AUTHORIZE, {"provider": "fake", **variables}))["authorizeConnection"]
    return await w.callback(await w.consent(url))


async def listed(w: World, user: User) -> list[dict[str, Any]]:
    connections: list[dict[str, Any]] = ok(await gql(w.client, user, CONNECTIONS))["connections"]
    return connections


# --- the whole flow --------------------------------------------------------------------------


async def test_authorize_consent_list_status_refresh_and_disconnect(
    w: World, acme: Company, engine: AsyncEngine
) -> None:
    """What a frontend does from GraphQL alone, with the browser's two hops in between."""
    alice = acme.alice

    url = ok(await gql(w.client, alice, AUTHORIZE, {"provider": "fake"}))["authorizeConnection"]
    assert url.startswith(w.fake.url + "/authorize?")
    query = parse_qs(urlsplit(url).query)
    assert query["client_id"] == [w.provider.client_id]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert len(query["state"][0]) >= 32
    assert query["redirect_uri"] == ["http://test/api/connections/callback/fake"]
    assert await pending_states(engine, alice) == 1  # the mutation committed its state

    outcome = await w.callback(await w.consent(url))
    assert outcome == {"_to": APP_URL + "/", "connection": "fake", "status": "connected"}
    [row] = await stored(engine, alice)

    [connection] = await listed(w, alice)
    assert connection["id"] == str(row["id"]) and connection["userId"] == alice.id
    assert connection["provider"] == "fake" and connection["status"] == "CONNECTED"
    assert connection["account"] == w.provider.account["email"] and connection["scopes"] == ["openid", "email"]
    assert connection["error"] is None and connection["createdAt"] and connection["updatedAt"]

    status = ok(await gql(w.client, alice, STATUS, {"provider": "fake"}))["connectionStatus"]
    assert status["connected"] is True and status["status"] == "CONNECTED"
    assert status["connectionId"] == connection["id"] and status["account"] == connection["account"]
    assert w.provider.refreshes == 0

    # The access token expires: connectionStatus refreshes it first.
    await expire(engine, row["id"])
    status = ok(await gql(w.client, alice, STATUS, {"provider": "fake"}))["connectionStatus"]
    assert status["connected"] is True and status["status"] == "CONNECTED" and w.provider.refreshes == 1
    expires_at = dt.datetime.fromisoformat(status["expiresAt"])
    assert expires_at > dt.datetime.now(dt.UTC) + dt.timedelta(minutes=50)
    [after] = await stored(engine, alice)
    assert after["access_token"] != row["access_token"]

    result = ok(await gql(w.client, alice, DISCONNECT, {"id": connection["id"]}))["disconnect"]
    assert result == {"id": connection["id"], "deleted": True, "revoked": True, "revokeError": None}
    assert w.provider.issued[-1] in w.provider.revoked
    assert await listed(w, alice) == [] and await stored(engine, alice) == []
    status = ok(await gql(w.client, alice, STATUS, {"provider": "fake"}))["connectionStatus"]
    assert status["connected"] is False and status["connectionId"] is None and status["status"] is None


async def test_no_type_of_the_connections_api_has_a_token_field(w: World, acme: Company) -> None:
    """Tokens never leave the server: the schema has nowhere to put one."""
    for type_name in ("Connection", "ConnectionStatus", "Disconnected"):
        query = "query($name: String!) { __type(name: $name) { fields { name } } }"
        fields = [
            f["name"] for f in ok(await gql(w.client, acme.alice, query, {"name": type_name}))["__type"]["fields"]
        ]
        assert "id" in fields or "provider" in fields, fields
        assert not [f for f in fields if "token" in f.lower()], (type_name, fields)


# --- 401 -------------------------------------------------------------------------------------


async def test_every_field_needs_a_token(w: World, acme: Company, engine: AsyncEngine) -> None:
    await connect(w, acme.alice)
    [row] = await stored(engine, acme.alice)
    states = await pending_states(engine)
    for query, variables in (
        (CONNECTIONS, {}),
        (STATUS, {"provider": "fake"}),
        (AUTHORIZE, {"provider": "fake"}),
        (AUTHORIZE, {"provider": "fake", "to": "/settings"}),
        (DISCONNECT, {"id": str(row["id"])}),
    ):
        result = await gql(w.client, None, query, variables)
        failed(result, "UNAUTHENTICATED")
        assert result["data"] is None, (query, result)
    assert await pending_states(engine) == states
    assert [r["id"] for r in await stored(engine, acme.alice)] == [row["id"]]
    assert w.provider.revoked == set()


async def test_an_anonymous_caller_learns_nothing_about_providers(w: World) -> None:
    """401 comes before 404, as on REST: an unknown provider must not tell who is configured."""
    for query in (STATUS, AUTHORIZE):
        result = await gql(w.client, None, query, {"provider": "nope"})
        message = failed(result, "UNAUTHENTICATED")
        assert "fake" not in message


# --- 404 and 403 -----------------------------------------------------------------------------


async def test_unknown_providers_are_not_found(w: World, acme: Company, engine: AsyncEngine) -> None:
    for query in (STATUS, AUTHORIZE):
        failed(await gql(w.client, acme.alice, query, {"provider": "nope"}), "NOT_FOUND")
    message = failed(await gql(w.client, acme.alice, AUTHORIZE, {"provider": "github"}), "NOT_FOUND")
    assert "FLUXOPUS_OAUTH_GITHUB_CLIENT_ID" in message
    assert await pending_states(engine, acme.alice) == 0


async def test_only_the_owner_disconnects(w: World, acme: Company, globex: Company, engine: AsyncEngine) -> None:
    """Invisible is NOT_FOUND (a colleague, another company, no such id); visible but not yours is FORBIDDEN."""
    await connect(w, acme.alice)
    [row] = await stored(engine, acme.alice)
    id = str(row["id"])
    failed(await gql(w.client, acme.alice, DISCONNECT, {"id": str(uuid.uuid4())}), "NOT_FOUND")
    failed(await gql(w.client, globex.admin, DISCONNECT, {"id": id}), "NOT_FOUND")
    failed(await gql(w.client, globex.alice, DISCONNECT, {"id": id}), "NOT_FOUND")
    failed(await gql(w.client, acme.bob, DISCONNECT, {"id": id}), "NOT_FOUND")
    result = await gql(w.client, acme.admin, DISCONNECT, {"id": id})
    failed(result, "FORBIDDEN")
    assert result["data"] is None
    assert [r["id"] for r in await stored(engine, acme.alice)] == [row["id"]]
    assert w.provider.revoked == set()  # nobody's failed attempt reached the provider
    assert [c["id"] for c in await listed(w, acme.alice)] == [id]


# --- bad input -------------------------------------------------------------------------------


async def test_disconnect_needs_a_uuid(w: World, acme: Company) -> None:
    message = failed(await gql(w.client, acme.alice, DISCONNECT, {"id": "not-a-uuid"}), "BAD_USER_INPUT")
    assert "not-a-uuid" in message


async def test_redirect_to_off_the_app_origin_is_refused_and_stores_no_state(
    w: World, acme: Company, engine: AsyncEngine
) -> None:
    for to in ("https://evil.example/", "//evil.example/", "https://app.example.com@evil.example/"):
        result = await gql(w.client, acme.alice, AUTHORIZE, {"provider": "fake", "to": to})
        assert "redirect_to" in failed(result, "BAD_USER_INPUT")
        assert result["data"] is None
    assert await pending_states(engine, acme.alice) == 0


async def test_page_bounds_are_checked(w: World, acme: Company) -> None:
    for variables in ({"limit": 0}, {"limit": 1000}, {"offset": -1}):
        result = await gql(w.client, acme.alice, CONNECTIONS, variables)
        failed(result, "BAD_USER_INPUT")
        assert result["data"] is None
    assert await listed(w, acme.alice) == []  # and the default page is fine


@pytest.mark.parametrize(
    "document",
    [
        "{ connectionStatus(provider: 5) { connected } }",
        "{ connectionStatus { connected } }",
        '{ connections(limit: "ten") { id } }',
        "{ connections { accessToken } }",
        "mutation { disconnect(id: 5.5) { id } }",
        'mutation { authorizeConnection(provider: "fake", redirectTo: 7) }',
    ],
    ids=["int-provider", "missing-provider", "string-limit", "unknown-field", "float-id", "int-redirect"],
)
async def test_documents_the_schema_refuses(w: World, acme: Company, engine: AsyncEngine, document: str) -> None:
    result = await gql(w.client, acme.alice, document)
    assert error_codes(result) and set(error_codes(result)) == {"BAD_USER_INPUT"}, result
    assert result.get("data") is None
    assert await pending_states(engine, acme.alice) == 0


# --- isolation -------------------------------------------------------------------------------


async def test_admins_see_their_company_members_only_themselves(w: World, acme: Company, globex: Company) -> None:
    for user in (acme.alice, acme.bob, globex.alice):
        assert (await connect(w, user))["status"] == "connected"

    assert {c["userId"] for c in await listed(w, acme.admin)} == {acme.alice.id, acme.bob.id}
    assert [c["userId"] for c in await listed(w, acme.alice)] == [acme.alice.id]
    assert [c["userId"] for c in await listed(w, acme.bob)] == [acme.bob.id]
    assert [c["userId"] for c in await listed(w, globex.admin)] == [globex.alice.id]
    assert [c["userId"] for c in await listed(w, globex.alice)] == [globex.alice.id]
    assert await listed(w, globex.bob) == []

    # Status is about the caller's own connection, admins included.
    for user, connected in ((acme.admin, False), (acme.alice, True), (globex.bob, False), (globex.alice, True)):
        status = ok(await gql(w.client, user, STATUS, {"provider": "fake"}))["connectionStatus"]
        assert status["connected"] is connected, user


async def test_pages_of_an_admin_list_hold_the_company_once(w: World, acme: Company, globex: Company) -> None:
    for user in (acme.alice, acme.bob, acme.admin, globex.alice):
        await connect(w, user)
    pages = [
        ok(await gql(w.client, acme.admin, CONNECTIONS, {"limit": 2, "offset": offset}))["connections"]
        for offset in (0, 2, 4)
    ]
    assert [len(p) for p in pages] == [2, 1, 0]
    assert sorted(c["userId"] for p in pages for c in p) == sorted([acme.alice.id, acme.bob.id, acme.admin.id])


# --- one operation, one transaction ----------------------------------------------------------


async def test_a_failed_field_rolls_back_the_whole_operation(w: World, acme: Company, engine: AsyncEngine) -> None:
    """RlsOperation commits only an operation without errors: the state `a` stored is gone with `b`'s 404."""
    document = f'mutation {{ a: authorizeConnection(provider: "fake") b: disconnect(id: "{uuid.uuid4()}") {{ id }} }}'
    result = await gql(w.client, acme.alice, document)
    assert error_codes(result) == ["NOT_FOUND"], result
    assert result["data"] is None  # b is non-null, so its error nulls the whole data, `a`'s URL with it
    assert await pending_states(engine, acme.alice) == 0
    # The same `a` alone commits: the rollback above came from `b`, not from authorizeConnection.
    ok(await gql(w.client, acme.alice, 'mutation { a: authorizeConnection(provider: "fake") }'))
    assert await pending_states(engine, acme.alice) == 1


async def test_a_successful_operation_of_two_fields_commits_both(w: World, acme: Company, engine: AsyncEngine) -> None:
    """The other side of the rule: the rollback is for failures only."""
    document = 'mutation { a: authorizeConnection(provider: "fake") b: authorizeConnection(provider: "fake") }'
    data = ok(await gql(w.client, acme.alice, document))
    assert data["a"] != data["b"]
    assert await pending_states(engine, acme.alice) == 2
    assert (await w.callback(await w.consent(data["b"])))["status"] == "connected"
