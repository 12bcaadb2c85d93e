"""Per-operation DataLoaders: nested GraphQL fields cost one query per field, not per parent.

Each batch function lives beside the queries it batches, in its resolver module; `loaders(ctx)`
makes the operation's set on first use (a DataLoader caches for one operation only).
"""

from __future__ import annotations

from functools import partial
from uuid import UUID

from strawberry.dataloader import DataLoader

from fluxopus.models.knowledge import KnowledgeItem
from fluxopus.models.members import Member
from fluxopus.models.tags import TAGGABLE, EntityType, Tag
from fluxopus.models.tasks import TimeLog
from fluxopus.resolvers import knowledge, members, tags, tasks
from fluxopus.resolvers.context import Context


class Loaders:
    def __init__(self, ctx: Context) -> None:
        self.time_logs_by_task: DataLoader[UUID, list[TimeLog]] = DataLoader(partial(tasks.time_logs_by_task, ctx))
        self.tags: dict[EntityType, DataLoader[UUID, list[Tag]]] = {
            kind: DataLoader(partial(tags.tags_of, ctx, kind)) for kind in TAGGABLE
        }
        self.member_by_user: DataLoader[UUID, Member | None] = DataLoader(partial(members.members_by_user, ctx))
        self.knowledge_by_id: DataLoader[UUID, KnowledgeItem | None] = DataLoader(partial(knowledge.items_by_id, ctx))


def loaders(ctx: Context) -> Loaders:
    found = ctx.cache.get("loaders")
    if not isinstance(found, Loaders):
        found = ctx.cache["loaders"] = Loaders(ctx)
    return found
