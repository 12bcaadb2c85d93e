"""The OpenAPI 3.0.3 document, generated from the same route table as the routes.

Pydantic emits JSON Schema 2020-12; OpenAPI 3.0 wants its own dialect, so `anyOf [X, null]`
becomes `nullable`, `const` becomes a one-value `enum`, and `$defs` move to components.
"""

from __future__ import annotations

from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from fluxopus.models.common import COUNT_MODES
from fluxopus.models.connections import PROVIDER_NAME
from fluxopus.models.skills import RunEventType
from fluxopus.resolvers._sql import ESTIMATED_EXACT_UP_TO
from fluxopus.rest_compat.errors import CODES_BY_STATUS, ErrorCode
from fluxopus.rest_compat.table import ROUTES, Route

REF = "#/components/schemas/{model}"

# Documented on every operation they can answer (405 is not: it answers methods no operation has).
ERRORS = {
    "400": "Bad input",
    "401": "Not authenticated",
    "403": "Forbidden",
    "404": "Not found",
    "409": "Conflict",
    "413": "Body too large",
    "415": "Body not JSON",
    "429": "Token budget exceeded",
    "500": "Unexpected server error",
    "503": "Unavailable; retry after `Retry-After` seconds",
}

TAGS = {
    "Tasks": "A company's tasks and the time logged on them",
    "Tags": "Company-wide labels, and their assignment to tasks, skills and knowledge items",
    "Skills": "Versioned prompt templates that run on a model, their versions, runs and the token budget",
    "Knowledge": "Documents embedded for semantic and keyword search",
    "Connections": "OAuth links to third-party providers, made and used on the caller's behalf",
}


def _model_of(response: Any) -> tuple[type[BaseModel], bool]:
    if get_origin(response) is list:
        return get_args(response)[0], True
    return response, False


def to_openapi30(schema: Any, types: dict[str, str]) -> Any:
    """`types`: the `type` of each schema a `$ref` may point to, for the null branch of a nullable one."""
    if isinstance(schema, list):
        return [to_openapi30(s, types) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: to_openapi30(v, types) for k, v in schema.items() if k not in ("anyOf", "const", "examples")}
    if "const" in schema:
        out["enum"] = [schema["const"]]
    if "examples" in schema and schema["examples"]:
        out["example"] = schema["examples"][0]
    if "anyOf" in schema:
        variants = [to_openapi30(s, types) for s in schema["anyOf"]]
        non_null = [v for v in variants if v.get("type") != "null"]
        nullable = len(non_null) < len(variants)
        only = non_null[0] if len(non_null) == 1 else None
        if only is not None and (not nullable or ("type" in only and not {"$ref", "allOf", "anyOf"} & set(only))):
            out.update({k: v for k, v in only.items() if k not in out or k == "type"})
            if nullable:
                out["nullable"] = True
        elif nullable:
            # 3.0 has no null type, and `nullable` counts only beside a `type` (3.0.3): a `$ref` or a
            # union that may be null gets a branch that is null and nothing else.
            out["anyOf"] = [*non_null, {"type": _type_of(non_null[0], types), "nullable": True, "enum": [None]}]
        else:
            out["anyOf"] = non_null
    if "$ref" in out and len(out) > 1:
        # Keywords beside a `$ref` are ignored in 3.0: a default or a description must sit beside an allOf.
        out = {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _types(defs: dict[str, Any]) -> dict[str, str]:
    return {name: str(definition.get("type", "object")) for name, definition in defs.items()}


def _type_of(schema: dict[str, Any], types: dict[str, str]) -> str:
    if "$ref" in schema:
        return types[schema["$ref"].rsplit("/", 1)[-1]]
    return str(schema.get("type", "object"))


def _parameters(route: Route, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _path_schema(route, name)}
        for name in route.path_params
    ]
    if route.query is not None:
        raw = route.query.model_json_schema(ref_template=REF, by_alias=True)
        descriptions = {}
        for name, prop in raw["properties"].items():
            prop.pop("title", None)
            if "description" in prop:  # the parameter's, not its schema's
                descriptions[name] = prop.pop("description")
            # A query string cannot say null: an optional filter is one that is left out.
            if "anyOf" in prop:
                prop["anyOf"] = [v for v in prop["anyOf"] if v.get("type") != "null"]
            if "default" in prop and prop["default"] is None:
                del prop["default"]
        query_schema = to_openapi30(raw, _types(raw.get("$defs", {})))
        for defname, definition in query_schema.pop("$defs", {}).items():
            schemas[defname] = definition
        required = set(query_schema.get("required", []))
        for name, prop in query_schema["properties"].items():
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
            if name in descriptions:
                param["description"] = descriptions[name]
            param["schema"] = prop
            params.append(param)
    return params


def _path_schema(route: Route, name: str) -> dict[str, Any]:
    if name in route.names:
        return {"type": "string", "pattern": f"^{PROVIDER_NAME.pattern}$", "maxLength": 40, "example": "github"}
    return {"type": "string", "format": "uuid"}


def _operation(route: Route, schemas: dict[str, Any], refs: dict[Any, dict[str, str]]) -> dict[str, Any]:
    model, is_list = _model_of(route.response)
    ref = refs[(model, "serialization")]
    content_schema = {"type": "array", "items": ref} if is_list else ref
    success: dict[str, Any] = {
        "description": "Success",
        "content": {"application/json": {"schema": content_schema}},
    }
    if route.paginated:
        success["headers"] = {
            "X-Total-Count": {
                "description": "Rows matching, ignoring limit/offset. Sent when a count was asked for "
                "(`Prefer: count=…`: exact, or the planner's estimate), and without one only when the page "
                "itself tells the total: a page shorter than `limit` that has rows, or an empty page at offset 0",
                "schema": {"type": "integer", "minimum": 0},
            },
            "Preference-Applied": {
                "description": "`count=exact`, `count=planned` or `count=estimated`: the count preference "
                "honoured (RFC 7240); absent when none was sent or it was not one of these",
                "schema": {"type": "string", "enum": [f"count={mode}" for mode in COUNT_MODES]},
            },
        }
    if route.events is not None:
        success["content"]["text/event-stream"] = {"schema": _event_stream_schema(route)}
        success["description"] = "The default: an event stream. With `Accept: application/json`, the finished result"
    responses: dict[str, Any] = {str(route.status): success}
    if route.redirect:
        success["description"] = "With `Accept: application/json`: the URL the browser is sent to"
        responses["302"] = {
            "description": "The default: a redirect (browsers follow it)",
            "headers": {"Location": {"description": "Where the browser goes next", "schema": {"type": "string"}}},
        }
    for status in ERRORS:
        if (
            (status != "429" or route.budgeted)
            and (status not in ("401", "403") or not route.public)
            and (status not in ("413", "415") or route.body is not None)
        ):
            responses[status] = {"$ref": f"#/components/responses/E{status}"}
    parameters = _parameters(route, schemas)
    if route.events is not None or route.redirect:
        parameters.append(_accept_parameter(route))
    if route.paginated:
        parameters.append(PREFER_PARAMETER)
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": parameters,
        "responses": responses,
    }
    if not op["parameters"]:
        del op["parameters"]
    if route.public:
        op["security"] = []
    if route.body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(route.body, "validation")]}},
        }
    return op


# RFC 7240, as PostgREST: how a list's X-Total-Count is made (rest_compat/prefer.py).
PREFER_PARAMETER: dict[str, Any] = {
    "name": "Prefer",
    "in": "header",
    "required": False,
    "description": "Ask for the list's total in `X-Total-Count`: `count=exact` counts the matching rows "
    "(reads every one of them); `count=planned` gives PostgreSQL's planner estimate (cheap, approximate, never "
    "below the rows up to this page's end); `count=estimated` counts exactly when the planner expects at most "
    f"{ESTIMATED_EXACT_UP_TO:,} rows and estimates above that. Without it nothing is counted (the total is sent "
    "only when the page tells it). Other preferences may be listed beside it (`return=minimal, count=exact`); "
    "unknown ones are ignored",
    "schema": {"type": "string", "example": "count=exact"},
}


def _accept_parameter(route: Route) -> dict[str, Any]:
    """Which of an operation's two answers the client wants. OpenAPI says tools should ignore a
    parameter named Accept; generated clients (openapi-python-client, openapi-typescript) do not,
    and it is how their callers choose the JSON answer, which they can parse."""
    if route.redirect:
        media = ["text/html", "application/json"]
        description = '`application/json` for `{"url"}`; anything else (what a browser sends) for a redirect'
    else:
        media = ["text/event-stream", "application/json"]
        description = "`application/json` for the finished run as one JSON body; anything else for the event stream"
    return {
        "name": "Accept",
        "in": "header",
        "required": False,
        "description": description,
        "schema": {"type": "string", "enum": media},
    }


def _event_stream_schema(route: Route) -> dict[str, Any]:
    """One Server-Sent Event, as SSE-aware tools (schemathesis) read a stream: its `event` name
    and its `data` line. OpenAPI 3.0 cannot say that `data` is JSON, so the description does."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": [t.value for t in RunEventType]},
            "data": {
                "type": "string",
                "description": "The event as JSON: `run.started` {run_id, skill_id, version, model}, "
                "`delta` {run_id, text} (many), then `run.completed` {run_id, output, usage: "
                "{input_tokens, output_tokens}} or `run.failed` {run_id, error}",
            },
        },
        "example": {"event": "delta", "data": '{"run_id": "5a60307e-810d-4485-89c6-b3aeaa793ce6", "text": "Hello"}'},
    }


def build_openapi(routes: list[Route] = ROUTES) -> dict[str, Any]:
    # A run's events are not a schema of their own: in the stream, `data` is a string (described there).
    models: list[tuple[type[BaseModel], Any]] = []
    for route in routes:
        models.append((_model_of(route.response)[0], "serialization"))
        if route.body is not None:
            models.append((route.body, "validation"))
    unique = list(dict.fromkeys(models))
    refs, defs = models_json_schema(unique, ref_template=REF, by_alias=True)
    raw_schemas = defs.get("$defs", {})
    types = _types(raw_schemas)
    schemas: dict[str, Any] = {name: to_openapi30(s, types) for name, s in sorted(raw_schemas.items())}
    schemas["Error"] = _error_schema()
    paths: dict[str, Any] = {}
    for route in routes:
        paths.setdefault("/api" + route.path, {})[route.method.lower()] = _operation(route, schemas, refs)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Fluxopus REST API",
            "version": "0.1.0",
            "description": "REST compatibility layer over the Fluxopus GraphQL domain. "
            "Authenticate with `Authorization: Bearer <jwt>` (a Supabase session token). "
            'Errors are `{"error": "<message>", "code": "<code>"}` (`Error`); lists are bare arrays, with '
            "the total in `X-Total-Count` when asked for with `Prefer: count=exact|planned|estimated`.",
            "license": {"name": "Apache-2.0", "url": "https://www.apache.org/licenses/LICENSE-2.0"},
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": t, "description": TAGS[t]} for t in dict.fromkeys(r.tag for r in routes)],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": dict(sorted(schemas.items())),
            "responses": {f"E{status}": _error_response(status, summary) for status, summary in ERRORS.items()},
        },
    }


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error", "code"],
        "properties": {
            "error": {"type": "string", "description": "What went wrong, for people; may change between versions"},
            "code": {
                "type": "string",
                "enum": [code.value for code in ErrorCode],
                "description": "What went wrong, for programs: stable. Each status carries only its own codes "
                "(see each response)",
            },
        },
        "example": {"error": "Task not found", "code": "not_found"},
    }


def _error_response(status: str, summary: str) -> dict[str, Any]:
    codes = CODES_BY_STATUS[int(status)]
    listed = "; ".join(f"`{code.value}`: {meaning}" for code, meaning in codes.items())
    return {
        "description": f"{summary}. `code` is {listed}",
        "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
    }
