"""Fake OpenAI and Anthropic servers speaking the real HTTP + SSE wire protocols.

The official SDKs run unmodified against them (`base_url=fake.url`). Behaviour is scripted per model name,
so concurrent tests that use different model names do not interfere.

Tool use: a Script's `tool_calls` makes the answer call tools in the provider's streaming format (OpenAI's
`tool_calls` deltas, Anthropic's `tool_use` blocks with `input_json_delta`), unless the request says
`tool_choice` none, as the real APIs honour it. `script_turns` scripts a conversation: each request for the
model takes the next script (the last one repeats).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.utils.server import ThreadedServer

Json = dict[str, Any]
Frames = tuple[list[str], list[str], list[str]]  # SSE frames before the text, one per text chunk, after it


@dataclass
class Script:
    chunks: list[str] | None = None  # text deltas; None = echo the last user message in ~4-word chunks
    delay: float = 0.0  # seconds slept before each chunk
    # Held by the test: after `gate_at` chunks the stream waits until the test sets `gate` (at most 30 s),
    # so "the model is still answering" lasts exactly as long as the test needs, not a guessed sleep.
    gate: threading.Event | None = None
    gate_at: int = 0
    input_tokens: int | None = None  # None = whitespace-separated words of the prompt
    output_tokens: int | None = None  # None = number of chunks
    status: int | None = None  # answer with this status and the provider's error JSON
    error_message: str = "fake provider error"
    hang: bool = False  # never answer (until the client goes away or the server closes)
    malformed: bool = False  # after the first chunk send a `data:` line that is not JSON, then end the body
    drop_after: int | None = None  # send this many chunks, then close the socket mid-body
    stream_error: str | None = None  # after the first chunk send the provider's mid-stream error event, then end
    # After the text: call these tools, (name, arguments as JSON text); each argument string is streamed in pieces.
    tool_calls: list[tuple[str, str]] | None = None


async def _wait_for(gate: threading.Event, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not gate.is_set():
        assert time.monotonic() < deadline, "the test never released the scripted stream"
        await asyncio.sleep(0.01)


class _Drop(Exception):
    """Raised inside a stream: uvicorn then closes the socket without the terminating chunk (drop_after)."""


class _QuietDrop(logging.Filter):
    # uvicorn logs every exception escaping the app with a traceback; a scripted drop is not news.
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Drop))


logging.getLogger("uvicorn.error").addFilter(_QuietDrop())


def _text(content: Any) -> str:
    """Message content is a string or a list of typed parts in both APIs; keep the text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


class _FakeProvider:
    path = ""
    _MALFORMED = "data: {this is not json\n\n"

    def __init__(self, api_key: str = "test-key") -> None:
        self.api_key = api_key
        self.requests: list[Json] = []
        self._scripts: dict[str, Script] = {}
        self._turns: dict[str, list[Script]] = {}
        self._served: Counter[str] = Counter()
        self._disconnects: Counter[str] = Counter()
        self._completed: Counter[str] = Counter()
        self._lock = threading.Lock()  # the server thread writes, the test thread reads
        self._closing = False
        self._server = ThreadedServer(Starlette(routes=[Route(self.path, self._handle, methods=["POST"])]))
        self._server.__enter__()

    def script(self, model: str, script: Script) -> None:
        with self._lock:
            self._scripts[model] = script

    def script_turns(self, model: str, scripts: list[Script]) -> None:
        """Each request for `model` answers with the next script; the last one answers every later request."""
        with self._lock:
            self._turns[model] = list(scripts)
            self._served[model] = 0

    def disconnects(self, model: str) -> int:
        with self._lock:
            return self._disconnects[model]

    def completed(self, model: str) -> int:
        with self._lock:
            return self._completed[model]

    def close(self) -> None:
        self._closing = True  # lets hanging and slow handlers end so uvicorn's graceful shutdown can finish
        self._server.__exit__(None, None, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Provider-specific parts, overridden by FakeOpenAI and FakeAnthropic.

    def _authorized(self, request: Request) -> bool:
        raise NotImplementedError

    def _error(self, status: int, message: str) -> JSONResponse:
        raise NotImplementedError

    def _complete(self, body: Json, text: str, usage: tuple[int, int], truncated: bool) -> Json:
        raise NotImplementedError

    def _frames(self, body: Json, chunks: list[str], usage: tuple[int, int], truncated: bool) -> Frames:
        raise NotImplementedError

    def _stream_error_frame(self, message: str) -> str:
        raise NotImplementedError

    async def _handle(self, request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            return self._error(400, "request body is not valid JSON")
        with self._lock:
            self.requests.append(body)
        if not self._authorized(request):
            return self._error(401, "invalid api key")
        model = str(body.get("model", ""))
        with self._lock:
            turns = self._turns.get(model)
            if turns:
                script = turns[min(self._served[model], len(turns) - 1)]
                self._served[model] += 1
            else:
                script = self._scripts.get(model) or Script()
        if script.hang:
            while not self._closing:
                if await request.is_disconnected():
                    self._count(self._disconnects, model)
                    break
                await asyncio.sleep(0.05)
            return Response(status_code=503)
        if script.status is not None:
            return self._error(script.status, script.error_message)
        if (invalid := self._invalid(request, body)) is not None:
            return self._error(400, invalid)

        messages = body.get("messages") or []
        if script.chunks is not None:
            chunks = script.chunks
        else:
            words = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "").split()
            chunks = [" ".join(words[i : i + 4]) + (" " if i + 4 < len(words) else "") for i in range(0, len(words), 4)]
        prompt = [_text(body.get("system"))] + [_text(m.get("content")) for m in messages]
        n_in = script.input_tokens if script.input_tokens is not None else sum(len(p.split()) for p in prompt)
        n_out = script.output_tokens if script.output_tokens is not None else len(chunks)
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        truncated = limit is not None and n_out >= limit

        if not body.get("stream"):  # delay still applies; malformed, drop_after and stream_error are stream-only
            await asyncio.sleep(script.delay * len(chunks))
            self._count(self._completed, model)
            return JSONResponse(self._complete(body, "".join(chunks), (n_in, n_out), truncated))
        calls = None if self._tools_off(body) else script.tool_calls
        head, deltas, tail = self._frames(body, chunks, (n_in, n_out), truncated)
        if calls:
            tail = self._tool_frames(body, calls, (n_in, n_out))
        return StreamingResponse(self._drive(model, script, head, deltas, tail), media_type="text/event-stream")

    def _invalid(self, request: Request, body: Json) -> str | None:
        return None

    def _tools_off(self, body: Json) -> bool:
        raise NotImplementedError

    def _tool_frames(self, body: Json, calls: list[tuple[str, str]], usage: tuple[int, int]) -> list[str]:
        """The frames after the text of an answer that calls `calls`, to the end of the stream."""
        raise NotImplementedError

    async def _drive(
        self, model: str, script: Script, head: list[str], deltas: list[str], tail: list[str]
    ) -> AsyncIterator[str]:
        # When the client goes away, Starlette cancels this generator at its current await (uvicorn speaks
        # ASGI 2.3, so StreamingResponse listens for http.disconnect): `finally` then sees finished=False.
        finished = dropped = False
        try:
            for frame in head:
                yield frame
            for i, frame in enumerate(deltas):
                if i == script.drop_after:
                    dropped = True
                    raise _Drop
                if script.delay:
                    await asyncio.sleep(script.delay)
                if script.gate is not None and i == script.gate_at:
                    await _wait_for(script.gate)
                if self._closing:
                    return
                yield frame
                if i == 0 and script.malformed:
                    yield self._MALFORMED
                    finished = True
                    return
                if i == 0 and script.stream_error is not None:
                    yield self._stream_error_frame(script.stream_error)
                    finished = True  # the real API ends the body after an error event
                    return
            if script.drop_after is not None:  # fewer chunks than drop_after: still never finish
                dropped = True
                raise _Drop
            for frame in tail:
                yield frame
            finished = True
        finally:
            if finished:
                self._count(self._completed, model)
            elif not dropped and not self._closing:
                self._count(self._disconnects, model)

    def _count(self, counter: Counter[str], model: str) -> None:
        with self._lock:
            counter[model] += 1


def _sse(data: Json) -> str:
    return f"data: {json.dumps(data)}\n\n"


def _event(data: Json) -> str:
    """Anthropic names every SSE event after its payload's type."""
    return f"event: {data['type']}\n" + _sse(data)


class FakeOpenAI(_FakeProvider):
    """POST /v1/chat/completions with `Authorization: Bearer <api_key>`."""

    path = "/v1/chat/completions"
    _ERRORS = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key")}
    _ERRORS |= {404: ("invalid_request_error", "model_not_found"), 429: ("requests", "rate_limit_exceeded")}

    @property
    def url(self) -> str:
        return f"{self._server.url}/v1"

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.api_key}"

    def _error(self, status: int, message: str) -> JSONResponse:
        kind, code = self._ERRORS.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        error = {"message": message, "type": kind, "param": None, "code": code}
        return JSONResponse({"error": error}, status_code=status)

    def _stream_error_frame(self, message: str) -> str:
        # OpenAI has no `event:` names; a mid-stream failure is a bare `data: {"error": ...}` line.
        return _sse({"error": {"message": message, "type": "server_error", "param": None, "code": None}})

    def _complete(self, body: Json, text: str, usage: tuple[int, int], truncated: bool) -> Json:
        message = {"role": "assistant", "content": text, "refusal": None}
        choice = {"index": 0, "message": message, "finish_reason": "length" if truncated else "stop", "logprobs": None}
        return {**self._envelope(body, "chat.completion"), "choices": [choice], "usage": self._usage(usage)}

    def _frames(self, body: Json, chunks: list[str], usage: tuple[int, int], truncated: bool) -> Frames:
        env = self._envelope(body, "chat.completion.chunk")  # one id for every chunk of a completion, as OpenAI does

        def chunk(delta: Json, finish: str | None = None) -> str:
            return _sse({**env, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]})

        head = [chunk({"role": "assistant", "content": ""})]  # OpenAI opens with an empty role-only delta
        tail = [chunk({}, "length" if truncated else "stop")]
        if (body.get("stream_options") or {}).get("include_usage"):
            tail.append(_sse({**env, "choices": [], "usage": self._usage(usage)}))
        return head, [chunk({"content": c}) for c in chunks], [*tail, "data: [DONE]\n\n"]

    def _tools_off(self, body: Json) -> bool:
        return not body.get("tools") or body.get("tool_choice") == "none"

    def _tool_frames(self, body: Json, calls: list[tuple[str, str]], usage: tuple[int, int]) -> list[str]:
        env = self._envelope(body, "chat.completion.chunk")

        def chunk(delta: Json, finish: str | None = None) -> str:
            return _sse({**env, "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]})

        frames = []
        for i, (name, arguments) in enumerate(calls):
            opening = {"index": i, "id": f"call_{uuid.uuid4().hex[:24]}", "type": "function"}
            frames.append(chunk({"tool_calls": [opening | {"function": {"name": name, "arguments": ""}}]}))
            for start in range(0, len(arguments), 7):  # the arguments arrive in pieces, as OpenAI streams them
                piece = arguments[start : start + 7]
                frames.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
        frames.append(chunk({}, "tool_calls"))
        if (body.get("stream_options") or {}).get("include_usage"):
            frames.append(_sse({**env, "choices": [], "usage": self._usage(usage)}))
        return [*frames, "data: [DONE]\n\n"]

    @staticmethod
    def _envelope(body: Json, kind: str) -> Json:
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": kind, "created": int(time.time())}
        return {**head, "model": body.get("model")}

    @staticmethod
    def _usage(usage: tuple[int, int]) -> Json:
        return {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)}


class FakeAnthropic(_FakeProvider):
    """POST /v1/messages with `x-api-key: <api_key>` or `Authorization: Bearer <api_key>`; base_url has no /v1."""

    path = "/v1/messages"
    # The anthropic SDK silently skips SSE frames without an `event:` name, so name it to make it parse.
    _MALFORMED = "event: content_block_delta\ndata: {this is not json\n\n"
    _ERRORS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
    _ERRORS |= {404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}

    @property
    def url(self) -> str:
        return self._server.url

    def _authorized(self, request: Request) -> bool:
        # anthropic 2.x sends api_key as `Authorization: Bearer`; the HTTP API (and 0.x SDKs) use x-api-key.
        bearer = request.headers.get("authorization") == f"Bearer {self.api_key}"
        return bearer or request.headers.get("x-api-key") == self.api_key

    def _invalid(self, request: Request, body: Json) -> str | None:
        # The real API rejects these; checking them keeps callers honest.
        if "anthropic-version" not in request.headers:
            return "anthropic-version: header is required"
        return None if isinstance(body.get("max_tokens"), int) else "max_tokens: Field required"

    def _error(self, status: int, message: str) -> JSONResponse:
        kind = self._ERRORS.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status_code=status)

    def _stream_error_frame(self, message: str) -> str:
        return _event({"type": "error", "error": {"type": "overloaded_error", "message": message}})

    def _message(self, body: Json, content: list[Json], stop: str | None, usage: Json) -> Json:
        head = {"id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant"}
        return {
            **head,
            "model": body.get("model"),
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": usage,
        }

    def _complete(self, body: Json, text: str, usage: tuple[int, int], truncated: bool) -> Json:
        stop = "max_tokens" if truncated else "end_turn"
        tokens = {"input_tokens": usage[0], "output_tokens": usage[1]}
        return self._message(body, [{"type": "text", "text": text}], stop, tokens)

    def _frames(self, body: Json, chunks: list[str], usage: tuple[int, int], truncated: bool) -> Frames:
        start = self._message(body, [], None, {"input_tokens": usage[0], "output_tokens": 1})
        head = [
            _event({"type": "message_start", "message": start}),
            _event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            _event({"type": "ping"}),
        ]
        deltas = [
            _event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": c}})
            for c in chunks
        ]
        delta = {"stop_reason": "max_tokens" if truncated else "end_turn", "stop_sequence": None}
        tail = [
            _event({"type": "content_block_stop", "index": 0}),
            _event({"type": "message_delta", "delta": delta, "usage": {"output_tokens": usage[1]}}),
            _event({"type": "message_stop"}),
        ]
        return head, deltas, tail

    def _tools_off(self, body: Json) -> bool:
        return not body.get("tools") or (body.get("tool_choice") or {}).get("type") == "none"

    def _tool_frames(self, body: Json, calls: list[tuple[str, str]], usage: tuple[int, int]) -> list[str]:
        frames = [_event({"type": "content_block_stop", "index": 0})]
        for i, (name, arguments) in enumerate(calls, start=1):
            block = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:24]}", "name": name, "input": {}}
            frames.append(_event({"type": "content_block_start", "index": i, "content_block": block}))
            for start in range(0, len(arguments), 7):
                delta = {"type": "input_json_delta", "partial_json": arguments[start : start + 7]}
                frames.append(_event({"type": "content_block_delta", "index": i, "delta": delta}))
            frames.append(_event({"type": "content_block_stop", "index": i}))
        delta = {"stop_reason": "tool_use", "stop_sequence": None}
        frames.append(_event({"type": "message_delta", "delta": delta, "usage": {"output_tokens": usage[1]}}))
        return [*frames, _event({"type": "message_stop"})]
