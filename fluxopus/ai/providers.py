"""Chat model providers behind one small interface: stream text deltas, then the usage.

`openai` (ai/openai_chat.py) and `anthropic` (ai/anthropic_messages.py) wrap the official
SDKs and are imported only when configured (each SDK takes seconds to import); `echo`, here,
needs nothing and streams the prompt back, so a fresh install can run skills end to end.
Every provider failure becomes a ProviderError with a message fit for the run's `error` field.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class Delta:
    text: str


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
        self, *, model: str, prompt: str, temperature: float | None, max_tokens: int
    ) -> AsyncGenerator[Delta | Usage, None]: ...

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
    """The offline stand-in: streams the rendered prompt back a few words at a time.

    Tokens are counted as whitespace-separated words, and the output stops at max_tokens."""

    name = "echo"
    default_model = "echo"

    def __init__(self, *, chunk_words: int = 4, delay: float = 0.0):
        self.chunk_words = chunk_words
        self.delay = delay

    async def aclose(self) -> None:
        pass

    async def stream(
        self, *, model: str, prompt: str, temperature: float | None, max_tokens: int
    ) -> AsyncGenerator[Delta | Usage, None]:
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
