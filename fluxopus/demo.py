"""`fluxopus demo`: a demo company seeded through the real API, and how to call it.

Users are provisioned service-side (as `fluxopus users create` does); everything else goes
through the REST API of an in-process app, as the demo users, so RLS, versions and triggers
apply exactly as for any client. Seeding is idempotent: what exists (matched by title, name or
note) is left alone, so a second run adds and changes nothing.
"""

from __future__ import annotations

import datetime as dt
import secrets
import shlex
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fluxopus.config import Settings

COMPANY = "Demo Company"
ADMIN_EMAIL = "admin@demo.fluxopus.dev"
MEMBER_EMAIL = "member@demo.fluxopus.dev"
PASSWORD = "fluxopus-demo"
SEARCH = "expense reimbursement"
# -w '\n': each answer on its own line, not glued to the next prompt
CURL = "curl -s -w '\\n'"


class DemoError(Exception):
    """Seeding stopped; the message says why."""


@dataclass(frozen=True)
class DemoTask:
    title: str
    description: str
    status: str
    priority: str
    assignee: str  # "admin" | "member"
    tags: tuple[str, ...]
    due_in_days: int | None = None
    logs: tuple[tuple[int, str, bool], ...] = ()  # (minutes, note, billable), logged by the assignee


@dataclass(frozen=True)
class DemoSkill:
    name: str
    description: str
    owner: str  # "admin" | "member"
    visibility: str
    versions: tuple[str, ...]  # instructions of version 1, 2, …


TAGS = {"planning": "#6366F1", "bug": "#EF4444", "customer": "#F59E0B", "docs": "#10B981", "people": "#3B82F6"}

TASKS = (
    DemoTask(
        "Prepare the Q3 roadmap",
        "Collect the teams' proposals and draft the roadmap for the leadership review.",
        "in_progress",
        "high",
        "admin",
        ("planning",),
        due_in_days=14,
        logs=((90, "First draft of the themes", False), (45, "Review with the product leads", False)),
    ),
    DemoTask(
        "Fix the login redirect bug",
        "After signing in, users land on the home page instead of the page they asked for.",
        "in_progress",
        "urgent",
        "member",
        ("bug", "customer"),
        due_in_days=2,
        logs=((40, "Reproduced with an expired session", True), (75, "Fix and regression test", True)),
    ),
    DemoTask(
        "Onboard the new designer",
        "Accounts, hardware, the design system walkthrough and a first small project.",
        "todo",
        "medium",
        "member",
        ("people",),
        due_in_days=7,
        logs=((30, "Created the accounts", False),),
    ),
    DemoTask(
        "Write the release notes for 2.4",
        "Highlights, breaking changes and the upgrade steps.",
        "done",
        "low",
        "member",
        ("docs",),
        logs=((50, "Drafted and published", False),),
    ),
    DemoTask(
        "Renew the TLS certificates",
        "The wildcard certificate expires at the end of the month.",
        "todo",
        "high",
        "admin",
        ("planning",),
        due_in_days=21,
    ),
)

SKILLS = (
    DemoSkill(
        "Summarize a task",
        "A one-paragraph status update from a task",
        "admin",
        "company",
        (
            "Summarize this task in one sentence: {{ input.title }}",
            "Write a status update of at most two sentences for this task.\n"
            "Title: {{ input.title }}\nDetails: {{ input.description }}",
        ),
    ),
    DemoSkill(
        "Draft a customer reply",
        "A friendly reply to a customer's message",
        "admin",
        "company",
        (
            "Reply to this customer message: {{ input.message }}",
            "Reply to this customer message in a friendly, concise tone, and thank them for writing.\n"
            "Message: {{ input.message }}",
            "Reply to this customer message in a friendly, concise tone. Thank them for writing and, when they"
            " report a problem, say what happens next.\nMessage: {{ input.message }}",
        ),
    ),
    DemoSkill(
        "Daily stand-up notes",
        "Turns a list of done and planned items into stand-up notes",
        "member",
        "private",
        ("Turn these notes into a short stand-up update (done, next, blockers): {{ input.notes }}",),
    ),
)

KNOWLEDGE = (
    (
        "Expense policy",
        "Travel and equipment expenses are reimbursed within two weeks. Submit each expense with its receipt"
        " in the finance tool before the end of the month; expenses above 500 EUR need your manager's approval"
        " first. Reimbursement is paid with the next salary.",
    ),
    (
        "Release process",
        "Releases ship every second Tuesday. The release manager freezes main on Monday, runs the full test"
        " suite, writes the release notes and tags the version. Hotfixes go through the same review but skip"
        " the freeze.",
    ),
    (
        "Onboarding checklist",
        "Before the first day: laptop, accounts and a buddy. First week: meet the team, read the architecture"
        " notes, ship one small change. First month: own a feature end to end.",
    ),
)


@dataclass
class Seeded:
    """What this run added (all zero on a second run)."""

    added: Counter[str] = field(default_factory=Counter)

    def describe(self) -> str:
        if not self.added:
            return "already seeded: nothing to add"
        return "added " + ", ".join(f"{n} {what}" for what, n in self.added.items())


class DemoApi:
    """The REST API of an in-process app, called as one demo user."""

    def __init__(self, client: httpx.AsyncClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.client.request(method, f"/api{path}", headers=self.headers, **kwargs)
        if response.status_code not in (200, 201):
            raise DemoError(f"{method} /api{path} answered {response.status_code}: {response.text}")
        return response.json()

    async def all(self, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        while True:
            page = await self.call("GET", path, params={**params, "limit": 200, "offset": len(items)})
            items.extend(page)
            if len(page) < 200:
                return items


async def seed(settings: Settings, database_url: str, progress: Callable[[str], None] = lambda step: None) -> Seeded:
    """Seeds what is missing; `progress(step)` says what it is at (the CLI prints it)."""
    from fluxopus.app import create_app
    from fluxopus.auth.jwt import member_token
    from fluxopus.auth.passwords import hash_password, verify_password
    from fluxopus.db.engine import create_engine
    from fluxopus.db.users import UserError, ensure_member, password_hash_of, set_password
    from fluxopus.errors import DomainError

    # The in-process app checks tokens signed with a secret of its own: seeding works the same
    # whichever way the real server verifies tokens, and no key is written to the data dir.
    secret = secrets.token_urlsafe(32)
    app_settings = settings.model_copy(update={"jwt_secret": secret, "jwks_url": None, "indexer": False})
    engine = create_engine(database_url, app_settings)
    app = create_app(app_settings, engine=engine)
    seeded = Seeded()
    members = {}
    try:
        progress("users and passwords")
        for who, email in (("admin", ADMIN_EMAIL), ("member", MEMBER_EMAIL)):
            try:
                members[who] = await ensure_member(engine, email=email, company=COMPANY, role=who)
            except (UserError, DomainError) as exc:
                raise DemoError(str(exc)) from exc
            if not await verify_password(await password_hash_of(engine, email=email), PASSWORD):
                await set_password(engine, email=email, password_hash=await hash_password(PASSWORD))
                seeded.added["passwords"] += 1

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://demo") as client:
            api = {
                who: DemoApi(
                    client,
                    member_token(secret, m, ttl=600, audience=settings.jwt_audience),
                )
                for who, m in members.items()
            }
            await _seed_content(api, {who: str(m.user_id) for who, m in members.items()}, seeded, progress)
    finally:
        await engine.dispose()
        await app.state.runtime.ai.aclose()
    return seeded


async def _seed_content(
    api: dict[str, DemoApi], user_ids: dict[str, str], seeded: Seeded, progress: Callable[[str], None]
) -> None:
    admin = api["admin"]
    progress("tags")
    tags = {t["name"]: t["id"] for t in await admin.all("/tags")}
    for name, color in TAGS.items():
        if name not in tags:
            tags[name] = (await admin.call("POST", "/tags", json={"name": name, "color": color}))["id"]
            seeded.added["tags"] += 1

    progress(f"{len(TASKS)} tasks with their time logs and tags")
    tasks = {t["title"]: t for t in await admin.all("/tasks")}
    today = dt.datetime.now(dt.UTC).date()
    for spec in TASKS:
        task = tasks.get(spec.title)
        if task is None:
            body: dict[str, Any] = {
                "title": spec.title,
                "description": spec.description,
                "status": spec.status,
                "priority": spec.priority,
                "assignee_id": user_ids[spec.assignee],
            }
            if spec.due_in_days is not None:
                body["due_date"] = (today + dt.timedelta(days=spec.due_in_days)).isoformat()
            task = await admin.call("POST", "/tasks", json=body)
            seeded.added["tasks"] += 1
        logger = api[spec.assignee]
        notes = {log["note"] for log in await logger.all(f"/tasks/{task['id']}/time-logs")}
        for minutes, note, billable in spec.logs:
            if note not in notes:
                await logger.call(
                    "POST",
                    f"/tasks/{task['id']}/time-logs",
                    json={"minutes": minutes, "note": note, "billable": billable},
                )
                seeded.added["time logs"] += 1
        on_task = {
            t["id"]
            for t in await admin.call("GET", "/tags/entity", params={"entityType": "task", "entityId": task["id"]})
        }
        wanted = [tags[name] for name in spec.tags if tags[name] not in on_task]
        if wanted:
            await admin.call(
                "POST", "/tags/entity", json={"entityType": "task", "entityId": task["id"], "tagIds": wanted}
            )
            seeded.added["tag assignments"] += len(wanted)

    progress(f"{len(SKILLS)} skills and their versions")
    for skill_spec in SKILLS:
        owner = api[skill_spec.owner]
        skill = next((s for s in await owner.all("/skills") if s["name"] == skill_spec.name), None)
        if skill is None:
            body = {
                "name": skill_spec.name,
                "description": skill_spec.description,
                "instructions": skill_spec.versions[0],
                "visibility": skill_spec.visibility,
                "max_tokens": 300,
            }
            skill = await owner.call("POST", "/skills", json=body)
            seeded.added["skills"] += 1
        # Each later version is an update of the instructions, which the API records as a version.
        for instructions in skill_spec.versions[skill["version"] :]:
            skill = await owner.call("PATCH", f"/skills/{skill['id']}", json={"instructions": instructions})
            seeded.added["skill updates"] += 1

    progress(f"{len(KNOWLEDGE)} knowledge items (the server embeds them once it runs)")
    titles = {k["title"] for k in await admin.all("/knowledge")}
    for title, content in KNOWLEDGE:
        if title not in titles:
            await admin.call("POST", "/knowledge", json={"title": title, "content": content, "visibility": "company"})
            seeded.added["knowledge items"] += 1


def instructions(
    settings: Settings, *, data_dir: Path | None, host: str | None, port: int | None, anon_key: str | None
) -> str:
    """What to run next: start the server, sign in, call REST and GraphQL (as a shell snippet)."""
    base = settings.base_url
    where = ["--data-dir", str(data_dir)] if data_dir is not None else []
    serve_args = [*where, *(["--host", host] if host else []), *(["--port", str(port)] if port else [])]
    auth = f"{base}/auth/v1/token?grant_type=password"
    credentials = f'{{"email": "{ADMIN_EMAIL}", "password": "{PASSWORD}"}}'
    extract = (
        "import json, sys; b = json.load(sys.stdin); "
        'print(b["access_token"]) if "access_token" in b else sys.exit(f"sign-in failed: {b}")'
    )
    graphql = (
        '{"query": "{ tasks { title status totalMinutes assignee { email } tags { name } } skills { name version } }"}'
    )
    if anon_key is not None:
        sign_in = [
            "# sign in as the demo admin (Supabase-compatible password grant)",
            f"ANON_KEY={shlex.quote(anon_key)}",
            f"TOKEN=$(curl -s -X POST {shlex.quote(auth)} \\",
            "  -H \"apikey: $ANON_KEY\" -H 'Content-Type: application/json' \\",
            f"  -d {shlex.quote(credentials)} \\",
            f"  | python3 -c {shlex.quote(extract)})",
        ]
        how = (
            "The demo member signs in the same way with its own email (and sees only its own and\n"
            "assigned tasks); supabase-js: createClient(url, anonKey).auth.signInWithPassword(...)."
        )
    else:
        token_args = ["fluxopus", "token", "--email", ADMIN_EMAIL, *where]
        if settings.jwt_secret is not None:
            sign_in = [
                "# a token for the demo admin, signed with FLUXOPUS_JWT_SECRET (set it in this shell too)",
                f"TOKEN=$({shlex.join(token_args)})",
            ]
        else:
            sign_in = [
                "# tokens come from the identity provider of FLUXOPUS_JWKS_URL: sign in there and",
                "TOKEN='<the access token your identity provider issued>'",
            ]
        how = (
            "The built-in sign-in (/auth/v1) is off because FLUXOPUS_JWT_SECRET or FLUXOPUS_JWKS_URL is\n"
            "set, so the demo passwords are not used here."
        )
    calls = [
        *sign_in,
        "# REST",
        f'{CURL} {shlex.quote(base + "/api/tasks")} -H "Authorization: Bearer $TOKEN"',
        f"{CURL} {shlex.quote(base + '/api/knowledge/search?q=' + SEARCH.replace(' ', '%20'))}"
        ' -H "Authorization: Bearer $TOKEN"',
        "# GraphQL",
        f'{CURL} {shlex.quote(base + "/graphql")} -H "Authorization: Bearer $TOKEN"'
        " -H 'Content-Type: application/json' \\",
        f"  -d {shlex.quote(graphql)}",
    ]
    lines = [
        f"  company   {COMPANY}",
        f"  admin     {ADMIN_EMAIL}   password: {PASSWORD}",
        f"  member    {MEMBER_EMAIL}  password: {PASSWORD}",
        "",
        "1. Start the server (it embeds the knowledge items in the background):",
        "",
        "    " + shlex.join(["fluxopus", "serve", *serve_args]),
        "",
        f"2. In another shell, sign in and call the API at {base}:",
        "",
        *("    " + line for line in calls),
        "",
        how,
    ]
    return "\n".join(lines)
