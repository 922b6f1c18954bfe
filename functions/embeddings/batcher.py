"""Micro-batching: texts from concurrent requests are coalesced into model batches.

Requests put their texts on one queue. A single worker takes what is waiting,
waits up to `max_wait` for more while the batch is short of `max_batch_size`,
and encodes the batch in a thread so the event loop keeps serving. While the
model works, newly arriving texts pile up and form the next batch, so many
small requests get batch throughput.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import numpy as np
from opentelemetry import trace
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext

from common import tracing
from functions.embeddings import metrics


@dataclass
class _Pending:
    text: str
    future: asyncio.Future[np.ndarray]
    span: SpanContext  # of the request that asked: the batch span links to every one


class MicroBatcher:
    """Encode texts through `encode` in coalesced batches; start with `start()`, end with `close()`."""

    def __init__(
        self, encode: Callable[[list[str]], np.ndarray], *, max_batch_size: int, max_wait: float
    ) -> None:
        self._encode = encode
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.create_task(self._run(), name="embedding-batcher")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the embedding model is shutting down"))

    async def embed(self, texts: list[str]) -> np.ndarray:
        """One unit-length vector per text, in order."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        if self._worker is None:
            raise RuntimeError("the embedding batcher is not running")
        loop = asyncio.get_running_loop()
        futures = []
        asking = trace.get_current_span().get_span_context()
        for text in texts:
            future: asyncio.Future[np.ndarray] = loop.create_future()
            self._queue.put_nowait(_Pending(text, future, asking))
            futures.append(future)
        return np.vstack(await asyncio.gather(*futures))

    async def _collect(self) -> list[_Pending]:
        batch = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            live = [p for p in batch if not p.future.done()]  # a cancelled request needs no vector
            if not live:
                continue
            started = time.perf_counter()
            try:
                with _batch_span(live):
                    vectors = await asyncio.to_thread(self._encode, [p.text for p in live])
            except Exception as exc:  # the failure belongs to the requests of this batch, not the worker
                for pending in live:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                continue
            metrics.encode_duration.observe(time.perf_counter() - started)
            metrics.model_batches.inc()
            metrics.batch_size.observe(len(live))
            metrics.texts_embedded.labels("model").inc(len(live))
            for pending, vector in zip(live, vectors, strict=True):
                if not pending.future.done():
                    pending.future.set_result(vector)


def _batch_span(batch: list[_Pending]) -> AbstractContextManager[Span]:
    """The span of one model batch: a child of the first request in it, linked to every request's span
    (a batch serves several requests, each in its own trace)."""
    asking = list({(p.span.trace_id, p.span.span_id): p.span for p in batch if p.span.is_valid}.values())
    parent = trace.set_span_in_context(NonRecordingSpan(asking[0])) if asking else None
    return tracing.tracer(__name__).start_as_current_span(
        "embeddings batch",
        context=parent,
        links=[Link(span) for span in asking],
        attributes={"gen_ai.operation.name": "embeddings", "victor.embeddings.batch_size": len(batch)},
    )
