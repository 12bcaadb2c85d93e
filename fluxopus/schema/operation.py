"""Each GraphQL operation runs in its own RLS transaction, and errors get `extensions.code`.

A WebSocket carries many operations on one transport context, so the per-operation
`Context` (claims + transaction + loaders) replaces it for the duration of execution.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.fastapi import BaseContext
from strawberry.types import ExecutionContext

from fluxopus.db.session import DATABASE_UNAVAILABLE, database_gone
from fluxopus.errors import DomainError, Unauthorized, Unavailable
from fluxopus.requestinfo import note_operation
from fluxopus.runtime import Runtime
from fluxopus.schema.limits import Documents

log = logging.getLogger(__name__)


class TransportContext(BaseContext):
    """Built once per HTTP request or WebSocket connection: who is calling."""

    def __init__(self, runtime: Runtime, documents: Documents, compiled_statements: Any = None) -> None:
        super().__init__()
        self.runtime = runtime
        self.documents = documents
        self.compiled_statements = compiled_statements  # schema/compiled.Statements, or None: off
        self.claims: dict[str, Any] | None = None
        self.auth_error: DomainError | None = Unauthorized(
            "Missing Authorization header: send 'Authorization: Bearer <jwt>'"
        )
        self.watcher: asyncio.Task[None] | None = None  # a WebSocket's (schema/router.py)

    async def authenticate(self, token_or_header: str | None, *, header: bool = True) -> None:
        try:
            if header:
                self.claims = await self.runtime.authenticate(token_or_header)
            else:
                self.claims = await self.runtime.authenticate_token(token_or_header or "")
            self.auth_error = None
        except (Unauthorized, Unavailable) as exc:  # answered by every field that needs a caller
            self.claims, self.auth_error = None, exc


class RlsOperation(SchemaExtension):
    async def on_operation(self) -> AsyncIterator[None]:
        transport = self.execution_context.context
        ctx = transport.runtime.context(transport.claims, transport.auth_error)
        self.execution_context.context = ctx
        try:
            yield
        except BaseException:
            await ctx.db.rollback()
            raise
        finally:
            self.execution_context.context = transport
            _note_operation(self.execution_context)
        result = self.execution_context.result
        # A failed field rolls the whole operation back: bad input changes nothing.
        if result is not None and not getattr(result, "errors", None):
            await ctx.db.commit()
        else:
            await ctx.db.rollback()


def _note_operation(context: ExecutionContext) -> None:
    """The operation's name and type for the access log; nothing for a document that names none."""
    if context.graphql_document is None:
        return
    try:
        kind = context.operation_type.value
    except RuntimeError:  # no operation of that name in the document: Strawberry answers the error
        return
    note_operation(context.operation_name, kind)


def error_code(error: GraphQLError) -> str:
    if error.extensions and "code" in error.extensions:
        return str(error.extensions["code"])  # a limit that named itself (schema/limits.py)
    original = error.original_error
    if isinstance(original, DomainError):
        return original.code
    if original is None or isinstance(original, GraphQLError):
        return "BAD_USER_INPUT"  # syntax, validation and variable coercion: the client's document
    if error.path is None and isinstance(original, ValueError | TypeError):
        return "BAD_USER_INPUT"  # a scalar refusing a variable's value
    if database_gone(original):
        return Unavailable.code
    return "INTERNAL_SERVER_ERROR"


class FluxopusSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        for error in errors:
            code = error_code(error)
            if code == "INTERNAL_SERVER_ERROR":
                log.error("GraphQL resolver failed", exc_info=error.original_error)
                error.message = "Internal server error"
            elif isinstance(error.original_error, DomainError):
                error.message = error.original_error.message
            elif code == Unavailable.code:
                error.message = DATABASE_UNAVAILABLE
            error.extensions = {**(error.extensions or {}), "code": code}
