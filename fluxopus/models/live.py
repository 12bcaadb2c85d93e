"""Live events: what the subscriptions taskEvents, knowledgeEvents, skillRunEvents and tagEvents send.

Each event names its change (`event_id`, to resume from after a reconnection) and the row as the
subscriber may see it now; null when the change deleted it or hid it from them.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from uuid import UUID

from pydantic import BaseModel, Field, PrivateAttr

from fluxopus.models.common import Output, documented
from fluxopus.models.knowledge import IndexStatus, KnowledgeItem
from fluxopus.models.skills import SkillRun
from fluxopus.models.tags import EntityType, Tag
from fluxopus.models.tasks import Task, TaskStatus

EVENT_ID_DOC = (
    "The change's id: changes are numbered in commit order. Pass the last one seen as `lastEventId` when"
    " subscribing again to receive what was missed"
)
LAST_EVENT_ID_DOC = (
    "Resume after this event (the `eventId` of the last event received): first the changes committed since,"
    " then live ones. When they are no longer kept (see FLUXOPUS_LIVE_RETENTION) a RESYNC event comes first"
)


@documented(
    created="It was created (or, for a skill run, started)",
    updated="It changed (a run: finished, or its usage counted); the row is how it is now",
    deleted="It was deleted — or changed so that the subscriber may no longer see it",
    status="A knowledge item's indexing status changed (`status`, `error`)",
    assigned="A tag was put on an entity (`entityType`, `entityId`)",
    unassigned="A tag was taken off an entity (`entityType`, `entityId`)",
    resync=(
        "Changes were missed and cannot be replayed (the subscriber asked to resume from too long ago, or"
        " the server lost its database connection for longer than the retention): read the current state"
        " again with a query"
    ),
)
class ChangeType(StrEnum):
    """What happened."""

    created = "created"
    updated = "updated"
    deleted = "deleted"
    status = "status"
    assigned = "assigned"
    unassigned = "unassigned"
    resync = "resync"


class LiveEvent(Output):
    """What every live event has besides its fields: one event object is given to every subscription of a
    user that wants it, and GraphQL keeps its rendering per document here (schema/live.SharedEvents)."""

    _rendered: dict[Any, Any] = PrivateAttr(default_factory=dict)


class TaskEvent(LiveEvent):
    """A task created, changed or deleted (time logged on it changes its `totalMinutes`)."""

    type: ChangeType = Field(description="What happened")
    event_id: str = Field(description=EVENT_ID_DOC)
    task_id: UUID | None = Field(description="The task; null only for RESYNC")
    task: Task | None = Field(description="The task as the subscriber sees it now; null for DELETED and RESYNC")


class TaskEventFilter(BaseModel):
    """Which tasks' events to receive; all that are set must match (a task leaving a status or an
    assignee still matches: its last event shows it leave)."""

    status: TaskStatus | None = Field(default=None, description="Only tasks in this status (before or after)")
    assignee_id: UUID | None = Field(
        default=None, description="Only tasks assigned to this member (before or after); a colleague's id"
    )
    task_id: UUID | None = Field(default=None, description="Only this task (one the subscriber can read)")


class KnowledgeEvent(LiveEvent):
    """A knowledge item created, changed, deleted, or indexed (STATUS: pending → indexed or failed)."""

    type: ChangeType = Field(description="What happened")
    event_id: str = Field(description=EVENT_ID_DOC)
    item_id: UUID | None = Field(description="The item; null only for RESYNC")
    item: KnowledgeItem | None = Field(
        description="The item as the subscriber sees it now; null for DELETED and RESYNC"
    )
    status: IndexStatus | None = Field(default=None, description="For STATUS: the indexing status it reached")
    error: str | None = Field(default=None, description="For STATUS: why indexing failed, when it did")


class SkillRunChange(LiveEvent):
    """A skill run started (CREATED) or finished (UPDATED: status, usage); seen by its runner and admins."""

    type: ChangeType = Field(description="What happened")
    event_id: str = Field(description=EVENT_ID_DOC)
    run_id: UUID | None = Field(description="The run; null only for RESYNC")
    skill_id: UUID | None = Field(description="The skill it ran; null only for RESYNC")
    run: SkillRun | None = Field(description="The run as it is now; null for DELETED and RESYNC")


class TagEvent(LiveEvent):
    """A tag of the company created, renamed or deleted, or put on or taken off an entity."""

    type: ChangeType = Field(description="What happened")
    event_id: str = Field(description=EVENT_ID_DOC)
    tag_id: UUID | None = Field(description="The tag; null only for RESYNC")
    tag: Tag | None = Field(description="The tag as it is now; null for DELETED and RESYNC")
    entity_type: EntityType | None = Field(
        default=None, description="For ASSIGNED and UNASSIGNED: the kind of entity tagged"
    )
    entity_id: UUID | None = Field(default=None, description="For ASSIGNED and UNASSIGNED: the entity tagged")
