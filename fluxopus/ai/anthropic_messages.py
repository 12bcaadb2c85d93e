"""The `anthropic` provider: the Messages API, streamed, through the official SDK.

Tools are `tool_use` content blocks (their input streamed as `input_json_delta`); results go back
as `tool_result` blocks in the next user message.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from typing import Any

import anthropic

from fluxopus.ai.providers import Delta, ProviderError, Step, ToolCall, ToolSpec, Usage, describe_failure


def messages_of(prompt: str, steps: Sequence[Step]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    for step in steps:
        content: list[dict[str, Any]] = [{"type": "text", "text": step.text}] if step.text else []
        content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.parsed() or {}} for c in step.calls]
        messages.append({"role": "assistant", "content": content})
        results = [
            {"type": "tool_result", "tool_use_id": r.call_id, "content": r.content, "is_error": r.is_error}
            for r in step.results
        ]
        messages.append({"role": "user", "content": results})
    return messages


class AnthropicProvider:
    name = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None, default_model: str, timeout: float, retries: int):
        self.default_model = default_model
        self.client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=retries)

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
        # The current Messages API has no temperature parameter (SDK 2.x), so it is not sent.
        input_tokens = output_tokens = 0
        finished = False
        offered: Any = anthropic.omit
        if tools:
            offered = [{"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools]
        choice: Any = {"type": "none"} if tools and final else anthropic.omit
        messages: Any = messages_of(prompt, steps)
        calls: dict[int, dict[str, str]] = {}  # by content block index: id, name, input JSON so far
        try:
            events = await self.client.messages.create(
                model=model,
                messages=messages,
                max_tokens=max_tokens,
                stream=True,
                tools=offered,
                tool_choice=choice,
            )
            async with events:
                async for raw in events:
                    event: Any = raw  # the SDK's union of event types, told apart by `type` below
                    if event.type == "message_start":
                        input_tokens = event.message.usage.input_tokens
                        output_tokens = event.message.usage.output_tokens
                    elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                        block = event.content_block
                        calls[event.index] = {"id": block.id, "name": block.name, "arguments": ""}
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        yield Delta(event.delta.text)
                    elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                        if event.index in calls:
                            calls[event.index]["arguments"] += event.delta.partial_json
                    elif event.type == "message_delta":
                        output_tokens = event.usage.output_tokens
                    elif event.type == "message_stop":
                        finished = True
        except Exception as exc:  # noqa: BLE001 - every provider failure ends the run with a message
            raise ProviderError(describe_failure(exc, self.name, anthropic)) from exc
        if not finished:
            raise ProviderError(f"{self.name} ended the stream before the message was complete")
        for index in sorted(calls):
            call = calls[index]
            yield ToolCall(id=call["id"], name=call["name"], arguments=call["arguments"])
        yield Usage(input_tokens, output_tokens)
