"""grep cannot hold the event loop, and the tool timeout always holds, whatever the pattern.

The reported attack: `(a+)+$` over a 29-byte line blocked the whole tools process (its
liveness probe included) for 12.7 s, and the 2 s tool timeout was reported only after
13.3 s, because Python's `re` holds the interpreter lock inside `to_thread`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from common.settings import Settings
from functions.tools.settings import ToolsSettings
from tests.support.tools import tools_server

TIMEOUT = ToolsSettings(tool_timeout=1.5)


async def probe_while(server_client, work) -> tuple[object, float, int]:  # type: ignore[no-untyped-def]
    """Run `work` while probing /health/live every 20 ms; its result, the slowest probe, the probe count."""
    slowest = 0.0
    probes = 0
    task = asyncio.ensure_future(work)
    while not task.done():
        started = time.perf_counter()
        response = await server_client.get("/health/live")
        assert response.status_code == 200
        slowest = max(slowest, time.perf_counter() - started)
        probes += 1
        await asyncio.sleep(0.02)
    return task.result(), slowest, probes


async def test_a_backtracking_pattern_times_out_on_time_and_liveness_keeps_answering(
    make_settings: Callable[..., Settings],
) -> None:
    async with tools_server(make_settings, TIMEOUT) as server:
        (server.workspace / "trap.txt").write_text("a" * 40 + "b\n")
        started = time.perf_counter()
        outcome, slowest, probes = await probe_while(
            server.client, server.call("grep", {"pattern": "(a|a)*$", "path": "trap.txt"})
        )
        elapsed = time.perf_counter() - started
    assert isinstance(outcome, dict)
    assert (outcome["is_error"], outcome["error"]) == (True, "timeout")
    # grep's own deadline (95% of the timeout) usually answers first, naming the line; on a loaded
    # machine the executor's timeout may answer first. Either way the call ends on time.
    assert outcome["content"].startswith(
        ("grep stopped at trap.txt:1: the pattern took longer than the tool", "grep did not finish in 1.5 s")
    ), outcome["content"]
    assert elapsed < TIMEOUT.tool_timeout + 1.0  # reported when the timeout expires, not after the match
    assert probes >= 10
    # Before, one probe waited for the whole match (12.7 s); the bound leaves room for a loaded CI machine.
    assert slowest < 0.5, f"a liveness probe took {slowest:.3f} s while grep ran"


async def test_the_reported_pattern_answers_at_once_and_bad_globs_are_refused(
    make_settings: Callable[..., Settings],
) -> None:
    async with tools_server(make_settings, TIMEOUT) as server:
        (server.workspace / "trap.txt").write_text("a" * 29 + "\n" + "a" * 28 + "b\n")
        nested = await server.call("grep", {"pattern": "(a+)+$", "path": "trap.txt"})
        bad_glob = await server.call("glob", {"pattern": "[z-a]"})
        bad_grep_glob = await server.call("grep", {"pattern": "a", "glob": "*.[z-a]"})
    assert nested["content"] == "trap.txt:1:" + "a" * 29
    assert (bad_glob["is_error"], bad_glob["error"]) == (True, "invalid_pattern")
    assert bad_glob["content"].startswith("'[z-a]' is not a valid glob: ")
    assert (bad_grep_glob["is_error"], bad_grep_glob["error"]) == (True, "invalid_pattern")
