"""Domain errors: raised once in resolvers/auth, mapped once per API layer.

REST turns them into a status code and `{"error": message}` (rest_compat/errors.py);
GraphQL into an error with `extensions.code` (schema/extension.py).
"""

from __future__ import annotations


class DomainError(Exception):
    status: int = 400
    code: str = "BAD_USER_INPUT"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Invalid(DomainError):
    status = 400
    code = "BAD_USER_INPUT"


class Malformed(Invalid):
    """The request could not be read at all (not JSON, no body, an id that is not a UUID), as opposed
    to one that was read and refused: REST tells them apart (`bad_request`, `validation_failed`)."""


class Unauthorized(DomainError):
    status = 401
    code = "UNAUTHENTICATED"


class Forbidden(DomainError):
    status = 403
    code = "FORBIDDEN"


class NotFound(DomainError):
    status = 404
    code = "NOT_FOUND"


class Conflict(DomainError):
    status = 409
    code = "CONFLICT"


class QuotaExceeded(DomainError):
    """The company's knowledge storage is full: nothing was stored."""

    status = 409
    code = "QUOTA_EXCEEDED"


class BudgetExceeded(DomainError):
    status = 429
    code = "BUDGET_EXCEEDED"

    def __init__(self, message: str = "Token budget exceeded") -> None:
        super().__init__(message)


class Unavailable(DomainError):
    """The server is saturated (no database connection came free in time): retry shortly."""

    status = 503
    code = "UNAVAILABLE"

    def __init__(self, message: str = "The server is busy; retry in a few seconds") -> None:
        super().__init__(message)


class FellBehind(Unavailable):
    """A live subscription whose events kept waiting for its client: it was closed, the others go on.
    Only GraphQL streams raise it; its own code tells it from a busy server."""

    code = "SLOW_CONSUMER"
