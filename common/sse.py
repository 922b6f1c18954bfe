"""Server-Sent Events as bytes: one event's frame, and a `: ping` comment whenever a stream is quiet.

Proxies and load balancers cut a connection that carries nothing for a while
(often 30-60 s), and a tool run or a slow model can be quieter than that; a
comment line keeps the connection alive and every SSE client ignores it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

PING = b": ping\n\n"


def frame(data: bytes, *, event: str | None = None, id: str | None = None) -> bytes:
    """One event: `id:` and `event:` lines when given, then the data (one line of JSON)."""
    head = b""
    if id is not None:
        head += b"id: " + id.encode() + b"\n"
    if event is not None:
        head += b"event: " + event.encode() + b"\n"
    return head + b"data: " + data + b"\n\n"


async def with_pings(chunks: AsyncIterator[bytes], interval: float) -> AsyncIterator[bytes]:
    """`chunks` as they come, with `PING` after every `interval` seconds without one; closes `chunks`
    when the client goes away."""
    pending: asyncio.Future[bytes] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(chunks))
            done, _ = await asyncio.wait({pending}, timeout=interval)
            if not done:
                yield PING
                continue
            try:
                chunk = pending.result()
            except StopAsyncIteration:
                return
            pending = None
            yield chunk
    finally:
        if pending is not None and not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                await pending
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
