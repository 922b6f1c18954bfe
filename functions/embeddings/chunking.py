"""Chunks budgeted in the model's own tokens: whole lines, cut at definitions, never past the window.

A chunk is whole lines of one file holding at most `max_tokens` tokens as the model's
tokenizer counts them (special tokens included), and at most `max_lines` lines. When a chunk
is full it ends before the last definition that starts in its later part (a `def`, `class`,
`func`, a decorator or the comments above one, a Markdown heading; else a blank line), so code
is cut between definitions, not inside them. A chunk cut inside a definition is followed by
one that starts `overlap` lines earlier, so a function cut in two is still found whole in one
of them. A single line longer than the window is split by tokens into chunks of that line.
Every chunk's tokens are counted exactly before it is kept, so none is truncated by the model.
Lines are numbered from 1, end line inclusive.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Any

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


# Lines that start a definition, by language family (Markdown and reStructuredText: headings).
DEFINITION = re.compile(
    r"^\s*(?:@|(?:export\s+)?(?:default\s+)?(?:pub(?:\([a-z]+\))?\s+)?(?:async\s+)?"
    r"(?:def|class|func|fn|function|interface|struct|enum|impl|trait|type|module|object|"
    r"public|private|protected|static|const|let|var|resource|CREATE|[A-Za-z_][\w.-]*:$)\b)"
)
HEADING = re.compile(r"^(?:#{1,6}\s|[=\-~^]{3,}\s*$)")
COMMENT = re.compile(r"^\s*(?:#|//|/\*|\*|--|;)")
DOCUMENTS = {"markdown", "rst", "text"}


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _boundary(lines: list[str], index: int, base: int, language: str) -> int:
    """How good a cut before `lines[index]` is: 3 a definition at or above `base` indent, 2 a
    top-level line after a blank one, 1 after a blank line, 0 anywhere else."""
    line = lines[index]
    if not line.strip() or index == 0:
        return 0
    previous = lines[index - 1]
    if language in DOCUMENTS:
        if HEADING.match(line):
            return 3
    elif _indent(line) <= base and DEFINITION.match(line) and not previous.lstrip().startswith("@"):
        return 3
    if not previous.strip():
        return 2 if _indent(line) == 0 else 1
    return 0


def _cut(lines: list[str], start: int, end: int, language: str) -> tuple[int, bool]:
    """Where a full chunk [start, end) ends: before its best boundary in the later two thirds, with
    the comments and decorators just above a definition moved to the next chunk; (end, False) if none."""
    base = min((_indent(line) for line in lines[start:end] if line.strip()), default=0)
    earliest = start + max(1, (end - start) // 3)
    best, score = end, 0
    for index in range(end - 1, earliest - 1, -1):
        found = _boundary(lines, index, base, language)
        if found > score:
            best, score = index, found
        if score == 3:
            break
    if score == 0:
        return end, False
    if language not in DOCUMENTS:
        while best - 1 > earliest and (
            COMMENT.match(lines[best - 1]) or lines[best - 1].lstrip().startswith("@")
        ):
            best -= 1
    return best, True


def count_tokens(tokenizer: Any, texts: list[str], special: bool = True) -> list[int]:
    """Tokens of each text as the model's tokenizer makes them (its special tokens too, if `special`)."""
    if not texts:
        return []
    return [len(e.ids) for e in tokenizer.encode_batch(texts, add_special_tokens=special)]


def _split_line(tokenizer: Any, line: str, max_tokens: int) -> list[str]:
    """A line longer than the window cut at token boundaries into pieces that each fit it."""
    encoding = tokenizer.encode(line, add_special_tokens=False)
    offsets = encoding.offsets
    step = max_tokens - (count_tokens(tokenizer, [""])[0])
    while True:
        pieces = [
            line[offsets[first][0] : offsets[min(first + step, len(offsets)) - 1][1]]
            for first in range(0, len(offsets), step)
        ]
        longest = max(count_tokens(tokenizer, pieces), default=0)
        # A piece that starts inside a word may tokenize a little longer on its own: shrink and retry.
        if longest <= max_tokens or step == 1:
            return [piece for piece in pieces if piece.strip()]
        step = max(1, step - (longest - max_tokens))


def chunk_text(
    path: str, text: str, *, tokenizer: Any, max_tokens: int, max_lines: int, overlap: int
) -> list[Chunk]:
    """Cut `text` into chunks of whole lines that fit `max_tokens`; blank-only windows are dropped.

    `tokenizer` is a `tokenizers.Tokenizer` that neither pads nor truncates (the model's own).
    """
    lines = text.splitlines()
    language = language_of(path)
    budget = max_tokens - count_tokens(tokenizer, [""])[0]
    costs = count_tokens(tokenizer, lines, special=False)
    # What joining two lines adds: nothing for WordPiece, a newline token for byte-level BPE.
    one, two = count_tokens(tokenizer, ["x", "x\nx"], special=False)
    newline = max(0, two - 2 * one)
    chunks: list[Chunk] = []

    def add(first: int, last: int, body: str) -> None:
        if body.strip():
            chunks.append(Chunk(path=path, start_line=first + 1, end_line=last, language=language, text=body))

    start = 0
    while start < len(lines):
        if costs[start] > budget:
            for piece in _split_line(tokenizer, lines[start], max_tokens):
                add(start, start + 1, piece)
            start += 1
            continue
        end, used = start, 0
        while end < len(lines) and end - start < max_lines and costs[end] <= budget:
            cost = costs[end] + (newline if end > start else 0)
            if used + cost > budget:
                break
            used += cost
            end += 1
        full = end < len(lines) and costs[end] <= budget
        cut, at_definition = _cut(lines, start, end, language) if full else (end, False)
        # The estimate above is checked with the exact count of the joined lines.
        while cut - start > 1 and count_tokens(tokenizer, ["\n".join(lines[start:cut])])[0] > max_tokens:
            cut, at_definition = cut - 1, False
        add(start, cut, "\n".join(lines[start:cut]))
        if cut >= len(lines):
            break
        # Overlap at most half a chunk, so short (token-bound) chunks still move on.
        start = cut if at_definition or not full else max(cut - min(overlap, (cut - start) // 2), start + 1)
    return chunks
