"""The OpenAPI 3.0.3 document, generated from the same route table as the routes.

Pydantic emits JSON Schema 2020-12; OpenAPI 3.0 wants its own dialect, so `anyOf [X, null]`
becomes `nullable`, `const` becomes a one-value `enum`, and `$defs` move to components.
"""

from __future__ import annotations

from typing import Any, get_args, get_origin

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from fluxopus.models.connections import PROVIDER_NAME
from fluxopus.models.skills import RunEventType
from fluxopus.rest_compat.table import ROUTES, Route

REF = "#/components/schemas/{model}"

ERRORS = {
    "400": "Bad input: validation failed, malformed JSON or a bad UUID",
    "401": "Missing, malformed, expired or wrongly signed bearer token",
    "403": "Visible, but the caller may not change it",
    "404": "Not found, or not visible to the caller",
    "409": "Conflicts with an existing record, or the company's knowledge storage quota is used up",
    "413": "The request body is over the server's limit (1 MiB by default; 8 MiB for knowledge writes)",
    "429": "Token budget exceeded: the company's monthly model tokens are used up",
    "500": "Unexpected server error",
    "503": "The server is busy (no database connection came free in time) or its database is not available;"
    " retry after `Retry-After` seconds",
}


def _model_of(response: Any) -> tuple[type[BaseModel], bool]:
    if get_origin(response) is list:
        return get_args(response)[0], True
    return response, False


def to_openapi30(schema: Any) -> Any:
    if isinstance(schema, list):
        return [to_openapi30(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: to_openapi30(v) for k, v in schema.items() if k not in ("anyOf", "const", "examples")}
    if "const" in schema:
        out["enum"] = [schema["const"]]
    if "examples" in schema and schema["examples"]:
        out["example"] = schema["examples"][0]
    if "anyOf" in schema:
        variants = [to_openapi30(s) for s in schema["anyOf"]]
        non_null = [v for v in variants if v.get("type") != "null"]
        if len(non_null) < len(variants):
            out["nullable"] = True
        if len(non_null) == 1:
            only = non_null[0]
            if "$ref" in only:
                out["allOf"] = [only]
            else:
                out.update({k: v for k, v in only.items() if k not in out or k == "type"})
        else:
            out["anyOf"] = non_null
    return out


def _parameters(route: Route, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _path_schema(route, name)}
        for name in route.path_params
    ]
    if route.query is not None:
        query_schema = to_openapi30(route.query.model_json_schema(ref_template=REF, by_alias=True))
        for defname, definition in query_schema.pop("$defs", {}).items():
            schemas[defname] = definition
        required = set(query_schema.get("required", []))
        for name, prop in query_schema["properties"].items():
            param: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
            if "description" in prop:
                param["description"] = prop.pop("description")
            prop.pop("title", None)
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
            "X-Total-Count": {"description": "Rows matching, ignoring limit/offset", "schema": {"type": "integer"}}
        }
    if route.events is not None:
        success["content"]["text/event-stream"] = {"schema": _event_stream_schema(route, refs)}
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
            and (status != "413" or route.body is not None)
        ):
            responses[status] = {"$ref": f"#/components/responses/E{status}"}
    op: dict[str, Any] = {
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "parameters": _parameters(route, schemas),
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


def _event_stream_schema(route: Route, refs: dict[Any, dict[str, str]]) -> dict[str, Any]:
    """One Server-Sent Event, as SSE-aware tools (schemathesis) read a stream: its `event` name
    and its `data` line. OpenAPI 3.0 cannot say that `data` is JSON, so the description does."""
    assert route.events is not None
    event_model = refs[(route.events, "serialization")]["$ref"].rsplit("/", 1)[-1]
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"type": "string", "enum": [t.value for t in RunEventType]},
            "data": {
                "type": "string",
                "description": f"A `{event_model}` as JSON, without its `type`: `run.started` "
                "{run_id, skill_id, version, model}, `delta` {run_id, text} (many), then `run.completed` "
                "{run_id, output, usage} or `run.failed` {run_id, error}",
            },
        },
        "example": {"event": "delta", "data": '{"run_id": "5a60307e-810d-4485-89c6-b3aeaa793ce6", "text": "Hello"}'},
    }


def build_openapi(routes: list[Route] = ROUTES) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = []
    for route in routes:
        models.append((_model_of(route.response)[0], "serialization"))
        if route.events is not None:
            models.append((route.events, "serialization"))
        if route.body is not None:
            models.append((route.body, "validation"))
    unique = list(dict.fromkeys(models))
    refs, defs = models_json_schema(unique, ref_template=REF, by_alias=True)
    schemas: dict[str, Any] = {name: to_openapi30(s) for name, s in sorted(defs.get("$defs", {}).items())}
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string", "description": "Human-readable message"}},
    }
    paths: dict[str, Any] = {}
    for route in routes:
        paths.setdefault("/api" + route.path, {})[route.method.lower()] = _operation(route, schemas, refs)
    error_responses = {
        f"E{status}": {
            "description": description,
            "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
        }
        for status, description in ERRORS.items()
    }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Fluxopus REST API",
            "version": "0.1.0",
            "description": "REST compatibility layer over the Fluxopus GraphQL domain. "
            "Authenticate with `Authorization: Bearer <jwt>` (a Supabase session token). "
            'Errors are `{"error": "<message>"}`; lists are bare arrays with the total in `X-Total-Count`.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "tags": [{"name": t} for t in dict.fromkeys(r.tag for r in routes)],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            "schemas": dict(sorted(schemas.items())),
            "responses": error_responses,
        },
    }
