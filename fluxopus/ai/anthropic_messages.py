"""The `anthropic` provider: the Messages API, streamed, through the official SDK."""

from __future__ import annotations

from collections.abc import AsyncGenerator

import anthropic

from fluxopus.ai.providers import Delta, ProviderError, Usage, describe_failure


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
            raise ProviderError(describe_failure(exc, self.name, anthropic)) from exc
        if not finished:
            raise ProviderError(f"{self.name} ended the stream before the message was complete")
        yield Usage(input_tokens, output_tokens)
