"""What the access log says about a request that only code deep inside it learns: who is calling,
which GraphQL operation it is, whether it was a failed sign-in.

The access log middleware (fluxopus/observability.py) puts a fresh `RequestInfo` in `current` for
each request; the code that verifies the token or reads the operation fills it in. A context
variable holding a mutable object reaches every layer without threading it through signatures, and
tasks started inside the request (which run in a copy of the context) fill in the same object.
Outside a request (CLI commands, the indexer) there is none, and noting is a no-op."""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any


class RequestInfo:
    __slots__ = ("request_id", "user_id", "company_id", "operation", "operation_type", "sign_in_failure")

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.user_id: str | None = None
        self.company_id: str | None = None
        self.operation: str | None = None  # a GraphQL operation's name, "anonymous" when it has none
        self.operation_type: str | None = None  # query, mutation, subscription
        self.sign_in_failure: str | None = None  # GoTrue's error_code of a refused sign-in


current: ContextVar[RequestInfo | None] = ContextVar("fluxopus_request", default=None)


def note_caller(claims: Mapping[str, Any]) -> None:
    """Verified claims: the user (`sub`) and, for tokens that name it, the company."""
    info = current.get()
    if info is None:
        return
    info.user_id = str(claims.get("sub"))
    metadata = claims.get("app_metadata")
    company = metadata.get("company_id") if isinstance(metadata, Mapping) else None
    info.company_id = str(company) if company is not None else None


def note_operation(name: str | None, operation_type: str) -> None:
    info = current.get()
    if info is not None:
        info.operation = name or "anonymous"
        info.operation_type = operation_type


def note_sign_in_failure(reason: str) -> None:
    info = current.get()
    if info is not None:
        info.sign_in_failure = reason
