"""Line-aware chunks with overlap: each chunk is whole lines of one file.

A chunk ends after `max_lines` lines or before it would pass `max_chars`, and
the next one starts `overlap` lines earlier, so a function cut in two is still
found whole in one of them. Lines are numbered from 1, end line inclusive.
"""

from __future__ import annotations

from pathlib import PurePosixPath

import msgspec

LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascript", ".ts": "typescript", ".tsx": "typescript", ".go": "go", ".rs": "rust",
    ".java": "java", ".kt": "kotlin", ".scala": "scala", ".rb": "ruby", ".php": "php", ".c": "c",
    ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".hpp": "cpp", ".cs": "csharp", ".swift": "swift",
    ".sh": "shell", ".bash": "shell", ".zsh": "shell", ".sql": "sql", ".md": "markdown",
    ".rst": "rst", ".txt": "text", ".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml",
    ".ini": "ini", ".cfg": "ini", ".html": "html", ".css": "css", ".scss": "css", ".proto": "protobuf",
    ".tf": "terraform", ".lua": "lua", ".r": "r", ".dart": "dart", ".ex": "elixir", ".exs": "elixir",
}  # fmt: skip
NAMED = {"dockerfile": "dockerfile", "makefile": "make", "justfile": "just"}


class Chunk(msgspec.Struct, frozen=True, kw_only=True):
    path: str
    start_line: int
    end_line: int
    language: str
    text: str


def language_of(path: str) -> str:
    """The language named by the file's extension (or well-known name); "text" when unknown."""
    name = PurePosixPath(path).name.lower()
    if name in NAMED:
        return NAMED[name]
    return LANGUAGES.get(PurePosixPath(name).suffix, "text")


def chunk_text(path: str, text: str, *, max_lines: int, overlap: int, max_chars: int) -> list[Chunk]:
    """Cut `text` into chunks of whole lines; blank-only windows are dropped."""
    lines = text.splitlines()
    language = language_of(path)
    chunks: list[Chunk] = []
    start = 0
    while start < len(lines):
        end = start
        size = 0
        while end < len(lines) and end - start < max_lines:
            # A single overlong line still forms a chunk of its own (cut at max_chars).
            if end > start and size + len(lines[end]) + 1 > max_chars:
                break
            size += len(lines[end]) + 1
            end += 1
        body = "\n".join(lines[start:end])[:max_chars]
        if body.strip():
            chunks.append(Chunk(path=path, start_line=start + 1, end_line=end, language=language, text=body))
        if end >= len(lines):
            break
        start = max(end - overlap, start + 1)
    return chunks
