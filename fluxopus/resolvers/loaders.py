"""Per-request DataLoaders: nested GraphQL fields cost one query per field, not per parent."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING
from uuid import UUID

from sqlalchemy import text
from strawberry.dataloader import DataLoader

from fluxopus.models.accounts import Member
from fluxopus.models.tags import Tag
from fluxopus.models.tasks import TimeLog

if TYPE_CHECKING:
    from fluxopus.context import Context


class Loaders:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self.time_logs_by_task = DataLoader(self._time_logs_by_task)
        self.tags_by_task = DataLoader(partial(self._tags_of, "task"))
        self.tags_by_skill = DataLoader(partial(self._tags_of, "skill"))
        self.tags_by_knowledge = DataLoader(partial(self._tags_of, "knowledge"))
        self.member_by_user = DataLoader(self._member_by_user)

    async def _time_logs_by_task(self, task_ids: Sequence[UUID]) -> list[list[TimeLog]]:
        rows = await self._ctx.db.execute(
            text("select * from time_logs where task_id = any(:ids) order by created_at desc, id"),
            {"ids": list(task_ids)},
        )
        grouped: dict[UUID, list[TimeLog]] = defaultdict(list)
        for row in rows.mappings():
            grouped[row["task_id"]].append(TimeLog.model_validate(row))
        return [grouped[t] for t in task_ids]

    async def _tags_of(self, entity_type: str, entity_ids: Sequence[UUID]) -> list[list[Tag]]:
        rows = await self._ctx.db.execute(
            text(
                "select g.*, a.entity_id from tags g join entity_tags a on a.tag_id = g.id"
                " where a.entity_type = :type and a.entity_id = any(:ids) order by lower(g.name), g.name, g.id"
            ),
            {"type": entity_type, "ids": list(entity_ids)},
        )
        grouped: dict[UUID, list[Tag]] = defaultdict(list)
        for row in rows.mappings():
            grouped[row["entity_id"]].append(Tag.model_validate(row))
        return [grouped[e] for e in entity_ids]

    async def _member_by_user(self, user_ids: Sequence[UUID]) -> list[Member | None]:
        rows = await self._ctx.db.execute(
            text(
                "select m.user_id, u.email, m.role, m.company_id, m.created_at"
                " from members m join users u on u.id = m.user_id where m.user_id = any(:ids)"
            ),
            {"ids": list(user_ids)},
        )
        found = {row["user_id"]: Member.model_validate(row) for row in rows.mappings()}
        return [found.get(u) for u in user_ids]
