"""Helpers for tests that start real processes: liveness checks and tiny child programs."""

from __future__ import annotations

import asyncio
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path

import psutil


def alive(pid: int) -> bool:
    """Whether `pid` is a running process (a zombie waiting to be reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_gone(pids: Iterable[int], limit: float = 15.0) -> list[int]:
    """Poll until every pid has exited or `limit` seconds pass; returns those still alive."""
    pids = list(pids)
    for _ in range(int(limit / 0.05)):
        left = [pid for pid in pids if alive(pid)]
        if not left:
            return []
        await asyncio.sleep(0.05)
    return [pid for pid in pids if alive(pid)]


async def wait_for_file_lines(path: Path, count: int, limit: float = 15.0) -> list[str]:
    """The file's lines once it has at least `count` of them (or whatever it has after `limit`)."""
    for _ in range(int(limit / 0.05)):
        if path.exists() and len(lines := path.read_text().splitlines()) >= count:
            return lines
        await asyncio.sleep(0.05)
    return path.read_text().splitlines() if path.exists() else []


def python(code: str) -> list[str]:
    """argv running `code` (dedented) with this interpreter."""
    return [sys.executable, "-c", textwrap.dedent(code)]
