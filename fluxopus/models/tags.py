"""Tags and their assignment to entities."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from sqlalchemy import Column, Table, Text

from fluxopus.models.entity import Entity, Key, Server, Write, column_type, metadata
from fluxopus.models.knowledge import KnowledgeItem
from fluxopus.models.skills import Skill
from fluxopus.models.tasks import Task


# What can carry tags: the keys of TAGGABLE, and the rows of the `taggable_types` table.
class EntityType(StrEnum):
    task = "task"
    skill = "skill"
    knowledge = "knowledge"


# The registry of taggable entities. SQL has its own (migration 011: the `taggable_types` table that
# drives the entity_tags check, can_read_entity and the delete triggers); tests/test_declarations.py
# keeps the two equal. The loaders and the GraphQL `tags` fields are made from this one.
TAGGABLE: dict[EntityType, type[Entity]] = {
    EntityType.task: Task,
    EntityType.skill: Skill,
    EntityType.knowledge: KnowledgeItem,
}


class Tag(Entity, table="tags", create=True, update=True):
    id: Annotated[UUID, Key()]
    company_id: Annotated[UUID, Server()]
    name: Annotated[str, Write(min_length=1, max_length=50)]
    color: Annotated[str | None, Write(pattern=r"^#[0-9A-Fa-f]{6}$", input_doc="#RRGGBB")]
    created_by: Annotated[UUID, Server()]
    created_at: Annotated[dt.datetime, Server()]


# Which tag is on which entity: a table only, shown through each entity's `tags`.
entity_tags = Table(
    "entity_tags",
    metadata,
    Column("tag_id", column_type(UUID), primary_key=True),
    Column("entity_type", Text, primary_key=True),
    Column("entity_id", column_type(UUID), primary_key=True),
    Column("company_id", column_type(UUID), nullable=False),
    Column("created_at", column_type(dt.datetime), nullable=False),
)


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
