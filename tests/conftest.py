"""Shared fixtures: one embedded PostgreSQL per test session, apps built with test settings."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from fluxopus.ai.indexer import Indexer
from fluxopus.app import create_app
from fluxopus.config import Settings
from fluxopus.db.embedded import EmbeddedPostgres
from fluxopus.db.engine import create_engine
from fluxopus.db.migrate import migrate
from fluxopus.db.session import _kept_of
from tests.utils.builders import SECRET, Company, make_company
from tests.utils.fake_jwks import FakeJWKS
from tests.utils.fake_llm import FakeAnthropic, FakeOpenAI
from tests.utils.fake_oauth import FakeOAuth
from tests.utils.serve import Processes


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    # Not under pytest's tmp root: a later pytest run resets that to 0700, and the embedded
    # server runs as its own system user (when we are root), which then loses access.
    path = Path(tempfile.mkdtemp(prefix="fluxopus-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
async def database_url(data_dir: Path) -> AsyncIterator[str]:
    pg = EmbeddedPostgres(data_dir)
    url = pg.start()
    try:
        await migrate(url)
        yield url
    finally:
        pg.close()


@pytest.fixture(scope="session")
def jwks() -> Iterator[FakeJWKS]:
    fake = FakeJWKS()
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def settings(data_dir: Path, database_url: str, jwks: FakeJWKS) -> Settings:
    return Settings(data_dir=data_dir, database_url=database_url, jwt_secret=SECRET, jwks_url=jwks.url)


@pytest.fixture(scope="session")
async def engine(database_url: str, settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url, settings)
    yield engine
    await engine.dispose()


@pytest.fixture(scope="session")
def app(settings: Settings, engine: AsyncEngine) -> FastAPI:
    return create_app(settings, engine=engine)


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI()
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def fake_anthropic() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic()
    yield fake
    fake.close()


@pytest.fixture(scope="session")
def fake_oauth() -> Iterator[FakeOAuth]:
    with FakeOAuth() as fake:
        yield fake


@pytest.fixture(scope="session")
def ai_settings(settings: Settings, fake_openai: FakeOpenAI, fake_anthropic: FakeAnthropic) -> Settings:
    """Both providers configured against the fakes; skills without a provider use openai."""
    return settings.model_copy(
        update={
            "openai_api_key": fake_openai.api_key,
            "openai_base_url": fake_openai.url,
            "anthropic_api_key": fake_anthropic.api_key,
            "anthropic_base_url": fake_anthropic.url,
            "llm_max_retries": 0,
            "llm_timeout": 3.0,
        }
    )


@pytest.fixture(scope="session")
def ai_app(ai_settings: Settings, engine: AsyncEngine) -> FastAPI:
    return create_app(ai_settings, engine=engine)


@pytest.fixture
async def ai_client(ai_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Like `client`, on an app whose model providers are the fake OpenAI and Anthropic servers."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=ai_app), base_url="http://test") as c:
        yield c


@pytest.fixture(scope="session")
def indexer(app: FastAPI, engine: AsyncEngine, settings: Settings) -> Indexer:
    """The knowledge worker, not started: tests call `await indexer.work()` to embed what is queued."""
    return Indexer(engine, app.state.runtime.ai.embedder, token_budget=settings.token_budget)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c


@pytest.fixture
async def acme(database_url: str) -> Company:
    return await make_company(database_url)


@pytest.fixture
async def globex(database_url: str) -> Company:
    return await make_company(database_url)


@pytest.fixture
def work_dir() -> Iterator[Path]:
    """A private folder outside pytest's basetemp: pytest resets /tmp/pytest-of-<user> to 0700 whenever a
    session starts, and the embedded server (run as a separate system user under root) must traverse it."""
    path = Path(tempfile.mkdtemp(prefix="fluxopus-serve-"))
    yield path
    shutil.rmtree(path)


@pytest.fixture
def processes(work_dir: Path) -> Iterator[Processes]:
    tracker = Processes(work_dir)
    yield tracker
    tracker.close()


class StatementCounter:
    """The statements the app sends, whether through SQLAlchemy or straight to asyncpg (db/prepared.py),
    as asyncpg logs them; not the transaction's own BEGIN (with the claims), COMMIT and ROLLBACK."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.arguments: list[tuple[Any, ...]] = []  # each statement's

    def __call__(self, logged: Any) -> None:
        query = logged.query.strip()
        if not (query.startswith("begin;") or query in ("commit", "rollback")):
            self.statements.append(query)
            self.arguments.append(tuple(logged.args or ()))

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def sql_counter(engine: AsyncEngine) -> Iterator[StatementCounter]:
    counter = StatementCounter()
    logged: list[Any] = []

    def on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        driver = dbapi_connection.driver_connection
        if all(driver is not d for d in logged):
            driver.add_query_logger(counter)
            logged.append(driver)

    # Request transactions run on the kept pool's connections (db/session._Kept): those it keeps now,
    # and those it opens from here on; anything else on the engine's own pool.
    kept = _kept_of(engine)
    for lease in kept._idle:
        on_checkout(lease.conn.sync_connection.connection.dbapi_connection, None, None)  # type: ignore[union-attr]
    engines = (engine.sync_engine, kept._opener.sync_engine)
    for watched in engines:
        event.listen(watched, "checkout", on_checkout)
    yield counter
    for watched in engines:
        event.remove(watched, "checkout", on_checkout)
    for driver in logged:
        driver.remove_query_logger(counter)
