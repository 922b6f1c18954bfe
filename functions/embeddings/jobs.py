"""Index runs as jobs: an id, a record in Redis that any replica answers, progress events, a drain at stop.

Every index run that may outlive its request (in the background, streamed, or asked
for by an `ai.victor.index.requested` event) is a job: a task of the function that
keeps its `IndexJob` record in Redis (JOB_TTL_SECONDS) and, when a broker is
configured, publishes `ai.victor.index.progress` (at most one a second, plus the
last report). A stopping replica waits VICTOR_INDEX_DRAIN_SECONDS for its jobs,
then cancels them and marks them `interrupted`: indexing is incremental by content
hash, so submitting the same request again redoes only what was left, and the next
replica to start resumes an HTTP client's interrupted job over a path by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec

from common.answers import INTERNAL_ERROR, Refusal, refusal_body
from common.auth import event_credentials
from common.cache import Cache
from common.cloudevents import new_event
from common.runtime import Runtime
from common.store import store_outage
from eventing.client import DeliveryError, send_event
from eventing.schemas.embeddings import (
    INDEX_PROGRESS,
    IndexCompleted,
    IndexJob,
    IndexJobState,
    IndexProgress,
    IndexRequested,
    JobError,
)
from functions.embeddings import indexer
from functions.embeddings.service import EmbeddingService, EmbeddingsState

log = logging.getLogger(__name__)
T = TypeVar("T")
# How long a job's record is kept after its last change.
JOB_TTL_SECONDS = 24 * 3600
# Seconds between two progress events of one job (the last report is always sent).
EVENT_INTERVAL = 1.0
# A progress event that the broker does not take within this is dropped: the indexing goes on.
EVENT_TIMEOUT = 5.0
# Seconds a replica's claim on an interrupted job holds before another replica may take it.
CLAIM_SECONDS = 60
INTERRUPTED = JobError(
    status_code=503,
    error="interrupted",
    detail="the replica running this job stopped before it ended; submit the same request again "
    "(files already indexed are skipped)",
)
INTERRUPTED_RESUMABLE = JobError(
    status_code=503,
    error="interrupted",
    detail="the replica running this job stopped before it ended; the next replica to start resumes it, "
    "or submit the same request again (files already indexed are skipped)",
)
_decoder = msgspec.json.Decoder(IndexJob)


def status_url(job_id: str) -> str:
    return f"/v1/index/jobs/{job_id}"


def new_job_id() -> str:
    return str(uuid.uuid4())


def event_job_id(source: str, event_id: str) -> str:
    """The job id of the run an event asked for: the same for every delivery of that event."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{source}\0{event_id}"))


def parse_job_id(raw: str) -> str:
    """The job id in its canonical form; 422 for anything that is not a UUID."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise Refusal(
            422, f"{raw!r} is not a job id (a UUID, as POST /v1/index answered it)", "invalid_request"
        ) from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _key(cache: Cache, job_id: str) -> str:
    return cache.key("index", "job", job_id)


def _resumable_key(cache: Cache, job_id: str) -> str:
    """The request of an interrupted job that a starting replica runs again."""
    return cache.key("index", "resumable", job_id)


def _interrupted_key(cache: Cache) -> str:
    """The set of interrupted jobs' ids waiting to be resumed."""
    return cache.key("index", "interrupted")


async def _strictly(cache: Cache, call: Awaitable[T]) -> T:
    """A Redis call whose failure is the 503 (with Retry-After) of a store outage."""
    try:
        return await call
    except cache.errors as exc:
        raise store_outage(exc) or Refusal.unavailable(
            f"Redis is unavailable ({type(exc).__name__}); retry later", "store_unavailable"
        ) from exc


def _client(cache: Cache) -> Any:
    if cache.client is None:
        raise Refusal.unavailable(
            "index jobs are kept in Redis, and REDIS_URL is not set", "store_unavailable"
        )
    return cache.client


async def save(cache: Cache, job: IndexJob) -> None:
    """Store the job's record for JOB_TTL_SECONDS; a 503 refusal when Redis cannot take it."""
    await _strictly(
        cache, _client(cache).set(_key(cache, job.job_id), msgspec.json.encode(job), ex=JOB_TTL_SECONDS)
    )


async def load(cache: Cache, job_id: str) -> IndexJob | None:
    """The job's latest record, None when no such job is kept; a 503 refusal when Redis is away."""
    raw = await _strictly(cache, _client(cache).get(_key(cache, job_id)))
    return _decoder.decode(raw) if raw is not None else None


class IndexJobRun:
    """One index run as a job: it keeps its record and publishes its progress as it goes."""

    def __init__(
        self,
        runtime: Runtime[EmbeddingsState],
        service: EmbeddingService,
        request: IndexRequested,
        job_id: str,
        listener: indexer.Progress | None = None,
        *,
        resumable: bool = False,
    ) -> None:
        self.runtime = runtime
        # Resumed by the next replica to start when interrupted: jobs over a path that an HTTP client
        # submitted (a broker redelivers an event's own; inline documents are not kept in Redis).
        self.resumable = resumable and request.path is not None
        self.service = service
        self.request = request
        self.listener = listener
        now = _now()
        self.job = IndexJob(
            job_id=job_id,
            state="running",
            status_url=status_url(job_id),
            collection=request.collection,
            created_at=now,
            updated_at=now,
        )
        self._last_event = float("-inf")

    async def record(self) -> None:
        """Store the record; a Redis outage only costs followers an update (logged)."""
        try:
            await save(self.runtime.cache, self.job)
        except Refusal as exc:
            log.warning("index job %s: its record was not updated: %s", self.job.job_id, exc.message)

    async def _report(self, progress: IndexProgress) -> None:
        progress.job_id = self.job.job_id
        self.job.progress = progress
        self.job.updated_at = _now()
        await self.record()
        last = progress.chunks_done == progress.chunks_total
        if last or time.monotonic() - self._last_event >= EVENT_INTERVAL:
            self._last_event = time.monotonic()
            await self._publish(progress)
        if self.listener is not None:
            await self.listener(progress)

    async def _publish(self, progress: IndexProgress) -> None:
        broker = self.runtime.settings.broker_url
        if broker is None:
            return
        event = new_event(INDEX_PROGRESS, self.runtime.source, progress, subject=self.job.job_id)
        credentials = event_credentials(self.runtime.settings)
        try:
            await send_event(self.runtime.http, broker, event, timeout=EVENT_TIMEOUT, credentials=credentials)
        except DeliveryError as exc:  # a notification: the indexing goes on without it
            log.warning("index job %s: a progress event was not delivered: %s", self.job.job_id, exc)

    async def _end(
        self, state: IndexJobState, *, result: IndexCompleted | None = None, error: JobError | None = None
    ) -> None:
        self.job.state, self.job.result, self.job.error = state, result, error
        self.job.updated_at = _now()
        await self.record()

    async def run(self) -> IndexCompleted:
        """Index, recording the outcome: `completed`, `failed` (re-raised) or `interrupted` (cancelled)."""
        try:
            result = await indexer.index(
                self.service, self.runtime.settings.workspace_dir, self.request, self._report
            )
        except asyncio.CancelledError:
            log.warning("index job %s was interrupted", self.job.job_id)
            resumable = self.resumable and await self._keep_for_resume()
            await self._end("interrupted", error=INTERRUPTED_RESUMABLE if resumable else INTERRUPTED)
            raise
        except Exception as exc:
            refusal = exc if isinstance(exc, Refusal) else store_outage(exc)
            if refusal is None:
                log.exception("index job %s failed", self.job.job_id)
                refusal = INTERNAL_ERROR
            await self._end("failed", error=msgspec.convert(refusal_body(refusal), JobError))
            raise
        await self._end("completed", result=result)
        return result

    async def run_unobserved(self) -> None:
        """`run` for a job nobody awaits: its failure is in its record (and the log)."""
        with contextlib.suppress(Exception):
            await self.run()

    async def _keep_for_resume(self) -> bool:
        """Keep the request for the next replica to start; False when Redis cannot keep it."""
        cache, job_id = self.runtime.cache, self.job.job_id
        request = msgspec.json.encode(msgspec.convert(msgspec.to_builtins(self.request), IndexRequested))
        try:
            async with _client(cache).pipeline(transaction=True) as pipe:
                pipe.set(_resumable_key(cache, job_id), request, ex=JOB_TTL_SECONDS)
                pipe.sadd(_interrupted_key(cache), job_id)
                pipe.expire(_interrupted_key(cache), JOB_TTL_SECONDS)
                await _strictly(cache, pipe.execute())
        except Refusal as exc:
            log.warning("index job %s cannot be resumed: %s", job_id, exc.message)
            return False
        return True


def check_accepting(runtime: Runtime[EmbeddingsState]) -> None:
    """Refuse (503, retried elsewhere) a new job once this replica has begun to stop."""
    if runtime.state.draining:
        raise Refusal.unavailable("this replica is stopping; send the index request again")


def start(runtime: Runtime[EmbeddingsState], job_id: str, work: Awaitable[T]) -> asyncio.Task[T]:
    """Run `work` as the replica's job `job_id`: beside the server, and drained by `drain` at stop."""
    task: asyncio.Task[T] = runtime.background(work, f"index job {job_id}")
    jobs = runtime.state.jobs
    jobs[job_id] = task
    task.add_done_callback(lambda _: jobs.pop(job_id, None))
    return task


async def resume_interrupted(runtime: Runtime[EmbeddingsState], service: EmbeddingService) -> list[str]:
    """Run again, here, the interrupted jobs this replica claims (SET NX with CLAIM_SECONDS, so each
    job is claimed by one replica); their ids. Never raises: with Redis away, nothing is resumed."""
    cache = runtime.cache
    if cache.client is None:
        return []
    resumed = []
    errors: tuple[type[Exception], ...] = (*cache.errors, Refusal)
    try:
        for raw_id in await cache.client.smembers(_interrupted_key(cache)):  # type: ignore[misc]
            job_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
            if not await cache.client.set(
                cache.key("index", "claim", job_id), b"1", nx=True, ex=CLAIM_SECONDS
            ):
                continue  # another replica resumes it
            raw = await cache.client.get(_resumable_key(cache, job_id))
            previous = await load(cache, job_id)
            if raw is not None and not runtime.state.draining:
                run = IndexJobRun(
                    runtime, service, msgspec.json.decode(raw, type=IndexRequested), job_id, resumable=True
                )
                run.job.created_at = previous.created_at if previous is not None else run.job.created_at
                await run.record()
                start(runtime, job_id, run.run_unobserved())
                resumed.append(job_id)
            await cache.client.delete(_resumable_key(cache, job_id))
            await cache.client.srem(_interrupted_key(cache), job_id)  # type: ignore[misc]
    except errors as exc:
        log.warning("interrupted index jobs were not resumed: %s", exc)
    if resumed:
        log.info("resumed %d interrupted index job(s): %s", len(resumed), ", ".join(resumed))
    return resumed


async def drain(runtime: Runtime[EmbeddingsState], seconds: float) -> None:
    """Refuse new jobs, wait up to `seconds` for the running ones, then cancel (interrupt) the rest."""
    runtime.state.draining = True
    running = list(runtime.state.jobs.values())
    if not running:
        return
    log.info("waiting up to %g s for %d index job(s) to end", seconds, len(running))
    _, pending = await asyncio.wait(running, timeout=seconds)
    for task in pending:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
