"""`.env` for the victor CLI: KEY=VALUE lines, the environment wins, a bad line is one clear error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from eventing.cli.dotenv import DotenvError, load_dotenv, parse_dotenv
from tests.support.foundation import clean_env


def test_lines_quotes_comments_and_empty_values() -> None:
    text = """
# a comment
VICTOR_LOG_LEVEL=DEBUG
export REDIS_URL = "redis://127.0.0.1:6379/0"
ANTHROPIC_API_KEY='sk-ant-x #not a comment'
VICTOR_CACHE_TTL=60 # seconds
DATABASE_URL=
"""
    assert parse_dotenv(text) == {
        "VICTOR_LOG_LEVEL": "DEBUG",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "ANTHROPIC_API_KEY": "sk-ant-x #not a comment",
        "VICTOR_CACHE_TTL": "60",
    }
    with pytest.raises(DotenvError) as refused:
        parse_dotenv("GOOD=1\nthis is not a setting\n", "/tmp/.env")
    assert str(refused.value) == "/tmp/.env line 2: expected KEY=VALUE, got 'this is not a setting'"


def test_the_environment_wins_over_the_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("VICTOR_LOG_LEVEL=DEBUG\nVICTOR_CACHE_TTL=60\n")
    environ = {"VICTOR_LOG_LEVEL": "WARNING"}
    assert load_dotenv(environ, tmp_path / ".env") == ["VICTOR_CACHE_TTL"]
    assert environ == {"VICTOR_LOG_LEVEL": "WARNING", "VICTOR_CACHE_TTL": "60"}
    assert load_dotenv(environ, tmp_path / "missing.env") == []


def test_the_cli_reads_dotenv_from_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("VICTOR_LOG_LEVEL=LOUD\n")
    command = [sys.executable, "-m", "eventing.cli", "serve", "health"]
    read = subprocess.run(command, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert read.returncode == 2
    assert read.stderr.startswith("victor: VICTOR_LOG_LEVEL: expected one of DEBUG, INFO")
    (tmp_path / ".env").write_text("VICTOR_LOG_LEVEL=LOUD\nnot a line\n")
    bad = subprocess.run(command, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert (bad.returncode, bad.stderr) == (2, "victor: .env line 2: expected KEY=VALUE, got 'not a line'\n")
