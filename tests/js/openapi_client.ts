// Every operation of openapi.json through openapi-fetch, typed by what openapi-typescript generates
// from the document (tests/test_openapi_clients.py puts the types beside this file as api.d.ts,
// type-checks it with tsc --strict, compiles and runs it against a real server).
// Env: API_URL, API_TOKEN (a member's), ADMIN_TOKEN (their company's admin's). Prints one JSON line: the operations called and what they answered.
import createClient from "openapi-fetch";
import type { components, operations, paths } from "./api.js";

type Schemas = components["schemas"];
type OperationId = keyof operations;

const baseUrl = process.env.API_URL!;
// The second type argument picks each operation's `application/json` answer where it has two.
const api = createClient<paths, "application/json">({
  baseUrl,
  headers: { Authorization: `Bearer ${process.env.API_TOKEN}` },
});

const asAdmin = createClient<paths, "application/json">({
  baseUrl,
  headers: { Authorization: `Bearer ${process.env.ADMIN_TOKEN}` },
});

// Lists count their total only when asked (RFC 7240's Prefer, as PostgREST).
const counted = { Prefer: "count=exact" };

const called: OperationId[] = [];
const totals: Partial<Record<OperationId, number>> = {};

function fail(message: string): never {
  throw new Error(message);
}

// The data of a successful answer (asserting its status), recording the operation as called.
async function ok<T>(
  operation: OperationId,
  status: number,
  pending: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  const { data, error, response } = await pending;
  if (response.status !== status || data === undefined) {
    fail(`${operation}: ${response.status} ${JSON.stringify(error)}`);
  }
  called.push(operation);
  const total = response.headers.get("X-Total-Count");
  if (total !== null) {
    if (!Array.isArray(data) || Number(total) !== data.length) fail(`${operation}: X-Total-Count ${total}`);
    const applied = response.headers.get("Preference-Applied");
    if (applied !== "count=exact") fail(`${operation}: Preference-Applied ${applied}`);
    totals[operation] = Number(total);
  }
  return data;
}

// Tasks and time logs
const task: Schemas["Task"] = await ok("create_task", 201, api.POST("/api/tasks", { body: { title: "Plan" } }));
await ok("list_tasks", 200, api.GET("/api/tasks", { params: { query: { status: "todo", limit: 10 }, header: counted } }));
const byId = { params: { path: { id: task.id } } };
await ok("get_task", 200, api.GET("/api/tasks/{id}", byId));
const moved = await ok("update_task", 200, api.PATCH("/api/tasks/{id}", { ...byId, body: { status: "done" } }));
if (moved.status !== "done") fail("update_task did not change the status");
const taskPath = { params: { path: { task_id: task.id } } };
await ok("add_time_log", 201, api.POST("/api/tasks/{task_id}/time-logs", { ...taskPath, body: { minutes: 15 } }));
await ok("list_time_logs", 200, api.GET("/api/tasks/{task_id}/time-logs", { params: { ...taskPath.params, header: counted } }));

// Tags
const tag: Schemas["Tag"] = await ok("create_tag", 201, api.POST("/api/tags", { body: { name: "ts" } }));
const tagPath = { params: { path: { id: tag.id } } };
await ok("update_tag", 200, api.PATCH("/api/tags/{id}", { ...tagPath, body: { color: "#123456" } }));
await ok("list_tags", 200, api.GET("/api/tags", { params: { header: counted } }));
const entity = { entityType: "task", entityId: task.id } as const;
await ok("assign_tags", 200, api.POST("/api/tags/entity", { body: { ...entity, tagIds: [tag.id] } }));
const onTask = await ok("entity_tags_of", 200, api.GET("/api/tags/entity", { params: { query: entity } }));
if (onTask.map((t) => t.id).join() !== tag.id) fail("entity_tags_of");

// Skills: a new version, a run answered as JSON (the finished run), its record, the budget
const skill: Schemas["Skill"] = await ok(
  "create_skill",
  201,
  api.POST("/api/skills", { body: { name: "ts greeter", instructions: "Hello {{ input.name }}" } }),
);
const skillPath = { params: { path: { id: skill.id } } };
await ok("list_skills", 200, api.GET("/api/skills", { params: { header: counted } }));
await ok("get_skill", 200, api.GET("/api/skills/{id}", skillPath));
await ok("update_skill", 200, api.PATCH("/api/skills/{id}", { ...skillPath, body: { instructions: "Hi {{ input.name }}" } }));
await ok("list_skill_versions", 200, api.GET("/api/skills/{id}/versions", { params: { ...skillPath.params, header: counted } }));
const run: Schemas["SkillRun"] = await ok(
  "run_skill",
  200,
  api.POST("/api/skills/{id}/run", {
    params: { path: { id: skill.id }, header: { Accept: "application/json" } },
    body: { input: { name: "Grace" } },
  }),
);
await ok("list_skill_runs", 200, api.GET("/api/skills/{id}/runs", { params: { ...skillPath.params, header: counted } }));
const budget: Schemas["TokenBudget"] = await ok("token_budget", 200, api.GET("/api/usage"));
if (!(budget.limit > 0)) fail("token_budget");
const toolsOff = await ok("update_tool_settings", 200, asAdmin.PUT("/api/tools/settings", { body: { enabled: false } }));
const seenOff: Schemas["ToolSettings"] = await ok("tool_settings", 200, api.GET("/api/tools/settings"));
if (toolsOff.enabled || seenOff.enabled || !seenOff.built_in.includes("github.list_issues")) fail("tool_settings");
await ok("update_tool_settings", 200, asAdmin.PUT("/api/tools/settings", { body: { enabled: true } }));

// Knowledge
const item: Schemas["KnowledgeItem"] = await ok(
  "create_knowledge",
  201,
  api.POST("/api/knowledge", { body: { title: "Onboarding", content: "Read the handbook first." } }),
);
const itemPath = { params: { path: { id: item.id } } };
await ok("list_knowledge", 200, api.GET("/api/knowledge", { params: { header: counted } }));
await ok("get_knowledge", 200, api.GET("/api/knowledge/{id}", itemPath));
await ok("update_knowledge", 200, api.PATCH("/api/knowledge/{id}", { ...itemPath, body: { content: "Read it twice." } }));
const hits: Schemas["SearchHit"][] = await ok(
  "search_knowledge",
  200,
  api.GET("/api/knowledge/search", { params: { query: { q: "handbook", mode: "keyword" } } }),
);
if (!Array.isArray(hits)) fail("search_knowledge");

// Connections: authorize, the provider's consent (a browser would follow it), the callback, status
const provider = { params: { path: { provider: "fake" }, header: { Accept: "application/json" } } } as const;
const { url } = await ok("authorize_connection", 200, api.GET("/api/connections/authorize/{provider}", provider));
const consent = await fetch(url, { redirect: "manual" });
const back = new URL(consent.headers.get("location") ?? fail(`consent: ${consent.status}`));
const landed = await ok(
  "connection_callback",
  200,
  api.GET("/api/connections/callback/{provider}", {
    params: {
      ...provider.params,
      query: { code: back.searchParams.get("code") ?? fail("no code"), state: back.searchParams.get("state")! },
    },
  }),
);
if (new URL(landed.url).searchParams.get("status") !== "connected") fail(`callback: ${landed.url}`);
const status: Schemas["ConnectionStatus"] = await ok(
  "connection_status",
  200,
  api.GET("/api/connections/status/{provider}", { params: { path: { provider: "fake" } } }),
);
await ok("list_connections", 200, api.GET("/api/connections", { params: { header: counted } }));
const connectionId = status.connection_id ?? fail("connection_status: not connected");
await ok("disconnect", 200, api.DELETE("/api/connections/{id}", { params: { path: { id: connectionId } } }));

// Deletes, then an error as the client reads it
await ok("delete_tag", 200, api.DELETE("/api/tags/{id}", tagPath));
await ok("delete_knowledge", 200, api.DELETE("/api/knowledge/{id}", itemPath));
await ok("delete_skill", 200, api.DELETE("/api/skills/{id}", skillPath));
await ok("delete_task", 200, api.DELETE("/api/tasks/{id}", byId));
const gone = await api.GET("/api/tasks/{id}", byId);
const error: Schemas["Error"] | undefined = gone.error;
const notFound = { status: gone.response.status, code: error?.code };

console.log(JSON.stringify({ called, totals, run: { id: run.id, status: run.status, output: run.output }, notFound }));
