"""Tags and their assignment to entities."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from sqlalchemy import Column, Table, Text

from fluxopus.models.common import documented
from fluxopus.models.entity import Entity, Key, Server, Write, column_type, metadata
from fluxopus.models.knowledge import KnowledgeItem
from fluxopus.models.skills import Skill
from fluxopus.models.tasks import Task


# What can carry tags: the keys of TAGGABLE, and the rows of the `taggable_types` table.
@documented(task="A task", skill="A skill", knowledge="A knowledge item")
class EntityType(StrEnum):
    """What kind of thing carries tags."""

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


class Tag(
    Entity,
    table="tags",
    create=True,
    update=True,
    create_doc="A new tag of the caller's company.",
    update_doc="Any subset of TagCreate; `null` clears the color.",
):
    """A label the company puts on tasks, skills and knowledge items; everyone in the company sees its tags."""

    id: Annotated[UUID, Key("The tag's id (a UUID)")]
    company_id: Annotated[UUID, Server("The company it belongs to: the caller's")]
    name: Annotated[str, Write(min_length=1, max_length=50, doc="Its name, 1–50 characters, unique in the company")]
    color: Annotated[
        str | None,
        Write(pattern=r"^#[0-9A-Fa-f]{6}$", doc="A color to show it in, #RRGGBB; null when none", input_doc="#RRGGBB"),
    ]
    created_by: Annotated[UUID, Server("The user who created it")]
    created_at: Annotated[dt.datetime, Server("When it was created")]


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

    entity_type: EntityType = Field(
        validation_alias=AliasChoices("entityType", "entity_type"), description="What kind of thing it is"
    )
    entity_id: UUID = Field(validation_alias=AliasChoices("entityId", "entity_id"), description="Its id")


class AssignTags(BaseModel):
    """Tags to put on a task, skill or knowledge item the caller can see."""

    model_config = ConfigDict(extra="forbid")

    entity_type: EntityType = Field(
        validation_alias=AliasChoices("entityType", "entity_type"), description="What kind of thing to tag"
    )
    entity_id: UUID = Field(validation_alias=AliasChoices("entityId", "entity_id"), description="Its id")
    tag_ids: list[UUID] = Field(
        validation_alias=AliasChoices("tagIds", "tag_ids"),
        max_length=100,
        description="The company's tags to put on it (at most 100); tags it has already stay",
    )
    replace: bool = Field(default=False, description="Remove the entity's other tags")
