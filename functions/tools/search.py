"""code_search: semantic search over the workspace's text files.

Files are cut into windows of lines; each window is embedded through the
embeddings function (or the in-process model when none is configured) and
ranked by cosine similarity to the query. Window vectors are kept per file
state (size, mtime), so a second search re-embeds only files that changed.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Annotated

import msgspec
import numpy as np

from functions.tools.context import ToolContext
from functions.tools.embedder import EmbeddingsUnavailable
from functions.tools.files import SKIPPED_DIRS, _read_at, file_filter, walk_files
from functions.tools.registry import PathAccess, ToolDefinition, ToolError
from functions.tools.workspace import is_binary

WINDOW_LINES = 30
MAX_WINDOWS = 4000
MAX_FILES_CACHED = 5000


class CodeSearchArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    query: Annotated[str, msgspec.Meta(min_length=1, max_length=2000, description="What the code does")]
    path: Annotated[str, msgspec.Meta(min_length=1)] = "."
    glob: Annotated[str, msgspec.Meta(min_length=1, description="Only files matching this glob")] | None = (
        None
    )
    k: Annotated[int, msgspec.Meta(ge=1, le=50)] = 5


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
        data = _read_at(dir_fd, name, ctx.workspace.max_file_size)
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


async def code_search(args: CodeSearchArgs, ctx: ToolContext) -> str:
    embedder = ctx.embedder
    if embedder is None or not embedder.available():
        raise ToolError(
            "code_search needs embeddings: set VICTOR_EMBEDDINGS_URL or install a local model", "unavailable"
        )
    files = await asyncio.to_thread(_windows, ctx, args)
    if not files:
        return "no text files to search"
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
    windows = [w for _, ws in files for w in ws]
    matrix = np.concatenate([vectors[key] for key, _ in files])
    scores = matrix @ query
    best = np.argsort(-scores)[: args.k]
    parts = []
    for index in best:
        window = windows[int(index)]
        parts.append(
            f"{window.path}:{window.start}-{window.end} (score {scores[int(index)]:.3f})\n{window.text}"
        )
    return ctx.cap("\n\n".join(parts))


SEARCH_TOOLS = (
    ToolDefinition(
        name="code_search",
        description="Semantic code search: find the workspace code most related to a natural-language query.",
        arguments=CodeSearchArgs,
        run=code_search,
        paths=lambda args: PathAccess(reads=(args.path,)),
    ),
)
