"""Skill tools as skills declare them: the built-in tools' catalogue, and the shape of a `tools` list.

Built-in tools are declared by name ({"name": "github.list_issues"}) and act with the caller's own
connection to their provider; HTTP tools ({name, description, parameters, url, method}) call a URL whose
host the server allows (checked when a skill is saved, resolvers/skills.py, and at every call,
ai/tools.py, which also makes the calls).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jsonschema

MAX_TOOLS = 20  # per skill
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_HTTP_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_SEGMENT = {"type": "string", "pattern": r"^[A-Za-z0-9_.-]{1,100}$"}  # one URL path segment, nothing more


@dataclass(frozen=True)
class BuiltInTool:
    name: str  # as skills declare it: <provider>.<action>
    provider: str  # the OAuth provider whose connection it uses (integrations/providers.BUILT_IN)
    description: str
    parameters: dict[str, Any]  # a JSON Schema object


def _object(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


BUILT_IN_TOOLS: dict[str, BuiltInTool] = {
    tool.name: tool
    for tool in (
        BuiltInTool(
            "github.list_issues",
            "github",
            "List a GitHub repository's issues (newest first)",
            _object(
                {
                    "owner": _SEGMENT | {"description": "The repository's owner (user or organisation)"},
                    "repo": _SEGMENT | {"description": "The repository's name"},
                    "state": {"type": "string", "enum": ["open", "closed", "all"], "description": "Default open"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "Default 20"},
                },
                ["owner", "repo"],
            ),
        ),
        BuiltInTool(
            "github.create_issue",
            "github",
            "Open an issue in a GitHub repository",
            _object(
                {
                    "owner": _SEGMENT | {"description": "The repository's owner (user or organisation)"},
                    "repo": _SEGMENT | {"description": "The repository's name"},
                    "title": {"type": "string", "minLength": 1, "maxLength": 256},
                    "body": {"type": "string", "maxLength": 65536, "description": "Markdown"},
                },
                ["owner", "repo", "title"],
            ),
        ),
        BuiltInTool(
            "slack.post_message",
            "slack",
            "Post a message to a Slack channel",
            _object(
                {
                    "channel": {"type": "string", "minLength": 1, "maxLength": 100, "description": "Id or #name"},
                    "text": {"type": "string", "minLength": 1, "maxLength": 40000},
                },
                ["channel", "text"],
            ),
        ),
        BuiltInTool(
            "notion.search",
            "notion",
            "Search the Notion pages and databases shared with the connection",
            _object(
                {
                    "query": {"type": "string", "maxLength": 500},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 50, "description": "Default 10"},
                },
                ["query"],
            ),
        ),
    )
}


def wire_name(name: str) -> str:
    """The name the model sees: the APIs allow letters, digits, _ and - only."""
    return name.replace(".", "_")


def _schema_problem(schema: Any) -> str | None:
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return "parameters must be a JSON Schema of type object"
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        return f"parameters is not a valid JSON Schema at {where}: {exc.message}"
    return None


def check_tools(tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A skill's `tools` as declared (ValueError says what is wrong); hosts are checked against the
    server's allow-list when the skill is saved (`refused_hosts`)."""
    if len(tools) > MAX_TOOLS:
        raise ValueError(f"at most {MAX_TOOLS} tools")
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        name = tool.get("name")
        where = f"tools[{i}]"
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where}: a name is required")
        if name in BUILT_IN_TOOLS:
            if set(tool) - {"name"}:
                raise ValueError(f"{where}: the built-in tool {name} takes nothing but its name")
        else:
            if "." in name and "url" not in tool:
                known = ", ".join(BUILT_IN_TOOLS)
                raise ValueError(f"{where}: unknown built-in tool {name!r} (built in: {known})")
            if not _HTTP_NAME.match(name) or wire_name(name) in {wire_name(b) for b in BUILT_IN_TOOLS}:
                raise ValueError(
                    f"{where}: an HTTP tool's name is 1–64 letters, digits, _ or -, starting with a letter"
                )
            extra = set(tool) - {"name", "description", "parameters", "url", "method"}
            if extra:
                raise ValueError(f"{where}: unknown field {sorted(extra)[0]!r}")
            description = tool.get("description")
            if not isinstance(description, str) or not 1 <= len(description) <= 1000:
                raise ValueError(f"{where}: a description of 1–1000 characters is required")
            if (problem := _schema_problem(tool.get("parameters"))) is not None:
                raise ValueError(f"{where}: {problem}")
            if tool.get("method", "POST") not in METHODS:
                raise ValueError(f"{where}: method must be one of {', '.join(METHODS)}")
            url = tool.get("url")
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or parts.username:
                raise ValueError(f"{where}: url must be an http(s) URL with a host (and no credentials)")
            if len(url or "") > 2000:
                raise ValueError(f"{where}: url is longer than 2000 characters")
        if wire_name(name) in seen:
            raise ValueError(f"{where}: {name} is declared twice")
        seen.add(wire_name(name))
    return tools
