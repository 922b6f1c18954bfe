"""Line-aware chunking: whole lines, overlap, character cap, language from the file name."""

from __future__ import annotations

from functions.embeddings.chunking import chunk_text, language_of


def test_chunks_are_whole_lines_with_overlap_and_inclusive_line_numbers() -> None:
    text = "\n".join(f"line {n}" for n in range(1, 24))
    chunks = chunk_text("src/app.py", text, max_lines=10, overlap=3, max_chars=10_000)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 10), (8, 17), (15, 23)]
    assert chunks[1].text.splitlines()[0] == "line 8"
    assert chunks[2].text.splitlines()[-1] == "line 23"
    assert {c.language for c in chunks} == {"python"}


def test_a_chunk_ends_before_it_would_pass_the_character_limit() -> None:
    text = "\n".join(["a" * 40] * 6)  # 41 characters per line with its newline
    chunks = chunk_text("notes.txt", text, max_lines=100, overlap=0, max_chars=100)
    assert [(c.start_line, c.end_line) for c in chunks] == [(1, 2), (3, 4), (5, 6)]
    assert all(len(c.text) <= 100 for c in chunks)


def test_an_overlong_single_line_is_cut_at_the_limit_and_blank_windows_are_dropped() -> None:
    chunks = chunk_text("min.js", "x" * 500 + "\n\n\n", max_lines=1, overlap=0, max_chars=200)
    assert [(c.start_line, c.end_line, len(c.text)) for c in chunks] == [(1, 1, 200)]
    assert chunk_text("empty.py", "\n \n", max_lines=5, overlap=1, max_chars=100) == []


def test_language_comes_from_the_extension_or_a_well_known_name() -> None:
    assert [language_of(p) for p in ("a/b.go", "x.TS", "Dockerfile", "README.md", "data.bin")] == [
        "go",
        "typescript",
        "dockerfile",
        "markdown",
        "text",
    ]
