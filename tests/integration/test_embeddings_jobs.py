"""Index jobs over real HTTP: 202 and a job to follow, progress CloudEvents to the broker, a drain at stop."""

# ruff: noqa: F811 - pytest fixtures imported from tests.support.embeddings

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from common.cache import Cache
from common.cloudevents import from_http, new_event, to_binary
from eventing.dev.embedded import free_port
from eventing.schemas.embeddings import INDEX_REQUESTED, Document, IndexRequested
from functions.embeddings import jobs
from tests.support.embeddings import (  # noqa: F401 - fixtures
    copy_code_repo,
    embedding_settings,
    embeddings_app,
    minilm,
    wait_started,
)
from tests.support.recorder import EventRecorder
from tests.support.servers import running

pytestmark = pytest.mark.slow


async def job_when_done(http: httpx.AsyncClient, status_url: str) -> dict[str, Any]:
    """Poll the job (bounded) until it is no longer running."""
    for _ in range(1200):
        job: dict[str, Any] = (await http.get(status_url)).json()
        if job["state"] != "running":
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"the job never ended: {job}")


async def job_when_embedded(http: httpx.AsyncClient, status_url: str) -> dict[str, Any]:
    """Poll the job (bounded) until every chunk is embedded (it then waits to write)."""
    for _ in range(1200):
        job: dict[str, Any] = (await http.get(status_url)).json()
        progress = job["progress"]
        if progress is not None and progress["chunks_done"] == progress["chunks_total"] > 0:
            return job
        await asyncio.sleep(0.1)
    raise AssertionError(f"the job never embedded its chunks: {job}")


async def test_a_background_index_request_is_a_job_followed_to_its_exact_result_with_progress_events(
    embeddings_app,
) -> None:
    broker = EventRecorder()
    async with running(broker) as broker_url:
        app, settings = embeddings_app(VICTOR_BROKER_URL=broker_url)
        copy_code_repo(settings.workspace_dir)
        async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
            await wait_started(http)
            accepted = await http.post(
                "/v1/index", json={"path": ".", "collection": "jobs", "background": True}
            )
            assert accepted.status_code == 202
            job = accepted.json()
            job_id = job["job_id"]
            assert accepted.headers["location"] == job["status_url"] == f"/v1/index/jobs/{job_id}"
            assert "preference-applied" not in accepted.headers
            assert (job["state"], job["collection"], job["progress"], job["result"], job["error"]) == (
                "running",
                "jobs",
                None,
                None,
                None,
            )

            done = await job_when_done(http, job["status_url"])
            expected = (await http.post("/v1/index", json={"path": ".", "collection": "jobs-plain"})).json()
            assert done["state"] == "completed" and done["error"] is None
            assert done["result"] == {**expected, "collection": "jobs"}
            assert done["result"]["files_indexed"] == 35
            assert done["progress"] == {
                "version": 1,
                "event": "progress",
                "job_id": job_id,
                "files_total": 35,
                "files_changed": 35,
                "chunks_total": expected["chunks_added"],
                "chunks_done": expected["chunks_added"],
            }
            assert done["created_at"] == job["created_at"] <= done["updated_at"]

            # The header of RFC 7240 asks for the same, and says it was applied.
            preferred = await http.post(
                "/v1/index",
                json={"path": ".", "collection": "jobs"},
                headers={"Prefer": "wait=10, respond-async"},
            )
            assert (preferred.status_code, preferred.headers["preference-applied"]) == (202, "respond-async")
            again = await job_when_done(http, preferred.json()["status_url"])
            assert (again["result"]["files_indexed"], again["result"]["files_unchanged"]) == (0, 35)

    events = [request.event() for request in broker.requests if request.event().subject == job_id]
    assert {(e.type, e.source, e.datacontenttype) for e in events} == {
        ("ai.victor.index.progress", "/victor/embeddings", "application/json")
    }
    reports = [e.json() for e in events]
    assert reports[0] == {**done["progress"], "chunks_done": 0}
    assert reports[-1] == done["progress"]


async def test_an_index_requested_event_runs_as_a_job_that_reports_its_progress_to_the_broker(
    embeddings_app,
) -> None:
    broker = EventRecorder()
    request = IndexRequested(documents=[Document(id="d1", text="solar panels on the roof")], collection="ev")
    event = new_event(INDEX_REQUESTED, "/tests/jobs", request)
    job_id = jobs.event_job_id("/tests/jobs", event.id)
    async with running(broker) as broker_url:
        app, _ = embeddings_app(VICTOR_BROKER_URL=broker_url)
        async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
            await wait_started(http)
            headers, body = to_binary(event)
            delivered = await http.post("/", headers=headers, content=body)
            reply = from_http(delivered.headers, delivered.content, max_bytes=1 << 24)
            job = (await http.get(f"/v1/index/jobs/{job_id}")).json()
    assert (reply.type, reply.subject) == ("ai.victor.index.completed", event.id)
    assert (job["state"], job["result"]) == ("completed", reply.json())
    progress = [r.event() for r in broker.requests if r.event().subject == job_id]
    last = {"version": 1, "event": "progress", "job_id": job_id, "files_total": 1, "files_changed": 1}
    assert [(e.type, e.json()) for e in progress] == [
        ("ai.victor.index.progress", {**last, "chunks_total": 1, "chunks_done": 0}),
        ("ai.victor.index.progress", {**last, "chunks_total": 1, "chunks_done": 1}),
    ]


async def test_jobs_that_do_not_exist_or_bad_requests_get_precise_refusals(embeddings_app) -> None:
    app, _ = embeddings_app()
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
        await wait_started(http)
        unknown = await http.get("/v1/index/jobs/0b6f3c1e-2f4e-4c55-9d43-8d3c2a1b0e9f")
        assert (unknown.status_code, unknown.json()) == (
            404,
            {
                "status_code": 404,
                "error": "not_found",
                "detail": "index job 0b6f3c1e-2f4e-4c55-9d43-8d3c2a1b0e9f does not exist"
                " (or ended over 24 hours ago)",
            },
        )
        schema = (await http.get("/schema/openapi.json")).json()
        answer = schema["paths"]["/v1/index/jobs/{job_id}"]["get"]["responses"]["200"]
        fields = [
            "job_id",
            "state",
            "status_url",
            "collection",
            "progress",
            "result",
            "error",
            "created_at",
            "updated_at",
        ]
        assert set(answer["content"]["application/json"]["schema"]["properties"]) == set(fields)
        accepted = schema["paths"]["/v1/index"]["post"]["responses"]["202"]
        assert set(accepted["content"]["application/json"]["schema"]["properties"]) == set(fields)
        malformed = await http.get("/v1/index/jobs/not-a-job")
        assert (malformed.status_code, malformed.json()["error"]) == (422, "invalid_request")
        bad = await http.post("/v1/index", json={"path": ".", "collection": "no/slash", "background": True})
        assert (bad.status_code, bad.json()["error"]) == (422, "invalid_request")
        both = await http.post("/v1/index", json={"documents": [], "collection": "c", "background": True})
        assert (both.status_code, both.json()["detail"]) == (
            422,
            "documents is empty; give at least one {id, text}",
        )


async def test_with_redis_away_a_background_job_is_a_503_with_retry_after(embeddings_app) -> None:
    app, _ = embeddings_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
        await wait_started(http)
        refused = await http.post(
            "/v1/index", json={"documents": [{"id": "a", "text": "x"}], "background": True}
        )
        assert (refused.status_code, refused.headers["retry-after"], refused.json()["error"]) == (
            503,
            "5",
            "store_unavailable",
        )
        status = await http.get("/v1/index/jobs/0b6f3c1e-2f4e-4c55-9d43-8d3c2a1b0e9f")
        assert (status.status_code, status.json()["error"]) == (503, "store_unavailable")


async def stored_job(redis_url: str | None, job_id: str) -> jobs.IndexJob | None:
    cache = Cache(redis_url)
    try:
        return await jobs.load(cache, job_id)
    finally:
        await cache.close()


@pytest.mark.parametrize("drain_seconds", ["240", "0"])
async def test_a_job_running_at_stop_is_drained_within_the_bound_or_else_interrupted_and_resumed(
    embeddings_app, drain_seconds: str
) -> None:
    app, settings = embeddings_app(VICTOR_INDEX_DRAIN_SECONDS=drain_seconds)
    copy_code_repo(settings.workspace_dir)
    runtime = app.state.runtime
    hold: Any = None
    try:
        async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
            await wait_started(http)
            # The collection's write lock, held here: the job embeds every chunk, then waits to write.
            hold = runtime.state.service.store.write_lock("drain")
            hold.acquire()
            body = {"path": ".", "collection": "drain", "background": True}
            job = (await http.post("/v1/index", json=body)).json()
            embedded = await job_when_embedded(http, job["status_url"])
            assert embedded["state"] == "running"

            async def release_once_draining() -> None:
                for _ in range(6000):
                    if runtime.state.draining:
                        break
                    await asyncio.sleep(0.01)
                hold.release()

            if drain_seconds != "0":
                releasing = asyncio.create_task(release_once_draining())
        # The server has stopped (its runtime too): the job's record says how the job ended.
        stopped = await stored_job(settings.redis_url, job["job_id"])
    finally:
        if hold is not None and hold.locked():
            hold.release()
    assert stopped is not None
    if drain_seconds != "0":
        await releasing
        assert (stopped.state, stopped.error) == ("completed", None)
        assert stopped.result is not None and stopped.result.files_indexed == 35
        return
    assert (stopped.state, stopped.result, stopped.error) == ("interrupted", None, jobs.INTERRUPTED_RESUMABLE)
    assert stopped.error.detail == (
        "the replica running this job stopped before it ended; the next replica to start resumes it,"
        " or submit the same request again (files already indexed are skipped)"
    )
    # The cancelled run's write went on in its thread once the lock was free: wait for it to end.
    await asyncio.to_thread(hold.acquire)
    hold.release()

    # The next replica to start claims the job and runs it again under the same id.
    app, _ = embeddings_app(VICTOR_INDEX_DRAIN_SECONDS=drain_seconds)
    async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=120) as http:
        await wait_started(http)
        resumed = await job_when_done(http, job["status_url"])
    assert (resumed["state"], resumed["error"], resumed["created_at"]) == (
        "completed",
        None,
        job["created_at"],
    )
    result = resumed["result"]
    assert (result["collection"], result["files_indexed"], result["files_unchanged"]) == ("drain", 0, 35)
