"""code_search: semantic search over the workspace's text files.

With VICTOR_EMBEDDINGS_URL set, the embeddings function does the work: each
call first asks it to (re)index the searched directory (workspace-relative,
into the `VICTOR_CODE_SEARCH_COLLECTION` collection), then searches that
collection (hybrid: vectors and full text fused) under the directory.
Indexing runs on every call, not only when the tools' workspace generation
changed, because that generation counts only writes made through these tools:
`run_command`, git and anything outside also change files. The embeddings
function skips files whose content hash it already holds, so an unchanged
workspace costs a read and a hash per file, no embedding.

Without an embeddings function, files are cut into windows of lines here; each
window is embedded by the in-process model and ranked by cosine similarity to
the query. Window vectors are kept per file state (size, mtime), so a second
search re-embeds only files that changed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import TYPE_CHECKING, Annotated

import msgspec

from common.workspace import is_binary
from functions.tools.code_index import CodeIndex, CodeIndexError
from functions.tools.context import ToolContext
from functions.tools.registry import PathAccess, Rendered, ToolDefinition, ToolError
from functions.tools.text_embedder import EmbeddingsUnavailable
from functions.tools.toolset.files import SKIPPED_DIRS, file_filter, read_walked, rendered, walk_files

if TYPE_CHECKING:  # numpy loads with the first code_search
    import numpy as np

WINDOW_LINES = 30
MAX_WINDOWS = 4000
MAX_FILES_CACHED = 5000
# With a glob, hits are filtered here (the search API filters by path prefix only), so more are fetched.
GLOB_CANDIDATES = 100


class CodeSearchArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=2000, description="What the code does")]
    path: Annotated[str, msgspec.Meta(min_length=1)] = "."
    glob: Annotated[str, msgspec.Meta(min_length=1, description="Only files matching this glob")] | None = (
        None
    )
    k: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5


class CodeSearchHit(msgspec.Struct, kw_only=True):
    path: str
    start_line: int
    end_line: int
    score: float
    text: str


class CodeSearchHits(msgspec.Struct, kw_only=True):
    """code_search's result as data, best first."""

    query: str
    hits: list[CodeSearchHit]
    truncated: bool = False


def _hits(ctx: ToolContext, query: str, hits: list[CodeSearchHit], empty: str = "") -> Rendered:
    """The hits as text and data; `empty` is the text when there are none."""
    parts = [_hit_text(h.path, h.start_line, h.end_line, h.score, h.text) for h in hits]
    return rendered(ctx, "\n\n".join(parts) or empty, CodeSearchHits(query=query, hits=hits))


class Window(msgspec.Struct, frozen=True):
    path: str
    start: int
    end: int
    text: str


def _windows(ctx: ToolContext, args: CodeSearchArgs) -> list[tuple[str, list[Window]]]:
    """(file state key, windows) per text file under the path."""
    wanted = file_filter(args.glob)
    found: list[tuple[str, list[Window]]] = []
    total = 0
    for relative, name, dir_fd, info in walk_files(ctx.workspace, args.path):
        if any(part in SKIPPED_DIRS for part in relative.split("/")):
            continue
        if not wanted(relative):
            continue
        if info.st_size == 0 or info.st_size > ctx.workspace.max_file_size:
            continue
        data = read_walked(ctx.workspace, dir_fd, name)
        if data is None or is_binary(data):
            continue
        lines = data.decode("utf-8").splitlines()
        windows = [
            Window(
                relative,
                start + 1,
                min(start + WINDOW_LINES, len(lines)),
                "\n".join(lines[start : start + WINDOW_LINES]),
            )
            for start in range(0, len(lines), WINDOW_LINES)
        ]
        found.append((f"{relative}:{info.st_size}:{info.st_mtime_ns}", windows))
        total += len(windows)
        if total >= MAX_WINDOWS:
            break
    return found


def _hit_text(path: str, start: int, end: int, score: float, text: str) -> str:
    return f"{path}:{start}-{end} (score {score:.3f})\n{text}"


def _directory(ctx: ToolContext, path: str) -> str:
    """The searched directory, workspace-relative, after the same confinement checks as every tool."""
    with ctx.workspace.open_directory(path) as (_fd, rel):
        return rel


async def _search_index(args: CodeSearchArgs, ctx: ToolContext, index: CodeIndex) -> Rendered:
    directory = await asyncio.to_thread(_directory, ctx, args.path)
    wanted = file_filter(args.glob)
    try:
        await index.index(directory)
        found = await index.search(
            args.query,
            GLOB_CANDIDATES if args.glob else args.k,
            None if directory == "." else directory + "/",
        )
    except CodeIndexError as exc:
        raise ToolError(exc.message, exc.code) from None
    hits = [hit for hit in found.results if wanted(hit.path)][: args.k]
    if not hits:
        return _hits(ctx, args.query, [], "no indexed text matches the query")
    found_hits = [
        CodeSearchHit(path=h.path, start_line=h.start_line, end_line=h.end_line, score=h.score, text=h.text)
        for h in hits
    ]
    return _hits(ctx, args.query, found_hits)


async def code_search(args: CodeSearchArgs, ctx: ToolContext) -> Rendered:
    if ctx.code_index is not None:
        return await _search_index(args, ctx, ctx.code_index)
    embedder = ctx.embedder
    if embedder is None or not embedder.available():
        raise ToolError(
            "code_search needs embeddings: set VICTOR_EMBEDDINGS_URL or install a local model", "unavailable"
        )
    files = await asyncio.to_thread(_windows, ctx, args)
    if not files:
        return _hits(ctx, args.query, [], "no text files to search")
    vectors: OrderedDict[str, np.ndarray] = ctx.state.setdefault("code_search_vectors", OrderedDict())
    missing = [(key, windows) for key, windows in files if key not in vectors]
    try:
        if missing:
            texts = [f"{w.path}\n{w.text}" for _, windows in missing for w in windows]
            embedded = await embedder.embed(texts)
            offset = 0
            for key, windows in missing:
                vectors[key] = embedded[offset : offset + len(windows)]
                offset += len(windows)
            while len(vectors) > MAX_FILES_CACHED:
                vectors.popitem(last=False)
        query = (await embedder.embed([args.query]))[0]
    except EmbeddingsUnavailable as exc:
        raise ToolError(str(exc), "unavailable") from None
    import numpy as np

    windows = [w for _, ws in files for w in ws]
    matrix = np.concatenate([vectors[key] for key, _ in files])
    scores = matrix @ query
    best = np.argsort(-scores)[: args.k]
    hits = []
    for index in best:
        window = windows[int(index)]
        score = float(scores[int(index)])
        hits.append(
            CodeSearchHit(
                path=window.path, start_line=window.start, end_line=window.end, score=score, text=window.text
            )
        )
    return _hits(ctx, args.query, hits)


SEARCH_TOOLS = (
    ToolDefinition(
        name="code_search",
        description="Semantic code search: find the workspace code most related to a natural-language query.",
        arguments=CodeSearchArgs,
        run=code_search,
        output=CodeSearchHits,
        paths=lambda args: PathAccess(reads=(args.path,)),
    ),
)
