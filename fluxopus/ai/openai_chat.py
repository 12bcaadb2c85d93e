"""The `openai` provider: Chat Completions, streamed, through the official SDK.

Any OpenAI-compatible server works through `base_url`: OpenAI, Azure, Mistral, Ollama, vLLM.
Tools are functions (`tools`, streamed `tool_calls` deltas gathered by index); results go back as
`role: tool` messages after the assistant message that asked for them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

import openai

from fluxopus.ai.providers import Delta, ProviderError, Step, ToolCall, ToolSpec, Usage, describe_failure


def messages_of(prompt: str, steps: Sequence[Step]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    for step in steps:
        calls = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments or "{}"}}
            for c in step.calls
        ]
        messages.append({"role": "assistant", "content": step.text or None, "tool_calls": calls})
        messages.extend({"role": "tool", "tool_call_id": r.call_id, "content": r.content} for r in step.results)
    return messages


class OpenAIProvider:
    name = "openai"

    def __init__(self, *, api_key: str, base_url: str | None, default_model: str, timeout: float, retries: int):
        self.default_model = default_model
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=retries)

    async def aclose(self) -> None:
        await self.client.close()

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
        offered: Any = openai.omit
        if tools:
            offered = [
                {
                    "type": "function",
                    "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
                }
                for t in tools
            ]
        choice: Any = "none" if tools and final else openai.omit
        messages: Any = messages_of(prompt, steps)
        calls: dict[int, dict[str, str]] = {}  # by index: id, name, arguments so far
        try:
            chunks = await self.client.chat.completions.create(
                model=model,
                messages=messages,
                max_tokens=max_tokens,
                stream=True,
                stream_options={"include_usage": True},
                temperature=openai.omit if temperature is None else temperature,
                tools=offered,
                tool_choice=choice,
            )
            finished = False
            async with chunks:
                async for chunk in chunks:
                    for choice in chunk.choices:
                        if choice.delta and choice.delta.content:
                            yield Delta(choice.delta.content)
                        for part in (choice.delta.tool_calls if choice.delta else None) or ():
                            call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
                            call["id"] = part.id or call["id"]
                            if part.function is not None:
                                call["name"] += part.function.name or ""
                                call["arguments"] += part.function.arguments or ""
                        finished = finished or choice.finish_reason is not None
                    if chunk.usage is not None:
                        yield Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
        except Exception as exc:  # noqa: BLE001 - every provider failure ends the run with a message
            raise ProviderError(describe_failure(exc, self.name, openai)) from exc
        if not finished:
            raise ProviderError(f"{self.name} ended the stream before the answer was complete")
        for index in sorted(calls):
            call = calls[index]
            yield ToolCall(id=call["id"] or f"call_{index}", name=call["name"], arguments=call["arguments"])
