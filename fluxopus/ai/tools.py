"""Skill tools: how one call is made (what a skill may declare is models/tools.py).

A skill's `tools` list holds built-in tools by name (`{"name": "github.list_issues"}`), which call a
provider's API with the run's caller's own connection, and generic HTTP tools
(`{"name", "description", "parameters", "url", "method"}`), which call a URL on the server's
allow-list (FLUXOPUS_TOOL_HOSTS). The run (resolvers/runs.py) checks a call's arguments against the
tool's JSON Schema before anything is called, finds the access token, and calls `call_built_in` or
`call_http`; what they return or raise (ToolError) is what the model reads.

Generic HTTP tools reach only listed hosts, and only public addresses: a host is resolved, every
address it resolves to is checked, and the request goes to the checked address (the name stays in
`Host` and TLS' SNI), so a DNS answer that changes in between cannot point it elsewhere. An address
in a private, loopback, link-local or otherwise non-global range is refused unless the allow-list
names that very address (how tests reach a fake on 127.0.0.1). Redirects are followed only to
allowed hosts, each hop checked the same way. Access tokens travel only in Authorization headers:
never in a URL, a result, an error, an event or a log line.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import jsonschema

from fluxopus.ai.providers import ToolSpec
from fluxopus.models.tools import BUILT_IN_TOOLS, wire_name

RESULT_LIMIT = 4000  # characters of a tool's answer the model reads
MAX_REDIRECTS = 3


class ToolError(Exception):
    """A call that did not happen or did not work, in words the model can act on. `refused`: it was never
    made (bad arguments, a host off the list); otherwise it was tried and failed."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.refused = refused


Call = Callable[[httpx.AsyncClient, str, str, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class BuiltIn:
    name: str  # as skills declare it: <provider>.<action>
    provider: str  # the OAuth provider whose connection it uses (integrations/providers.BUILT_IN)
    description: str
    parameters: dict[str, Any]
    call: Call  # (client, api_url, access_token, arguments) -> the answer, as JSON


async def _answer(response: httpx.Response, provider: str) -> Any:
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        message = body.get("message") if isinstance(body, dict) else None
        raise ToolError(f"{provider} answered HTTP {response.status_code}: {message or response.reason_phrase}")
    return body


def _github(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }


async def _github_list_issues(client: httpx.AsyncClient, api: str, token: str, args: dict[str, Any]) -> Any:
    url = f"{api}/repos/{args['owner']}/{args['repo']}/issues"
    params = {"state": args.get("state", "open"), "per_page": args.get("limit", 20)}
    issues = await _answer(await client.get(url, params=params, headers=_github(token)), "GitHub")
    return [
        {
            "number": i.get("number"),
            "title": i.get("title"),
            "state": i.get("state"),
            "url": i.get("html_url"),
            "author": (i.get("user") or {}).get("login"),
        }
        for i in issues or []
        if isinstance(i, dict)
    ]


async def _github_create_issue(client: httpx.AsyncClient, api: str, token: str, args: dict[str, Any]) -> Any:
    url = f"{api}/repos/{args['owner']}/{args['repo']}/issues"
    body = {"title": args["title"], **({"body": args["body"]} if args.get("body") else {})}
    issue = await _answer(await client.post(url, json=body, headers=_github(token)), "GitHub")
    return {"number": issue.get("number"), "title": issue.get("title"), "url": issue.get("html_url")}


async def _slack_post_message(client: httpx.AsyncClient, api: str, token: str, args: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    body = {"channel": args["channel"], "text": args["text"]}
    answer = await _answer(await client.post(f"{api}/chat.postMessage", json=body, headers=headers), "Slack")
    if not isinstance(answer, dict) or not answer.get("ok"):  # Slack's errors come in HTTP 200
        error = answer.get("error") if isinstance(answer, dict) else None
        raise ToolError(f"Slack refused the message: {error or 'unknown error'}")
    return {"ok": True, "channel": answer.get("channel"), "ts": answer.get("ts")}


async def _notion_search(client: httpx.AsyncClient, api: str, token: str, args: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {token}", "Notion-Version": "2022-06-28"}
    body = {"query": args["query"], "page_size": args.get("limit", 10)}
    answer = await _answer(await client.post(f"{api}/search", json=body, headers=headers), "Notion")
    found = []
    for item in (answer or {}).get("results") or []:
        title = "".join(
            t.get("plain_text", "")
            for prop in (item.get("properties") or {}).values()
            if isinstance(prop, dict) and prop.get("type") == "title"
            for t in prop.get("title") or []
        )
        found.append({"id": item.get("id"), "object": item.get("object"), "title": title, "url": item.get("url")})
    return found


_CALLS: dict[str, Call] = {
    "github.list_issues": _github_list_issues,
    "github.create_issue": _github_create_issue,
    "slack.post_message": _slack_post_message,
    "notion.search": _notion_search,
}
BUILT_IN: dict[str, BuiltIn] = {
    name: BuiltIn(tool.name, tool.provider, tool.description, tool.parameters, _CALLS[name])
    for name, tool in BUILT_IN_TOOLS.items()
}


def _authority(url: str) -> tuple[str, str]:
    """(host, host:port) of an http(s) URL, lower case, the port explicit."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower().rstrip(".")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    shown = f"[{host}]" if ":" in host else host
    return shown, f"{shown}:{port}"


def host_allowed(url: str, hosts: Sequence[str]) -> bool:
    return any(h in hosts for h in _authority(url))


def refused_hosts(tools: list[dict[str, Any]], hosts: Sequence[str]) -> list[str]:
    """The HTTP tools' URLs whose host the allow-list does not name."""
    return [str(t["url"]) for t in tools if "url" in t and not host_allowed(str(t["url"]), hosts)]


def offered(tools: list[dict[str, Any]]) -> list[ToolSpec]:
    """The model's view of a skill's tools."""
    specs = []
    for tool in tools:
        built_in = BUILT_IN.get(tool["name"])
        if built_in is not None:
            specs.append(ToolSpec(wire_name(built_in.name), built_in.description, built_in.parameters, built_in.name))
        else:
            specs.append(ToolSpec(tool["name"], tool["description"], tool["parameters"]))
    return specs


def check_arguments(schema: dict[str, Any], arguments: dict[str, Any]) -> None:
    """ToolError (refused) when the arguments do not match the tool's schema, saying where."""
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(arguments))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(root)"
        raise ToolError(f"Invalid arguments at {where}: {error.message[:300]}", refused=True)


def result_text(value: Any) -> str:
    """What the model reads of a tool's answer: JSON, cut to RESULT_LIMIT characters."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= RESULT_LIMIT else text[:RESULT_LIMIT] + " …(cut)"


async def call_built_in(tool: BuiltIn, api_url: str, token: str, arguments: dict[str, Any], timeout: float) -> Any:
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        try:
            return await tool.call(client, api_url, token, arguments)
        except httpx.TimeoutException:
            raise ToolError(f"{tool.provider} did not answer in time") from None
        except httpx.HTTPError as exc:
            raise ToolError(f"{tool.provider} could not be reached ({type(exc).__name__})") from None


async def call_http(tool: dict[str, Any], arguments: dict[str, Any], hosts: Sequence[str], timeout: float) -> Any:
    """A generic HTTP tool: GET with the arguments as query parameters, other methods with them as JSON."""
    method, url = str(tool.get("method", "POST")), str(tool["url"])
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
        for _ in range(MAX_REDIRECTS + 1):
            pinned, host_header, sni = await _pinned(url, hosts)
            request = client.build_request(
                method,
                pinned,
                params={k: v if isinstance(v, str) else json.dumps(v) for k, v in arguments.items()}
                if method == "GET"
                else None,
                json=arguments if method != "GET" else None,
                headers={"Host": host_header, "Accept": "application/json, text/plain;q=0.9"},
                extensions={"sni_hostname": sni} if sni else {},
            )
            try:
                response = await client.send(request)
            except httpx.TimeoutException:
                raise ToolError(f"{host_header} did not answer in time") from None
            except httpx.HTTPError as exc:
                raise ToolError(f"{host_header} could not be reached ({type(exc).__name__})") from None
            if not response.is_redirect:
                if response.status_code >= 400:
                    raise ToolError(f"{host_header} answered HTTP {response.status_code}: {response.text[:300]}")
                try:
                    return response.json()
                except ValueError:
                    return response.text
            url = urljoin(url, response.headers.get("location", ""))
            if response.status_code in (301, 302, 303) and method != "GET":
                method, arguments = "GET", {}
        raise ToolError(f"more than {MAX_REDIRECTS} redirects")


async def _pinned(url: str, hosts: Sequence[str]) -> tuple[str, str, str | None]:
    """The URL with its host replaced by the address it is allowed to reach, the Host header, and
    the name for TLS' SNI (https with a name only); ToolError (refused) when it may not be reached."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ToolError(f"{url[:200]} is not an http(s) URL", refused=True)
    if not host_allowed(url, hosts):
        raise ToolError(f"{parts.netloc} is not on the server's allow-list for tools", refused=True)
    host = parts.hostname.lower().rstrip(".")
    try:
        literal: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port, type=socket.SOCK_STREAM)
        except OSError:
            raise ToolError(f"{host} could not be resolved") from None
        addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        mapped = getattr(address, "ipv4_mapped", None) or address
        if not mapped.is_global and address != literal:
            raise ToolError(f"{host} resolves to a private or local address, which tools may not reach", refused=True)
    if not addresses:
        raise ToolError(f"{host} could not be resolved")
    chosen = addresses[0]
    netloc = f"[{chosen}]" if chosen.version == 6 else str(chosen)
    if parts.port:
        netloc += f":{parts.port}"
    pinned = urlunsplit(parts._replace(netloc=netloc))
    host_header = parts.netloc.rpartition("@")[2]
    return pinned, host_header, host if parts.scheme == "https" and literal is None else None
