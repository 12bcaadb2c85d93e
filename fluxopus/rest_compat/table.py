"""The route table: every documented REST endpoint as data."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from fluxopus.models.common import Deleted, PageQuery
from fluxopus.models.connections import (
    AuthorizationUrl,
    AuthorizeQuery,
    CallbackQuery,
    Connection,
    ConnectionStatus,
    Disconnected,
)
from fluxopus.models.knowledge import (
    KnowledgeFilter,
    KnowledgeItem,
    SearchHit,
    SearchQuery,
)
from fluxopus.models.skills import (
    RunEvent,
    RunInput,
    Skill,
    SkillFilter,
    SkillRun,
    SkillVersion,
    TokenBudget,
    ToolSettings,
    ToolSettingsInput,
)
from fluxopus.models.tags import AssignTags, EntityRef, Tag
from fluxopus.models.tasks import Task, TaskFilter, TimeLog
from fluxopus.resolvers import budget, connections, knowledge, runs, skills, tags, tasks, tools


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # below /api; {name} segments are UUIDs passed to the resolver as `name`, except `names`
    resolver: Callable[..., Awaitable[Any]]
    summary: str
    tag: str
    response: Any  # a model, or list[Model] for paginated lists
    status: int = 200
    body: type[BaseModel] | None = None  # passed as `data`
    query: type[BaseModel] | None = None  # passed as `query`
    # The resolver returns Page; REST answers a bare array, X-Total-Count as `Prefer: count=…` asks (prefer.py).
    paginated: bool = False
    # A run: the resolver returns it started (resolvers/runs.StartedRun); the edge commits, then streams
    # these events as `text/event-stream` by default, or waits for the result (`Accept: application/json`).
    events: type[BaseModel] | None = None
    budgeted: bool = False  # spends model tokens: 429 when the company's budget is exhausted
    names: tuple[str, ...] = ()  # path segments that are names (a provider), passed as strings
    # Answers 302 to the `url` of the resolver's AuthorizationUrl; with Accept: application/json, 200 {"url"}.
    redirect: bool = False
    # No bearer token: a browser arrives here from a third party, and the request carries its own
    # proof (the OAuth callback's single-use state).
    public: bool = False

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)

    @property
    def operation_id(self) -> str:
        return self.resolver.__name__


ROUTES: list[Route] = [
    Route(
        "GET",
        "/tasks",
        tasks.list_tasks,
        "List tasks (member: own and assigned; admin: company)",
        "Tasks",
        list[Task],
        query=TaskFilter,
        paginated=True,
    ),
    Route("POST", "/tasks", tasks.create_task, "Create a task", "Tasks", Task, status=201, body=Task.create),
    Route("GET", "/tasks/{id}", tasks.get_task, "Get a task", "Tasks", Task),
    Route("PATCH", "/tasks/{id}", tasks.update_task, "Update task fields", "Tasks", Task, body=Task.update),
    Route("DELETE", "/tasks/{id}", tasks.delete_task, "Delete a task", "Tasks", Deleted),
    Route(
        "GET",
        "/tasks/{task_id}/time-logs",
        tasks.list_time_logs,
        "List a task's time logs, newest first",
        "Tasks",
        list[TimeLog],
        query=PageQuery,
        paginated=True,
    ),
    Route(
        "POST",
        "/tasks/{task_id}/time-logs",
        tasks.add_time_log,
        "Add a time log entry",
        "Tasks",
        TimeLog,
        status=201,
        body=TimeLog.create,
    ),
    Route("GET", "/tags", tags.list_tags, "List company tags", "Tags", list[Tag], query=PageQuery, paginated=True),
    Route("POST", "/tags", tags.create_tag, "Create a tag", "Tags", Tag, status=201, body=Tag.create),
    Route("PATCH", "/tags/{id}", tags.update_tag, "Update a tag", "Tags", Tag, body=Tag.update),
    Route("DELETE", "/tags/{id}", tags.delete_tag, "Delete a tag and its assignments", "Tags", Deleted),
    Route("POST", "/tags/entity", tags.assign_tags, "Assign tags to an entity", "Tags", list[Tag], body=AssignTags),
    Route("GET", "/tags/entity", tags.entity_tags_of, "Get the tags on an entity", "Tags", list[Tag], query=EntityRef),
    Route(
        "GET",
        "/skills",
        skills.list_skills,
        "List the skills the caller can see (own, and company-visible)",
        "Skills",
        list[Skill],
        query=SkillFilter,
        paginated=True,
    ),
    Route("POST", "/skills", skills.create_skill, "Create a skill (version 1)", "Skills", Skill, 201, Skill.create),
    Route("GET", "/skills/{id}", skills.get_skill, "Get a skill", "Skills", Skill),
    Route(
        "PATCH",
        "/skills/{id}",
        skills.update_skill,
        "Update a skill; a change of content records a new version",
        "Skills",
        Skill,
        body=Skill.update,
    ),
    Route("DELETE", "/skills/{id}", skills.delete_skill, "Delete a skill, its versions and runs", "Skills", Deleted),
    Route(
        "POST",
        "/skills/{id}/run",
        runs.run_skill,
        "Run a skill: an event stream by default, the finished run with `Accept: application/json`",
        "Skills",
        SkillRun,
        body=RunInput,
        events=RunEvent,
        budgeted=True,
    ),
    Route(
        "GET",
        "/skills/{id}/versions",
        skills.list_skill_versions,
        "List a skill's versions, newest first",
        "Skills",
        list[SkillVersion],
        query=PageQuery,
        paginated=True,
    ),
    Route(
        "GET",
        "/skills/{id}/runs",
        runs.list_skill_runs,
        "List a skill's runs, newest first (the caller's own; an admin's: everyone's)",
        "Skills",
        list[SkillRun],
        query=PageQuery,
        paginated=True,
    ),
    Route(
        "GET", "/usage", budget.token_budget, "This month's token budget of the caller's company", "Skills", TokenBudget
    ),
    Route(
        "GET",
        "/tools/settings",
        tools.tool_settings,
        "Whether the company's skill runs may call tools, and the built-in tools",
        "Skills",
        ToolSettings,
    ),
    Route(
        "PUT",
        "/tools/settings",
        tools.update_tool_settings,
        "Admins only: turn the company's tools on or off",
        "Skills",
        ToolSettings,
        body=ToolSettingsInput,
    ),
    Route(
        "GET",
        "/knowledge",
        knowledge.list_knowledge,
        "List knowledge items the caller can read",
        "Knowledge",
        list[KnowledgeItem],
        query=KnowledgeFilter,
        paginated=True,
    ),
    Route(
        "POST",
        "/knowledge",
        knowledge.create_knowledge,
        "Add a knowledge item (status pending until it is embedded)",
        "Knowledge",
        KnowledgeItem,
        status=201,
        body=KnowledgeItem.create,
    ),
    # Before /knowledge/{id}, so "search" is not taken for an id.
    Route(
        "GET",
        "/knowledge/search",
        knowledge.search_knowledge,
        "Search the knowledge the caller can read: hybrid (default), semantic or keyword",
        "Knowledge",
        list[SearchHit],
        query=SearchQuery,
        budgeted=True,
    ),
    Route("GET", "/knowledge/{id}", knowledge.get_knowledge, "Get a knowledge item", "Knowledge", KnowledgeItem),
    Route(
        "PATCH",
        "/knowledge/{id}",
        knowledge.update_knowledge,
        "Update a knowledge item; a change of title or content re-indexes it",
        "Knowledge",
        KnowledgeItem,
        body=KnowledgeItem.update,
    ),
    Route(
        "DELETE",
        "/knowledge/{id}",
        knowledge.delete_knowledge,
        "Delete a knowledge item and its chunks",
        "Knowledge",
        Deleted,
    ),
    Route(
        "GET",
        "/connections",
        connections.list_connections,
        "List connections: the caller's own; an admin's, the whole company's (never any token)",
        "Connections",
        list[Connection],
        query=PageQuery,
        paginated=True,
    ),
    Route(
        "GET",
        "/connections/authorize/{provider}",
        connections.authorize_connection,
        "Start connecting a provider: a redirect to its consent page (with `Accept: application/json`, its URL)",
        "Connections",
        AuthorizationUrl,
        query=AuthorizeQuery,
        names=("provider",),
        redirect=True,
    ),
    Route(
        "GET",
        "/connections/callback/{provider}",
        connections.connection_callback,
        "Where the provider sends the browser back; redirects to the app with `connection` and `status`",
        "Connections",
        AuthorizationUrl,
        query=CallbackQuery,
        names=("provider",),
        redirect=True,
        public=True,
    ),
    Route(
        "GET",
        "/connections/status/{provider}",
        connections.connection_status,
        "The caller's connection to a provider, its access token refreshed first if it had expired",
        "Connections",
        ConnectionStatus,
        names=("provider",),
    ),
    Route(
        "DELETE",
        "/connections/{id}",
        connections.disconnect,
        "Disconnect: revoke the grant at the provider where it can be, then delete the connection",
        "Connections",
        Disconnected,
    ),
]
