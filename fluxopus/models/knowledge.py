"""Knowledge items and search: inputs, outputs and the mapped tables."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import AfterValidator, Field, StringConstraints
from sqlalchemy import FetchedValue
from sqlmodel import Field as Column
from sqlmodel import SQLModel

from fluxopus.models.common import Input, Output, PageQuery, omittable

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


Title = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Content = Annotated[str, StringConstraints(min_length=1), AfterValidator(_at_most_1mb)]
SourceUrl = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://\S+$")]


class KnowledgeRow(SQLModel, table=True):
    __tablename__ = "knowledge"

    id: UUID | None = Column(default=None, primary_key=True, sa_column_kwargs={"server_default": FetchedValue()})
    company_id: UUID | None = None
    owner_id: UUID | None = None
    title: str
    content: str
    source_url: str | None = None
    visibility: str | None = None
    status: str | None = None
    error: str | None = None
    revision: int | None = None
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


class KnowledgeChunkRow(SQLModel, table=True):
    __tablename__ = "knowledge_chunks"

    id: int | None = Column(default=None, primary_key=True)
    knowledge_id: UUID
    company_id: UUID
    position: int
    content: str
    model: str


class KnowledgeCreate(Input):
    title: Title
    content: Content = Field(description="Plain text or Markdown, up to 1 MB; embedded in the background")
    source_url: SourceUrl | None = None
    visibility: KnowledgeVisibility = KnowledgeVisibility.company


class KnowledgeUpdate(Input):
    """Any subset of KnowledgeCreate; a change of title or content re-indexes the item."""

    title: Title = omittable()
    content: Content = omittable()
    source_url: SourceUrl | None = None
    visibility: KnowledgeVisibility = omittable()


class KnowledgeItem(Output):
    id: UUID
    company_id: UUID
    owner_id: UUID
    title: str
    content: str
    source_url: str | None
    visibility: KnowledgeVisibility
    status: IndexStatus = Field(description="pending until the background worker has embedded it")
    error: str | None = Field(description="Why indexing failed, when status is failed")
    created_at: dt.datetime
    updated_at: dt.datetime


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
