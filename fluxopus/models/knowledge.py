"""Knowledge items, declared once (see models/entity.py); the list filter and search."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import Field, StringConstraints

from fluxopus.models.common import Input, Output, PageQuery
from fluxopus.models.entity import Entity, Key, Server, Write

MAX_CONTENT_BYTES = 1_048_576


class KnowledgeVisibility(StrEnum):
    company = "company"
    private = "private"


class IndexStatus(StrEnum):
    pending = "pending"
    indexed = "indexed"
    failed = "failed"


class SearchMode(StrEnum):
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
    update_doc="Any subset of KnowledgeCreate; a change of title or content re-indexes the item.",
):
    id: Annotated[UUID, Key()]
    company_id: Annotated[UUID, Server()]
    owner_id: Annotated[UUID, Server()]
    title: Annotated[str, Write(min_length=1, max_length=500)]
    content: Annotated[
        str,
        Write(
            min_length=1,
            check=_at_most_1mb,
            input_doc="Plain text or Markdown, up to 1 MB; embedded in the background",
        ),
    ]
    source_url: Annotated[str | None, Write(max_length=2048, pattern=r"^https?://\S+$")]
    visibility: Annotated[KnowledgeVisibility, Write(default=KnowledgeVisibility.company)]
    status: Annotated[IndexStatus, Server("pending until the background worker has embedded it")]
    error: Annotated[str | None, Server("Why indexing failed, when status is failed")]
    created_at: Annotated[dt.datetime, Server()]
    updated_at: Annotated[dt.datetime, Server()]


class KnowledgeFilter(PageQuery):
    q: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Case-insensitive search in titles"
    )


class SearchQuery(Input):
    model_config = Input.model_config | {"extra": "ignore"}

    q: Annotated[str, StringConstraints(min_length=1, max_length=1000)] = Field(description="What to look for")
    limit: int = Field(default=10, ge=1, le=50)
    mode: SearchMode = SearchMode.hybrid


class SearchHit(Output):
    item: KnowledgeItem
    score: float = Field(description="Higher is better; comparable only within one search")
    snippet: str = Field(description="The best matching passage")
