"""The AI services this server uses: the chat providers it can call (and which one a skill gets
when it names none), the embedder, the template sandbox and the budgets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from fluxopus.ai.embeddings import Embedder, MiniLMEmbedder, OpenAIEmbedder
from fluxopus.ai.providers import ChatProvider, EchoProvider
from fluxopus.ai.sandbox import TemplateSandbox
from fluxopus.config import Settings
from fluxopus.errors import Unavailable


class PerCaller:
    """At most `limit` of one caller's model calls at a time in this process; the rest wait their turn,
    holding no database connection, so one caller's burst cannot queue everyone else's requests behind
    it. A turn not come within `timeout` seconds is a 503."""

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        # Per event loop (an app may be served from more than one in tests) and caller; an entry lives
        # while its caller has calls in flight or waiting.
        self._turns: dict[tuple[int, Hashable], tuple[asyncio.Semaphore, int]] = {}

    @asynccontextmanager
    async def turn(self, caller: Hashable) -> AsyncIterator[None]:
        key = (id(asyncio.get_running_loop()), caller)
        semaphore, users = self._turns.get(key) or (asyncio.Semaphore(self.limit), 0)
        self._turns[key] = (semaphore, users + 1)
        try:
            try:
                async with asyncio.timeout(self.timeout):
                    await semaphore.acquire()
            except TimeoutError:
                raise Unavailable(
                    "Too many of your requests are waiting for the model; retry in a few seconds"
                ) from None
            try:
                yield
            finally:
                semaphore.release()
        finally:
            semaphore, users = self._turns[key]
            if users == 1:
                del self._turns[key]
            else:
                self._turns[key] = (semaphore, users - 1)


@dataclass
class AiServices:
    providers: dict[str, ChatProvider]
    embedder: Embedder
    default_provider: str
    default_model: str | None  # None: the provider's own default
    run_timeout: float
    token_budget: int
    storage_quota: int  # default bytes of knowledge per company
    templates: TemplateSandbox
    per_caller: PerCaller = field(default_factory=lambda: PerCaller(limit=4, timeout=30.0))
    # Skill tools (ai/tools.py): hosts HTTP tools may reach, rounds of tool calls per run, seconds per call.
    tool_hosts: tuple[str, ...] = ()
    tool_max_steps: int = 5
    tool_timeout: float = 20.0

    async def aclose(self) -> None:
        """Closes the providers' HTTP clients (their pooled connections belong to the serving loop) and
        stops the template workers."""
        for provider in self.providers.values():
            await provider.aclose()
        await self.embedder.aclose()
        self.templates.close()

    def describe(self) -> str:
        """For the server banner: what answers skill runs."""
        if self.default_provider == "echo":
            return (
                "echo — no LLM is configured, so runs stream their prompt back "
                "(set FLUXOPUS_OPENAI_API_KEY or FLUXOPUS_ANTHROPIC_API_KEY)"
            )
        default = self.providers[self.default_provider]
        others = [name for name in self.providers if name not in (default.name, "echo")]
        also = f"; also {', '.join(others)}" if others else ""
        return f"{default.name}, model {self.default_model or default.default_model} by default{also}"

    def resolve(self, provider: str | None, model: str | None) -> tuple[ChatProvider, str]:
        """The provider and model a run uses; raises LookupError for an unconfigured provider."""
        name = provider or self.default_provider
        chosen = self.providers.get(name)
        if chosen is None:
            hint = f"set FLUXOPUS_{name.upper()}_API_KEY"
            raise LookupError(f"Provider {name!r} is not configured on this server ({hint})")
        if chosen.name == "echo":
            return chosen, "echo"  # the run says plainly that no model answered
        if model is None and provider is None:
            model = self.default_model
        return chosen, model or chosen.default_model


def ai_services(settings: Settings) -> AiServices:
    providers: dict[str, ChatProvider] = {"echo": EchoProvider()}
    if settings.openai_api_key:
        from fluxopus.ai.openai_chat import OpenAIProvider

        providers["openai"] = OpenAIProvider(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            default_model=settings.openai_model,
            timeout=settings.llm_timeout,
            retries=settings.llm_max_retries,
        )
    if settings.anthropic_api_key:
        from fluxopus.ai.anthropic_messages import AnthropicProvider

        providers["anthropic"] = AnthropicProvider(
            api_key=settings.anthropic_api_key,
            base_url=settings.anthropic_base_url,
            default_model=settings.anthropic_model,
            timeout=settings.llm_timeout,
            retries=settings.llm_max_retries,
        )
    default: str = settings.llm_provider or next((p for p in ("openai", "anthropic") if p in providers), "echo")
    embedder: Embedder = MiniLMEmbedder()
    if settings.embedding_provider == "openai" and settings.openai_api_key:
        embedder = OpenAIEmbedder(
            api_key=settings.openai_api_key,
            base_url=settings.openai_base_url,
            model=settings.embedding_model,
            timeout=settings.llm_timeout,
            retries=settings.llm_max_retries,
        )
    return AiServices(
        providers=providers,
        embedder=embedder,
        default_provider=default,
        default_model=settings.llm_model,
        run_timeout=settings.run_timeout,
        token_budget=settings.token_budget,
        storage_quota=settings.storage_quota,
        templates=TemplateSandbox(
            workers=settings.template_workers,
            cpu_seconds=settings.template_cpu_seconds,
            memory_mb=settings.template_memory_mb,
        ),
        per_caller=PerCaller(limit=settings.model_calls_per_user, timeout=settings.db_pool_timeout),
        tool_hosts=tuple(settings.tool_hosts),
        tool_max_steps=settings.tool_max_steps,
        tool_timeout=settings.tool_timeout,
    )
