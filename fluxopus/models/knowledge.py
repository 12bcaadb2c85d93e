"""Knowledge items, declared once (see models/entity.py); the list filter and search."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import Field, StringConstraints

from fluxopus.models.common import Input, Output, PageQuery, Visibility, documented
from fluxopus.models.entity import Entity, Key, Server, Write

MAX_CONTENT_BYTES = 1_048_576


@documented(
    pending="Saved, waiting for the background worker to embed it: search does not find it yet",
    indexed="Embedded: search finds it",
    failed="Indexing failed; `error` says why. Saving the item again retries",
)
class IndexStatus(StrEnum):
    """Whether a knowledge item is searchable yet."""

    pending = "pending"
    indexed = "indexed"
    failed = "failed"


@documented(
    hybrid="Both rankings, fused (reciprocal rank fusion): the default",
    semantic="By meaning: the query's embedding against the items' chunks",
    keyword="PostgreSQL full-text search over title and content",
)
class SearchMode(StrEnum):
    """How a knowledge search ranks items."""

    hybrid = "hybrid"
    semantic = "semantic"
    keyword = "keyword"


def _at_most_1mb(content: str) -> str:
    if len(content.encode()) > MAX_CONTENT_BYTES:
        raise ValueError(f"content is over 1 MB ({MAX_CONTENT_BYTES} bytes of UTF-8)")
    return content


class KnowledgeItem(
    Entity,
    table="knowledge",
    # Bumped on every change of what is embedded, so a job finishing late cannot write old chunks.
    hidden={"revision": int},
    create=True,
    update=True,
    inputs_named="Knowledge",
    create_doc="A new knowledge item, owned by the caller; it is searchable once indexed.",
    update_doc="Any subset of KnowledgeCreate; a change of title or content re-indexes the item.",
):
    """A document the company's skills and searches draw on: its text is embedded in the background
    (`status`). Everyone in the company sees company items; private ones only their owner."""

    id: Annotated[UUID, Key("The item's id (a UUID)")]
    company_id: Annotated[UUID, Server("The company it belongs to: the caller's")]
    owner_id: Annotated[UUID, Server("The user who created it; they (or an admin) may change or delete it")]
    title: Annotated[str, Write(min_length=1, max_length=500, doc="Its title, 1–500 characters")]
    content: Annotated[
        str,
        Write(
            min_length=1,
            check=_at_most_1mb,
            doc="The text itself: plain text or Markdown, up to 1 MB of UTF-8",
            input_doc="Plain text or Markdown, up to 1 MB; embedded in the background",
        ),
    ]
    source_url: Annotated[
        str | None,
        Write(
            max_length=2048,
            pattern=r"^https?://\S+$",
            doc="Where the text comes from: an http(s) URL, kept as given; null when none",
        ),
    ]
    visibility: Annotated[
        Visibility, Write(default=Visibility.company, doc="Who sees it besides its owner (default company)")
    ]
    status: Annotated[IndexStatus, Server("pending until the background worker has embedded it")]
    error: Annotated[str | None, Server("Why indexing failed, when status is failed; otherwise null")]
    created_at: Annotated[dt.datetime, Server("When it was created")]
    updated_at: Annotated[dt.datetime, Server("When it last changed")]


class KnowledgeFilter(PageQuery):
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Case-insensitive search in titles"
    )


class SearchQuery(Input):
    model_config = Input.model_config | {"extra": "ignore"}

    q: Annotated[str, StringConstraints(min_length=1, max_length=1000)] = Field(
        description="What to look for: words or a question, 1–1000 characters"
    )
    limit: int = Field(default=10, ge=1, le=50, description="How many hits at most (1–50)")
    mode: SearchMode = Field(default=SearchMode.hybrid, description="How items are ranked (default hybrid)")


class SearchHit(Output):
    """A knowledge item a search found, with its best passage."""

    item: KnowledgeItem = Field(description="The item found (only items the caller may see are searched)")
    score: float = Field(description="Higher is better; comparable only within one search")
    snippet: str = Field(description="The best matching passage")
