"""The `victor` command line explains itself: --version, help on every option, an example per command."""

from __future__ import annotations

import argparse
import importlib.metadata

import pytest

from eventing.cli.main import build_parser, main

CLIENT_COMMANDS = [
    ("chat",),
    ("index",),
    ("search",),
    ("send",),
    ("tools", "list"),
    ("tools", "run"),
    ("tools", "select"),
]


def commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every command and subcommand parser by its words."""
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found[(*path, name)] = sub
                found.update(commands(sub, (*path, name)))
    return found


def test_victor_version_prints_the_installed_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"victor {importlib.metadata.version('victor-functions')}\n"


def test_every_option_and_argument_has_help_and_every_command_an_example() -> None:
    found = commands(build_parser())
    assert ("tools", "select") in found and ("serve",) in found
    missing = [
        f"{' '.join(words)} {action.dest}"
        for words, parser in found.items()
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction) and not action.help
    ]
    assert missing == []
    without_example = [" ".join(w) for w, p in found.items() if "examples:\n  victor" not in (p.epilog or "")]
    without_example = [w for w in without_example if "PORT=" not in (found[tuple(w.split())].epilog or "")]
    without_example = [
        w for w in without_example if "DATABASE_URL=" not in (found[tuple(w.split())].epilog or "")
    ]
    assert without_example == []


@pytest.mark.parametrize("words", CLIENT_COMMANDS, ids=" ".join)
def test_every_client_command_takes_url_and_json(words: tuple[str, ...]) -> None:
    parser = commands(build_parser())[words]
    options = {option for action in parser._actions for option in action.option_strings}
    assert {"--url", "--json", "--timeout"} <= options


def test_the_index_progress_bar_shows_chunks_and_changed_files() -> None:
    from eventing.cli.embeddings import progress_bar

    report = {
        "event": "progress",
        "files_total": 35,
        "files_changed": 12,
        "chunks_total": 480,
        "chunks_done": 120,
    }
    assert progress_bar(report, width=8) == "index [##......] 120/480 chunks, 12 of 35 files changed"
    nothing = {**report, "files_changed": 0, "chunks_total": 0, "chunks_done": 0}
    assert progress_bar(nothing, width=4) == "index [####] 0/0 chunks, 0 of 35 files changed"
