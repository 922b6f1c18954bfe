"""What the handlers of one function process share: settings, cache, store, HTTP client, typed state."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from common.cache import Cache
from common.function import FunctionSpec, Lifecycle
from common.idempotency import ProcessedEvents
from common.settings import Settings
from common.store import Store, open_lancedb

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
VERSION = "0.1.0"
S = TypeVar("S")


@dataclass
class Runtime(Generic[S]):
    """One function's process-wide resources; `state` is the function's own typed state."""

    spec: FunctionSpec
    settings: Settings
    cache: Cache
    store: Store
    processed: ProcessedEvents
    state: S
    started: bool = False
    startup_error: str | None = None
    _lancedb: Any = None
    _lancedb_lock: threading.Lock = field(default_factory=threading.Lock)
    _http: Any = None  # an httpx.AsyncClient, made on first use
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @classmethod
    def create(cls, spec: FunctionSpec, settings: Settings) -> Runtime[Any]:
        store = Store(settings.database_dsn)
        return Runtime(
            spec=spec,
            settings=settings,
            cache=Cache(settings.redis_url),
            store=store,
            processed=ProcessedEvents(spec.name, store),
            state=spec.state(),
        )

    @property
    def http(self) -> httpx.AsyncClient:
        """The shared HTTP client, made on first use: importing httpx and loading CA certificates
        took about a tenth of a second of cold start, and some functions never call out."""
        if self._http is None:
            import httpx

            self._http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=5.0))
        client: httpx.AsyncClient = self._http
        return client

    @property
    def source(self) -> str:
        """The `source` of events this function produces."""
        return f"/victor/{self.spec.name}"

    def lancedb(self) -> Any:
        """The LanceDB connection, opened on first use (from any thread; opened once)."""
        with self._lancedb_lock:
            if self._lancedb is None:
                self._lancedb = open_lancedb(self.settings.lancedb_uri)
            return self._lancedb

    def background(self, coroutine: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        """Run work beside the server (kept referenced, cancelled at stop)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coroutine)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def start(self) -> None:
        if self.spec.start is not None and self.spec.start_in_background:
            self.background(self._start_beside_server(self.spec.start), f"{self.spec.name}-start")
            return
        if self.spec.start is not None:
            try:
                await self.spec.start(self)
            except Exception as exc:
                self.startup_error = f"{type(exc).__name__}: {exc}"
                raise
        self.started = True

    async def _start_beside_server(self, start: Lifecycle) -> None:
        try:
            await start(self)
        except Exception as exc:  # any start failure is reported by /health/startup, not raised
            self.startup_error = f"{type(exc).__name__}: {exc}"
            log.error("%s failed to start: %s", self.spec.name, self.startup_error)
            return
        self.started = True

    async def stop(self) -> None:
        """Stop the function's own work, then close what it holds, even when its stop failed: a pool
        left open keeps its connections until the process ends."""
        try:
            if self.spec.stop is not None:
                await self.spec.stop(self)
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.processed.stop()
            if self._http is not None:
                await self._http.aclose()
                self._http = None
            await self.cache.close()
            await self.store.close()


def exit_cleanly_after_graceful_shutdown() -> None:
    """Make SIGTERM end the process with status 0 once uvicorn has finished in-flight requests.

    uvicorn (under `victor serve` and functions-framework --asgi) re-raises SIGTERM after its graceful
    shutdown; with this handler in place that re-raise exits 0 instead of killing the process.
    Call it from an entry point module, never from a library import.
    """
    signal.signal(signal.SIGTERM, _exit_zero)


def _exit_zero(signum: int, frame: object) -> None:
    raise SystemExit(0)
