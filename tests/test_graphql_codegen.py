"""The committed schema.graphql as a TypeScript frontend uses it: @graphql-codegen (typescript +
typescript-operations, from tests/js) generates types for a set of operations a frontend would send —
UPPER_CASE enums, a Relay connection, node(id:), the typed run events, a mutation — and `tsc --noEmit
--strict` checks a small program written against them. If the schema drifts from the operations
(a field renamed, an enum value respelled, an event's field made nullable), codegen or tsc fails here
before a frontend does; the last two tests show that both do."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.js, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
JS = ROOT / "tests" / "js"
SCHEMA = ROOT / "schema.graphql"

OPERATIONS = """
query TasksPage($first: Int!, $after: String, $status: TaskStatus) {
  tasksConnection(first: $first, after: $after, status: $status) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { id title status priority dueDate createdAt assignee { email role } tags { name } } }
  }
}

query Refetch($id: ID!) {
  node(id: $id) {
    __typename
    id
    ... on Task { title status }
    ... on Skill { name visibility }
    ... on KnowledgeItem { title indexStatus: status }
  }
}

query Search($q: String!, $mode: SearchMode!) {
  searchKnowledge(q: $q, mode: $mode) { score snippet item { id title visibility } }
}

mutation CreateTask($input: CreateTaskInput!) {
  createTask(input: $input) { id status priority }
}

subscription Run($id: ID!, $input: JSON!) {
  runSkill(id: $id, input: $input) {
    __typename
    type
    runId
    ... on RunStarted { model version }
    ... on RunDelta { text }
    ... on RunToolCall { tool arguments }
    ... on RunToolResult { tool status result }
    ... on RunCompleted { output usage { inputTokens outputTokens } }
    ... on RunFailed { error }
  }
}
"""

PROGRAM = """
import type { Task } from "./schema";
import type {
  CreateTaskMutationVariables, RefetchQuery, RunSubscription, SearchQueryVariables, TaskStatus, TasksPageQuery,
} from "./types";

export function nextPage(page: TasksPageQuery): { titles: string[]; after: string | null; total: number } {
  const connection = page.tasksConnection;
  const titles = connection.edges.map((edge) => `${edge.cursor}: ${edge.node.title} (${edge.node.status})`);
  const after = connection.pageInfo.hasNextPage ? connection.pageInfo.endCursor : null;
  return { titles, after, total: connection.totalCount };
}

export const doing: TaskStatus = "IN_PROGRESS";
export const sameStatus = (task: Pick<Task, "status">): TaskStatus => task.status;
export const create: CreateTaskMutationVariables = { input: { title: "Ship it", status: "TODO", priority: "URGENT" } };
export const search: SearchQueryVariables = { q: "rollback", mode: "HYBRID" };

export function label(result: RefetchQuery): string {
  const node = result.node;
  if (node === null || node === undefined) return "gone";
  switch (node.__typename) {
    case "Task": return `${node.title} ${node.status}`;
    case "Skill": return `${node.name} ${node.visibility}`;
    case "KnowledgeItem": return `${node.title} ${node.indexStatus}`;
    default: return node.id;
  }
}

export function show(event: RunSubscription["runSkill"]): string {
  switch (event.__typename) {
    case "RunStarted": return `${event.runId} on ${event.model} v${event.version}`;
    case "RunDelta": return event.text;
    case "RunToolCall": return `${event.tool}(${JSON.stringify(event.arguments)})`;
    case "RunToolResult": return `${event.tool}: ${event.status} ${event.result}`;
    case "RunCompleted": return `${event.output} (${event.usage.inputTokens + event.usage.outputTokens} tokens)`;
    case "RunFailed": return event.error;
  }
}
"""


def tool(name: str) -> str:
    path = JS / "node_modules" / ".bin" / name
    assert shutil.which("node") and path.exists(), f"{name} is missing: run `npm ci --prefix tests/js`"
    return str(path)


def generate(tmp_path: Path, operations: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "operations.graphql").write_text(operations)
    config = {
        "schema": str(SCHEMA),
        "documents": str(tmp_path / "operations.graphql"),
        "config": {
            "enumsAsTypes": True,
            "strictScalars": True,
            "scalars": {"Date": "string", "DateTime": "string", "JSON": "unknown"},
        },
        # The whole schema's types (typescript), and the operations' own (typescript-operations, which since
        # its v6 writes the enums and inputs they use itself: in one file with the other, they would clash).
        "generates": {
            str(tmp_path / "schema.ts"): {"plugins": ["typescript"]},
            str(tmp_path / "types.ts"): {"plugins": ["typescript-operations"]},
        },
    }
    (tmp_path / "codegen.json").write_text(json.dumps(config))
    # Run from tests/js so the CLI finds its plugins there; everything it reads and writes is in tmp_path.
    return subprocess.run(
        [tool("graphql-codegen"), "--config", str(tmp_path / "codegen.json")],
        cwd=JS,
        capture_output=True,
        text=True,
        timeout=120,
    )


def typecheck(tmp_path: Path, program: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "app.ts").write_text(program)
    return subprocess.run(
        [
            tool("tsc"),
            "--noEmit",
            "--strict",
            "--skipLibCheck",
            "--target",
            "es2022",
            "--module",
            "es2022",
            "--moduleResolution",
            "bundler",
            str(tmp_path / "app.ts"),
        ],  # fmt: skip
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_codegen_types_for_the_operations_compile(tmp_path: Path) -> None:
    generated = generate(tmp_path, OPERATIONS)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    types = (tmp_path / "types.ts").read_text()
    assert "export type TaskStatus =" in types and "'IN_PROGRESS'" in types
    checked = typecheck(tmp_path, PROGRAM)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_an_operation_the_schema_does_not_have_fails_codegen(tmp_path: Path) -> None:
    drifted = OPERATIONS.replace("totalCount", "total")
    generated = generate(tmp_path, drifted)
    assert generated.returncode != 0
    assert 'Cannot query field "total"' in generated.stdout + generated.stderr


def test_a_program_against_other_types_fails_tsc(tmp_path: Path) -> None:
    generated = generate(tmp_path, OPERATIONS)
    assert generated.returncode == 0, generated.stdout + generated.stderr
    # REST's spelling of a status, and a field a delta does not have.
    wrongs = [
        'export const rest: TaskStatus = "in_progress";',
        "export const f = (e: RunSubscription['runSkill']) => (e.__typename === 'RunDelta' ? e.output : '');",
    ]
    for wrong in wrongs:
        checked = typecheck(tmp_path, PROGRAM + wrong)
        assert checked.returncode != 0 and "error TS" in checked.stdout, wrong
