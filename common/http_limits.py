"""Limits on what one HTTP connection may cost a server: every server `victor serve` starts,
and the workers `functions-framework --asgi` starts through gunicorn.

uvicorn's httptools protocol reads headers without bounds: a client may send
hundreds of megabytes of header bytes (llhttp buffers one header's value until
it ends) or keep a request head open forever, one byte at a time. The
protocol here, a subclass of uvicorn's, adds what nginx and Go's net/http have:

- header bytes (request line included) over `max_header_bytes`, or more than
  `max_headers` fields: answered 431 with the JSON error body, then closed;
- a head not complete `header_timeout` seconds after its first byte (or after
  the connection opened): the connection is closed;
- an idle kept-alive connection is closed after `keepalive_timeout` seconds
  (uvicorn's own `timeout_keep_alive`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from common.settings import HttpLimits


class _HeadRefused(Exception):
    """Raised inside a parser callback to stop parsing a head that is over a limit."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of `HttpLimits` (bind them with `limited_protocol`)."""

    limits = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reading_head = True
        self._head_bytes = 0  # raw bytes received since this head began
        self._field_bytes = 0  # exact: request target plus every field name and value
        self._fields = 0
        self._head_timer: asyncio.TimerHandle | None = None
        self._refusal: str | None = None

    # Connection lifetime

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refusal is not None:
            return
        if self._reading_head:
            self._head_bytes += len(data)
            if self._head_timer is None:
                self._start_head_timer()
        super().data_received(data)
        # A head still incomplete after this chunk: every byte of it was head (llhttp holds them).
        if self._refusal is None and self._reading_head and self._head_bytes > self.limits.max_header_bytes:
            self._refusal = f"the request head is over {self.limits.max_header_bytes} bytes"
            self._refuse()

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._reading_head = True
        self._field_bytes = self._fields = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._fields += 1
        if self._fields > self.limits.max_headers:
            self._refusal = f"the request has more than {self.limits.max_headers} header fields"
            raise _HeadRefused
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self._stop_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        # Whatever arrives next on this connection is the next head (its timer starts with its first byte).
        self._reading_head = True
        self._head_bytes = 0

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers any parser error 400; a head stopped by a limit is answered 431 instead.
        if self._refusal is not None:
            self._refuse()
        else:
            super().send_400_response(msg)

    # Limits

    def _count(self, size: int) -> None:
        self._field_bytes += size
        if self._field_bytes > self.limits.max_header_bytes:
            self._refusal = f"the request head is over {self.limits.max_header_bytes} bytes"
            raise _HeadRefused

    def _refuse(self) -> None:
        detail = f"{self._refusal}; send fewer or smaller headers"
        body = msgspec.json.encode({"status_code": 431, "error": "headers_too_large", "detail": detail})
        head = (
            "HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self._stop_head_timer()
        if not self.transport.is_closing():
            self.transport.write(head.encode("latin-1") + body)
            self.transport.close()

    def _start_head_timer(self) -> None:
        self._stop_head_timer()
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _stop_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        # Like nginx's client_header_timeout: a head that does not arrive in time closes the connection.
        if self._reading_head and not self.transport.is_closing():
            self.transport.close()


def limited_protocol(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to give uvicorn as `http=`, bound to `limits`."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


def uvicorn_options(limits: HttpLimits) -> dict[str, Any]:
    """uvicorn.run / uvicorn.Config keyword arguments that apply `limits`."""
    return {"http": limited_protocol(limits), "timeout_keep_alive": limits.keepalive_timeout}


def limit_functions_framework_workers(limits: HttpLimits) -> None:
    """Apply `limits` to the uvicorn workers gunicorn starts for `functions-framework --asgi`.

    functions-framework writes its gunicorn configuration itself and reads no setting for
    headers or timeouts; the worker class's CONFIG_KWARGS, read as each worker starts (after
    the target module is imported), is the one hook. Its debug server (`--debug`) has none.
    """
    try:
        from uvicorn_worker import UvicornWorker
    except ImportError:  # functions-framework without gunicorn serves with its debug server
        return
    UvicornWorker.CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, **uvicorn_options(limits)}
