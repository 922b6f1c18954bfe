"""Real HTTP servers for tests: an ASGI app under uvicorn on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import socketserver
import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

import uvicorn

from eventing.dev.embedded import free_port

if TYPE_CHECKING:
    from common.function import FunctionSpec
    from common.settings import Settings


@contextlib.asynccontextmanager
async def running(app: Any, *, port: int | None = None) -> AsyncIterator[str]:
    """Serve `app` (with its lifespan) until the block ends; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        lifespan="on",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("server exited before it started")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.contextmanager
def tcp_to_unix_socket(path: str) -> Iterator[int]:
    """A loopback TCP port that forwards each connection to the Unix socket at `path` (so a process
    of another user reaches a server whose socket directory only its owner can enter)."""

    class Forward(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as upstream:
                upstream.connect(path)
                ends = [self.request, upstream]
                while True:
                    readable, _, _ = select.select(ends, [], [])
                    for end in readable:
                        data = end.recv(65536)
                        if not data:
                            return
                        (upstream if end is self.request else self.request).sendall(data)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Forward)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def running_target(spec: FunctionSpec, settings: Settings) -> AsyncIterator[str]:
    """`spec` served under functions-framework's own Starlette app around its target, as
    `functions-framework --asgi --target handle` builds it; yields its URL. functions-framework has no
    lifespan, so the runtime the first request started is stopped here (its pools closed)."""
    from functions_framework.aio import _create_asgi_app_with_function

    from common.framework_target import target

    handle = target(spec, settings)
    app = _create_asgi_app_with_function(handle, "http", False)  # type: ignore[no-untyped-call]
    try:
        async with running(app) as url:
            yield url
    finally:
        runtime = handle.dispatcher.runtime  # type: ignore[attr-defined]
        if runtime is not None:
            await runtime.stop()
