"""A small client for the embeddings function's index and search API (`POST /v1/index`, `/v1/search`).

The request and response bodies are the embeddings function's own event
payloads (`eventing.schemas.embeddings`), so both sides share one definition.
Paths travel workspace-relative: the embeddings function confines them to its
own WORKSPACE_DIR, which must be the same directory the tools function serves.
Every failure (unreachable, still loading, a refusal) becomes one
`CodeIndexError` with a message fit for the tool's caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import msgspec

from eventing.schemas.embeddings import (
    IndexCompleted,
    IndexRequested,
    SearchCompleted,
    SearchFilter,
    SearchRequested,
)

if TYPE_CHECKING:  # the caller's client has loaded httpx by the time one is used
    import httpx

Reply = TypeVar("Reply", IndexCompleted, SearchCompleted)


class CodeIndexError(RuntimeError):
    """The embeddings function could not index or search; `code` is the tool error code."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class _ErrorBody(msgspec.Struct):
    detail: str = ""


def _detail(response: httpx.Response) -> str:
    try:
        detail = msgspec.json.decode(response.content, type=_ErrorBody).detail
    except (msgspec.DecodeError, msgspec.ValidationError):
        detail = ""
    # One line, bounded: the detail is shown to a model as the tool's answer.
    return " ".join(detail.split())[:500]


class CodeIndex:
    """The embeddings function at `url`, one collection of workspace files."""

    def __init__(
        self, url: str, http: Callable[[], httpx.AsyncClient], *, collection: str, timeout: float
    ) -> None:
        self.base = url.rstrip("/")
        self.http = http
        self.collection = collection
        self.timeout = timeout

    async def _post(self, route: str, body: msgspec.Struct, reply: type[Reply]) -> Reply:
        http = self.http()
        import httpx

        try:
            response = await http.post(
                f"{self.base}{route}",
                content=msgspec.json.encode(body),
                headers={"content-type": "application/json"},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise CodeIndexError(
                f"code_search: the embeddings function is unreachable ({type(exc).__name__})", "unavailable"
            ) from None
        if response.status_code != 200:
            detail = _detail(response) or "no detail"
            code = "unavailable" if response.status_code >= 500 else "search_failed"
            raise CodeIndexError(
                f"code_search: the embeddings function answered {response.status_code} to {route}: {detail}",
                code,
            )
        try:
            return msgspec.json.decode(response.content, type=reply)
        except (msgspec.DecodeError, msgspec.ValidationError):
            raise CodeIndexError(
                f"code_search: the embeddings function answered {route} with an unexpected body",
                "unavailable",
            ) from None

    async def index(self, path: str) -> IndexCompleted:
        """(Re)index a workspace-relative path; files whose content hash is stored are skipped there."""
        request = IndexRequested(collection=self.collection, path=path)
        return await self._post("/v1/index", request, IndexCompleted)

    async def search(self, query: str, k: int, path_prefix: str | None) -> SearchCompleted:
        """The k chunks nearest the query, only under `path_prefix` when given."""
        request = SearchRequested(
            query=query,
            k=k,
            collection=self.collection,
            mode="hybrid",
            filter=SearchFilter(path_prefix=path_prefix) if path_prefix else None,
        )
        return await self._post("/v1/search", request, SearchCompleted)
