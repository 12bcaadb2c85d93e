"""The `openai` provider: Chat Completions, streamed, through the official SDK.

Any OpenAI-compatible server works through `base_url`: OpenAI, Azure, Mistral, Ollama, vLLM.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator

import openai

from fluxopus.ai.providers import Delta, ProviderError, Usage, describe_failure


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
            raise ProviderError(describe_failure(exc, self.name, openai)) from exc
        if not finished:
            raise ProviderError(f"{self.name} ended the stream before the answer was complete")
