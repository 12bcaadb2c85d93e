"""Chat model providers behind one small interface: stream text deltas, then the usage.

`openai` speaks the Chat Completions API through the official SDK, so any compatible server
works (OpenAI, Azure, Mistral, Ollama, vLLM) via its base URL; `anthropic` streams the
Messages API through the official SDK; `echo` needs nothing and streams the prompt back, so a
fresh install can run skills end to end. Every provider failure becomes a ProviderError with
a message fit for the run's `error` field.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Protocol

import anthropic
import openai


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


def _describe(exc: Exception, provider: str) -> str:
    if isinstance(exc, openai.APITimeoutError | anthropic.APITimeoutError):
        return f"{provider} did not answer in time"
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        if exc.status_code == 200:  # an error event inside a stream that had started well
            return f"{provider} reported an error mid-stream: {_status_message(exc)}"
        return f"{provider} answered HTTP {exc.status_code}: {_status_message(exc)}"
    if isinstance(exc, openai.APIError | anthropic.APIError) and not isinstance(
        exc, openai.APIConnectionError | anthropic.APIConnectionError | openai.APIResponseValidationError
    ):
        return f"{provider} reported an error mid-stream: {_status_message(exc)}"
    # The SDKs do not wrap every transport error (anthropic lets a cut-off body through as is).
    if isinstance(exc, openai.APIConnectionError | anthropic.APIConnectionError | OSError) or (
        type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2")
    ):
        return f"the connection to {provider} failed or dropped"
    return f"{provider} sent a response that could not be read ({type(exc).__name__})"


def _status_message(exc: openai.APIError | anthropic.APIError) -> str:
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])[:500]
    return str(exc.message)[:500]


class OpenAIProvider:
    name = "openai"

    def __init__(self, *, api_key: str, base_url: str | None, default_model: str, timeout: float, retries: int):
        self.default_model = default_model
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=retries)

    async def aclose(self) -> None:
        await self.client.close()

    async def stream(
        self, *, model: str, prompt: str, temperature: float | None, max_tokens: int
    ) -> AsyncGenerator[Delta | Usage, None]:
        try:
            chunks = await self.client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
                temperature=openai.omit if temperature is None else temperature,
            )
            finished = False
            async with chunks:
                async for chunk in chunks:
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            yield Delta(choice.delta.content)
                        finished = finished or choice.finish_reason is not None
                    if chunk.usage is not None:
                        yield Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        except Exception as exc:  # noqa: BLE001 - every provider failure ends the run with a message
            raise ProviderError(_describe(exc, self.name)) from exc
        if not finished:
            raise ProviderError(f"{self.name} ended the stream before the answer was complete")


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None, default_model: str, timeout: float, retries: int):
        self.default_model = default_model
        self.client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=retries)

    async def aclose(self) -> None:
        await self.client.close()

    async def stream(
        self, *, model: str, prompt: str, temperature: float | None, max_tokens: int
    ) -> AsyncGenerator[Delta | Usage, None]:
        # The current Messages API has no temperature parameter (SDK 2.x), so it is not sent.
        input_tokens = output_tokens = 0
        finished = False
        try:
            events = await self.client.messages.create(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                max_tokens=max_tokens,
                stream=True,
            )
            async with events:
                async for event in events:
                    if event.type == "message_start":
                        input_tokens = event.message.usage.input_tokens
                        output_tokens = event.message.usage.output_tokens
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield Delta(event.delta.text)
                    elif event.type == "message_delta":
                        output_tokens = event.usage.output_tokens
                    elif event.type == "message_stop":
                        finished = True
        except Exception as exc:  # noqa: BLE001 - every provider failure ends the run with a message
            raise ProviderError(_describe(exc, self.name)) from exc
        if not finished:
            raise ProviderError(f"{self.name} ended the stream before the message was complete")
        yield Usage(input_tokens, output_tokens)


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
