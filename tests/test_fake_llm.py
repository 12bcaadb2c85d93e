"""The fake providers against the real openai and anthropic SDKs, one test per scripted mode."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from tests.utils.fake_llm import FakeAnthropic, FakeOpenAI, Script
from tests.utils.http import eventually

# Real servers, subprocesses or floods: seconds each (`pytest -m "not slow"` skips them).
pytestmark = pytest.mark.slow

PROVIDERS = ["openai", "anthropic"]
SDKS: dict[str, Any] = {"openai": openai, "anthropic": anthropic}


@pytest.fixture(scope="module")
def fakes() -> Iterator[dict[str, FakeOpenAI | FakeAnthropic]]:
    with FakeOpenAI() as fake_openai, FakeAnthropic() as fake_anthropic:
        yield {"openai": fake_openai, "anthropic": fake_anthropic}


@dataclass
class Streamed:
    text: str = ""
    pieces: int = 0
    input_tokens: int | None = None
    output_tokens: int | None = None
    stop: str | None = None


async def stream(
    provider: str,
    fake: FakeOpenAI | FakeAnthropic,
    model: str,
    *,
    prompt: str = "hello",
    system: str | None = None,
    max_tokens: int = 100,
    api_key: str | None = None,
    timeout: float = 5.0,
    stop_after: int | None = None,  # close the stream after this many text deltas
    into: Streamed | None = None,  # what arrived stays readable when the stream raises
) -> Streamed:
    """Stream one reply through the real SDK; exceptions propagate."""
    out = into or Streamed()
    key = api_key or fake.api_key
    if provider == "openai":
        messages: list[Any] = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
        async with openai.AsyncOpenAI(api_key=key, base_url=fake.url, max_retries=0, timeout=timeout) as client:
            chunks = await client.chat.completions.create(
                model=model,
                messages=messages,
                max_completion_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            async with chunks:
                async for chunk in chunks:
                    if chunk.usage:
                        out.input_tokens, out.output_tokens = chunk.usage.prompt_tokens, chunk.usage.completion_tokens
                    for choice in chunk.choices:
                        out.stop = choice.finish_reason or out.stop
                        if choice.delta.content:
                            out.text += choice.delta.content
                            out.pieces += 1
                    if out.pieces == stop_after:
                        break
        return out
    extra: dict[str, Any] = {"system": system} if system else {}
    async with anthropic.AsyncAnthropic(api_key=key, base_url=fake.url, max_retries=0, timeout=timeout) as client:
        events = await client.messages.create(
            model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": prompt}], stream=True, **extra
        )
        async with events:
            async for event in events:
                if event.type == "message_start":
                    out.input_tokens = event.message.usage.input_tokens
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    out.text += event.delta.text
                    out.pieces += 1
                elif event.type == "message_delta":
                    out.output_tokens, out.stop = event.usage.output_tokens, event.delta.stop_reason
                if out.pieces == stop_after:
                    break
    return out


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_streams_scripted_text_and_usage(provider: str, fakes: dict[str, Any]) -> None:
    fake, model = fakes[provider], f"{provider}-scripted"
    fake.script(model, Script(chunks=["Hel", "lo", " world"], input_tokens=7, output_tokens=3))

    out = await stream(provider, fake, model)

    assert (out.text, out.pieces, out.input_tokens, out.output_tokens) == ("Hello world", 3, 7, 3)
    assert out.stop == ("stop" if provider == "openai" else "end_turn")
    assert any(r["model"] == model and r["stream"] is True for r in fake.requests)
    await eventually(lambda: fake.completed(model) == 1)
    assert fake.disconnects(model) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_echoes_the_prompt_and_counts_words(provider: str, fakes: dict[str, Any]) -> None:
    fake, model = fakes[provider], f"{provider}-echo"
    prompt = "one two three four five six seven eight nine"

    out = await stream(provider, fake, model, prompt=prompt, system="be brief")
    assert (out.text, out.pieces, out.input_tokens, out.output_tokens) == (prompt, 3, 11, 3)

    capped = await stream(provider, fake, model, prompt=prompt, max_tokens=3)
    assert capped.stop == ("length" if provider == "openai" else "max_tokens")


async def test_non_streaming_replies(fakes: dict[str, Any]) -> None:
    async with openai.AsyncOpenAI(api_key=fakes["openai"].api_key, base_url=fakes["openai"].url, max_retries=0) as oa:
        completion = await oa.chat.completions.create(model="plain", messages=[{"role": "user", "content": "hi you"}])
    assert completion.choices[0].message.content == "hi you"
    assert completion.usage is not None and completion.usage.total_tokens == 3
    fake = fakes["anthropic"]
    async with anthropic.AsyncAnthropic(api_key=fake.api_key, base_url=fake.url, max_retries=0) as an:
        message = await an.messages.create(
            model="plain", max_tokens=10, messages=[{"role": "user", "content": "hi you"}]
        )
    assert message.content[0].type == "text" and message.content[0].text == "hi you"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (2, 1)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_wrong_key_is_an_authentication_error(provider: str, fakes: dict[str, Any]) -> None:
    with pytest.raises(SDKS[provider].AuthenticationError):
        await stream(provider, fakes[provider], f"{provider}-auth", api_key="wrong")


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    ("status", "error"), [(400, "BadRequestError"), (429, "RateLimitError"), (500, "InternalServerError")]
)
async def test_status_maps_to_the_sdk_error(provider: str, status: int, error: str, fakes: dict[str, Any]) -> None:
    fake, model = fakes[provider], f"{provider}-status-{status}"
    fake.script(model, Script(status=status, error_message=f"scripted {status}"))
    with pytest.raises(getattr(SDKS[provider], error)) as caught:
        await stream(provider, fake, model)
    assert caught.value.status_code == status and f"scripted {status}" in str(caught.value)


async def test_anthropic_529_is_overloaded(fakes: dict[str, Any]) -> None:
    fakes["anthropic"].script("overloaded", Script(status=529))
    with pytest.raises(anthropic.OverloadedError):
        await stream("anthropic", fakes["anthropic"], "overloaded")


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_hang_times_out_and_counts_the_disconnect(provider: str, fakes: dict[str, Any]) -> None:
    fake, model = fakes[provider], f"{provider}-hang"
    fake.script(model, Script(hang=True))
    with pytest.raises(SDKS[provider].APITimeoutError):
        await stream(provider, fake, model, timeout=0.5)
    await eventually(lambda: fake.disconnects(model) == 1)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_malformed_chunk_is_a_json_decode_error(provider: str, fakes: dict[str, Any]) -> None:
    # Neither SDK wraps it: the raw json.JSONDecodeError escapes the stream iterator.
    fake, model = fakes[provider], f"{provider}-malformed"
    fake.script(model, Script(chunks=["a ", "b"], malformed=True))
    with pytest.raises(json.JSONDecodeError):
        await stream(provider, fake, model)


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_dropped_connection_breaks_the_stream(provider: str, fakes: dict[str, Any]) -> None:
    fake, model = fakes[provider], f"{provider}-drop"
    fake.script(model, Script(chunks=["a ", "b ", "c"], drop_after=2))
    seen = Streamed()
    if provider == "openai":
        # openai wraps the transport error; anthropic lets httpx2's error escape as is.
        with pytest.raises(openai.APIConnectionError) as caught:
            await stream(provider, fake, model, into=seen)
        assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    else:
        with pytest.raises(httpx2.RemoteProtocolError, match="incomplete chunked read"):
            await stream(provider, fake, model, into=seen)
    assert seen.text == "a b " and fake.completed(model) == 0 and fake.disconnects(model) == 0


@pytest.mark.parametrize(("provider", "error"), [("openai", "APIError"), ("anthropic", "APIStatusError")])
async def test_mid_stream_error_event(provider: str, error: str, fakes: dict[str, Any]) -> None:
    # The stream arrived with HTTP 200, so anthropic raises the base APIStatusError (status 200), not OverloadedError.
    fake, model = fakes[provider], f"{provider}-stream-error"
    fake.script(model, Script(chunks=["a ", "b"], stream_error="overloaded, try later"))
    with pytest.raises(getattr(SDKS[provider], error), match="overloaded, try later") as caught:
        await stream(provider, fake, model)
    assert type(caught.value).__name__ == error


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_client_closing_early_is_a_disconnect(provider: str, fakes: dict[str, Any]) -> None:
    fake, model = fakes[provider], f"{provider}-slow"
    fake.script(model, Script(chunks=["tick "] * 100, delay=0.05))
    out = await stream(provider, fake, model, stop_after=2)
    assert out.text == "tick tick "
    await eventually(lambda: fake.disconnects(model) == 1)
    assert fake.completed(model) == 0


@pytest.mark.parametrize("provider", PROVIDERS)
async def test_many_concurrent_slow_streams(provider: str, fakes: dict[str, Any]) -> None:
    fake, model = fakes[provider], f"{provider}-concurrent"
    fake.script(model, Script(chunks=["x "] * 3, delay=0.2))  # 0.6 s each, 15 s if served one at a time
    started = time.monotonic()
    results = await asyncio.gather(*(stream(provider, fake, model) for _ in range(25)))
    assert time.monotonic() - started < 8
    assert all(r.text == "x " * 3 for r in results)
    await eventually(lambda: fake.completed(model) == 25)


async def test_close_ends_a_hanging_request_promptly() -> None:
    fake = FakeOpenAI()
    fake.script("stuck", Script(hang=True))
    request = asyncio.create_task(stream("openai", fake, "stuck", timeout=30))
    await eventually(lambda: len(fake.requests) == 1)
    started = time.monotonic()
    await asyncio.to_thread(fake.close)
    assert time.monotonic() - started < 3
    with pytest.raises(openai.APIStatusError):  # the hang gives way to a 503
        await request
