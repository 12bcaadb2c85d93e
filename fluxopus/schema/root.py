"""The schema: every group's Query, Mutation and Subscription merged."""

from __future__ import annotations

import datetime as dt

from strawberry.scalars import JSON as StrawberryJSON
from strawberry.tools import merge_types
from strawberry.types.base import get_object_definition

from fluxopus.schema.compiled import CompiledReads
from fluxopus.schema.connections import ConnectionsMutation, ConnectionsQuery
from fluxopus.schema.knowledge import KnowledgeMutation, KnowledgeQuery
from fluxopus.schema.limits import DocumentLimits
from fluxopus.schema.live import LiveSubscription, SharedEvents
from fluxopus.schema.members import MembersMutation, MembersQuery
from fluxopus.schema.node import NodeQuery
from fluxopus.schema.operation import FluxopusSchema, RlsOperation
from fluxopus.schema.scalars import JSON, Date, DateTime
from fluxopus.schema.skills import (
    RunCompleted,
    RunDelta,
    RunFailed,
    RunStarted,
    RunToolCall,
    RunToolResult,
    SkillsMutation,
    SkillsQuery,
    SkillsSubscription,
)
from fluxopus.schema.tags import TagsMutation, TagsQuery
from fluxopus.schema.tasks import TasksMutation, TasksQuery

Query = merge_types(
    "Query", (MembersQuery, TasksQuery, TagsQuery, SkillsQuery, KnowledgeQuery, ConnectionsQuery, NodeQuery)
)
Mutation = merge_types(
    "Mutation", (MembersMutation, TasksMutation, TagsMutation, SkillsMutation, KnowledgeMutation, ConnectionsMutation)
)
Subscription = merge_types("Subscription", (SkillsSubscription, LiveSubscription))
# merge_types names the merged types; what they are is said here.
get_object_definition(
    Query, strict=True
).description = "Reads. Every field answers what the caller's token may see (RLS)."
get_object_definition(
    Mutation, strict=True
).description = "Writes. Each operation runs in one transaction: if any field fails, none of its changes stay."
get_object_definition(
    Subscription, strict=True
).description = "Streams, over graphql-transport-ws (WebSocket) or graphql-sse (HTTP)."

# DocumentLimits and CompiledReads come first: they find what they need on the transport context
# before RlsOperation replaces that with the operation's own. DocumentLimits also parses and
# validates, each document once; CompiledReads answers plannable queries in one SQL statement.
schema = FluxopusSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[DocumentLimits, CompiledReads, RlsOperation],
    # Reached only through the SkillRunEvent interface: listed so the schema has them.
    types=[RunStarted, RunDelta, RunToolCall, RunToolResult, RunCompleted, RunFailed],
    scalar_overrides={dt.datetime: DateTime, dt.date: Date, StrawberryJSON: JSON},
    execution_context_class=SharedEvents,  # graphql-core 3.3 calls it an executor class
)
