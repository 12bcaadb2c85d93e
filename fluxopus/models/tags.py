"""Tags and their assignment to entities."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import FetchedValue
from sqlmodel import Field as Column
from sqlmodel import SQLModel

from fluxopus.models.common import Input, Output, omittable

TagName = Annotated[str, StringConstraints(min_length=1, max_length=50)]
Color = Annotated[str, StringConstraints(pattern=r"^#[0-9A-Fa-f]{6}$")]


class EntityType(StrEnum):
    task = "task"
    skill = "skill"
    knowledge = "knowledge"


class TagRow(SQLModel, table=True):
    __tablename__ = "tags"

    id: UUID | None = Column(default=None, primary_key=True, sa_column_kwargs={"server_default": FetchedValue()})
    company_id: UUID | None = None
    name: str
    color: str | None = None
    created_by: UUID | None = None
    created_at: dt.datetime | None = None


class EntityTagRow(SQLModel, table=True):
    __tablename__ = "entity_tags"

    tag_id: UUID = Column(primary_key=True)
    entity_type: str = Column(primary_key=True)
    entity_id: UUID = Column(primary_key=True)
    company_id: UUID | None = None
    created_at: dt.datetime | None = None


class TagCreate(Input):
    name: TagName
    color: Color | None = Field(default=None, description="#RRGGBB")


class TagUpdate(Input):
    name: TagName = omittable()
    color: Color | None = None


class Tag(Output):
    id: UUID
    company_id: UUID
    name: str
    color: str | None
    created_by: UUID
    created_at: dt.datetime


# /tags/entity speaks camelCase (entityType, entityId, tagIds); snake_case is accepted too.
class EntityRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    entity_type: EntityType = Field(validation_alias=AliasChoices("entityType", "entity_type"))
    entity_id: UUID = Field(validation_alias=AliasChoices("entityId", "entity_id"))


class AssignTags(BaseModel):
    model_config = ConfigDict(extra="forbid")

    entity_type: EntityType = Field(validation_alias=AliasChoices("entityType", "entity_type"))
    entity_id: UUID = Field(validation_alias=AliasChoices("entityId", "entity_id"))
    tag_ids: list[UUID] = Field(validation_alias=AliasChoices("tagIds", "tag_ids"), max_length=100)
    replace: bool = Field(default=False, description="Remove the entity's other tags")
