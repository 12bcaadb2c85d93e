"""The typed request context shared by GraphQL resolvers and REST routes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from uuid import UUID

from fluxopus.ai.services import AiServices
from fluxopus.auth.mail import Mail
from fluxopus.db.session import RlsTransaction
from fluxopus.errors import DomainError, Unauthorized
from fluxopus.integrations.oauth import OAuth
from fluxopus.models.common import CountMode

if TYPE_CHECKING:
    from fluxopus.resolvers.live_hub import LiveHub


@dataclass
class Context:
    """One per REST request or GraphQL operation: the caller's claims, their transaction, the AI services."""

    db: RlsTransaction
    claims: dict[str, Any] | None
    ai: AiServices
    oauth: OAuth
    mail: Mail
    auth_error: DomainError | None = None  # why claims is None: Unauthorized, or Unavailable
    live: LiveHub | None = None  # the process' live events (resolvers/live.py); None when off
    cache: dict[str, Any] = field(default_factory=dict)
    # How lists make their total (Page.total): REST sets it from the request's `Prefer: count=…`; None
    # (GraphQL, or REST without the preference) counts nothing beyond what the page itself tells.
    count_mode: CountMode | None = None

    @property
    def user_id(self) -> UUID:
        if self.claims is None:
            raise self.auth_error or Unauthorized("Authentication required")
        return UUID(self.claims["sub"])

    def assume(self, claims: dict[str, Any]) -> None:
        """Act for this user from now on (see RlsTransaction.assume)."""
        self.db.assume(claims)
        self.claims, self.auth_error = claims, None
