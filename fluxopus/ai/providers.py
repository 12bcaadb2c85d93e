"""Chat model providers behind one small interface: stream text deltas (and tool calls), then the usage.

`openai` (ai/openai_chat.py) and `anthropic` (ai/anthropic_messages.py) wrap the official
SDKs and are imported only when configured (each SDK takes seconds to import); `echo`, here,
needs nothing and streams the prompt back, so a fresh install can run skills end to end.
Every provider failure becomes a ProviderError with a message fit for the run's `error` field.

Tools: a request may offer `tools`; a model that calls them ends its answer with ToolCalls, and the
run (resolvers/runs.py) asks again with the `steps` so far — each step the model's text and calls and
the results — which each provider writes in its own wire format. `final` asks for text only.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Delta:
    text: str


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the model is offered it: `name` fits both APIs' pattern ^[a-zA-Z0-9_-]{1,64}$."""

    name: str
    description: str
    parameters: dict[str, Any]  # a JSON Schema object
    label: str = ""  # the name the skill declares it by (github.list_issues), when it differs


@dataclass(frozen=True)
class ToolCall:
    """The model asks for a tool: `arguments` as the model wrote them (JSON text, not checked yet)."""

    id: str
    name: str
    arguments: str

    def parsed(self) -> dict[str, Any] | None:
        """The arguments as an object, or None when they are not a JSON object."""
        try:
            value = json.loads(self.arguments or "{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    content: str  # what the model reads: the tool's answer, or why there is none
    is_error: bool


@dataclass(frozen=True)
class Step:
    """One round of a tool-using conversation: what the model said and asked, and what it got back."""

    text: str
    calls: tuple[ToolCall, ...]
    results: tuple[ToolResult, ...]


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


class ProviderError(Exception):
    pass


class ChatProvider(Protocol):
    name: str
    default_model: str

    def stream(
        self,
        *,
        model: str,
        prompt: str,
        temperature: float | None,
        max_tokens: int,
        tools: Sequence[ToolSpec] = (),
        steps: Sequence[Step] = (),
        final: bool = False,
    ) -> AsyncGenerator[Delta | ToolCall | Usage, None]: ...

    async def aclose(self) -> None: ...


def describe_failure(exc: Exception, provider: str, sdk: Any) -> str:
    """A run's error message for an exception from `sdk` (the openai or anthropic module: both
    SDKs share one generated exception hierarchy)."""
    if isinstance(exc, sdk.APITimeoutError):
        return f"{provider} did not answer in time"
    if isinstance(exc, sdk.APIStatusError):
        if exc.status_code == 200:  # an error event inside a stream that had started well
            return f"{provider} reported an error mid-stream: {_sdk_message(exc)}"
        return f"{provider} answered HTTP {exc.status_code}: {_sdk_message(exc)}"
    if isinstance(exc, sdk.APIError) and not isinstance(exc, sdk.APIConnectionError | sdk.APIResponseValidationError):
        return f"{provider} reported an error mid-stream: {_sdk_message(exc)}"
    # The SDKs do not wrap every transport error (anthropic lets a cut-off body through as is).
    if isinstance(exc, sdk.APIConnectionError | OSError) or (
        type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2")
    ):
        return f"the connection to {provider} failed or dropped"
    return f"{provider} sent a response that could not be read ({type(exc).__name__})"


def _sdk_message(exc: Any) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])[:500]
    return str(exc.message)[:500]


_WORDS = re.compile(r"\S+\s*|\s+")


class EchoProvider:
    """The offline stand-in: streams the rendered prompt back a few words at a time, then a line naming
    the tools it was offered (it never calls one).

    Tokens are counted as whitespace-separated words, and the output stops at max_tokens."""

    name = "echo"
    default_model = "echo"

    def __init__(self, *, chunk_words: int = 4, delay: float = 0.0):
        self.chunk_words = chunk_words
        self.delay = delay

    async def aclose(self) -> None:
        pass

    async def stream(
        self,
        *,
        model: str,
        prompt: str,
        temperature: float | None,
        max_tokens: int,
        tools: Sequence[ToolSpec] = (),
        steps: Sequence[Step] = (),
        final: bool = False,
    ) -> AsyncGenerator[Delta | ToolCall | Usage, None]:
        if tools:
            prompt += "\n\n[echo: tools offered: " + ", ".join(t.label or t.name for t in tools) + "]"
        words = _WORDS.findall(prompt)[:max_tokens]
        for start in range(0, len(words), self.chunk_words):
            if self.delay:
                await asyncio.sleep(self.delay)
            yield Delta("".join(words[start : start + self.chunk_words]))
        yield Usage(input_tokens=len(prompt.split()), output_tokens=len(words))


def estimate_tokens(text: str) -> int:
    """A usual count (about four bytes a token) for charging work the provider never reported."""
    return (len(text.encode()) + 3) // 4


def max_prompt_tokens(text: str) -> int:
    """An upper bound: byte-level BPE never makes more tokens than bytes, plus chat framing."""
    return len(text.encode()) + 16
