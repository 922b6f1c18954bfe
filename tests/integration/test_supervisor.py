"""The `victor dev` supervisor with tiny real child processes."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import textwrap
from pathlib import Path

from eventing.dev.embedded import free_port
from eventing.dev.supervisor import Backoff, ProcessSpec, RestartPolicy, Supervisor
from tests.support.processes import alive, python, wait_for_file_lines, wait_gone

ENV = dict(os.environ)


def spec(name: str, code: str, ready_url: str | None = None) -> ProcessSpec:
    return ProcessSpec(name=name, argv=python(code), env=ENV, ready_url=ready_url)


def test_restart_delay_doubles_up_to_the_cap_and_resets_after_a_long_run() -> None:
    policy = RestartPolicy(Backoff(initial=1.0, factor=2.0, cap=8.0, reset_after=30.0))
    assert [policy.next_delay(0.1) for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.next_delay(31.0) == 1.0
    assert policy.next_delay(0.1) == 2.0


async def test_crashing_child_is_restarted_with_exponential_backoff(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    output = io.StringIO()
    crashy = spec(
        "crashy",
        f"""
        import os, sys
        with open({str(starts)!r}, "a") as f:
            f.write(f"{{os.getpid()}}\\n")
        sys.exit(3)
        """,
    )
    supervisor = Supervisor(
        [crashy], backoff=Backoff(initial=0.05, factor=2.0, cap=0.2, reset_after=60.0), output=output
    )
    await supervisor.start()
    try:
        lines = await wait_for_file_lines(starts, 5)
    finally:
        await supervisor.stop()
    managed = supervisor.processes["crashy"]
    assert len(lines) >= 5
    assert len(set(lines)) == len(lines)  # each start is a new process
    assert managed.exit_codes[:4] == [3, 3, 3, 3]
    assert managed.restart_delays[:4] == [0.05, 0.1, 0.2, 0.2]
    assert "crashy | exited with status 3; restarting in 0.05s" in output.getvalue().splitlines()
    assert managed.state == "stopped"


async def test_a_child_that_stayed_up_restarts_after_the_initial_delay_again(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    # The third start stays up past reset_after; every other start crashes at once.
    flaky = spec(
        "flaky",
        f"""
        import sys, time
        path = {str(starts)!r}
        try:
            count = len(open(path).read().splitlines())
        except FileNotFoundError:
            count = 0
        open(path, "a").write("start\\n")
        if count == 2:
            time.sleep(3.0)
        sys.exit(1)
        """,
    )
    supervisor = Supervisor(
        [flaky], backoff=Backoff(initial=0.05, factor=2.0, cap=5.0, reset_after=2.0), output=io.StringIO()
    )
    await supervisor.start()
    try:
        await wait_for_file_lines(starts, 5, limit=20.0)
    finally:
        await supervisor.stop()
    assert supervisor.processes["flaky"].restart_delays[:4] == [0.05, 0.1, 0.05, 0.1]


async def test_stop_ends_the_child_and_everything_it_forked(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    parent = spec(
        "parent",
        f"""
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        with open({str(pids)!r}, "w") as f:
            f.write(f"{{os.getpid()}}\\n{{child.pid}}\\n")
        time.sleep(120)
        """,
    )
    supervisor = Supervisor([parent], output=io.StringIO())
    await supervisor.start()
    try:
        lines = await wait_for_file_lines(pids, 2)
        started = [int(line) for line in lines]
        assert len(started) == 2
        assert all(alive(pid) for pid in started)
    finally:
        await supervisor.stop()
    assert await wait_gone(started) == []
    assert supervisor.processes["parent"].exit_codes == [-signal.SIGTERM]


async def test_a_child_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    stubborn = spec(
        "stubborn",
        f"""
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open({str(pids)!r}, "w").write(f"{{os.getpid()}}\\n")
        time.sleep(120)
        """,
    )
    output = io.StringIO()
    supervisor = Supervisor([stubborn], grace=0.3, output=output)
    await supervisor.start()
    try:
        (pid,) = [int(line) for line in await wait_for_file_lines(pids, 1)]
    finally:
        await supervisor.stop()
    assert not alive(pid)
    assert supervisor.processes["stubborn"].exit_codes == [-signal.SIGKILL]
    assert "stubborn | did not stop within 0.3s; killing it" in output.getvalue().splitlines()


async def test_child_output_is_relayed_with_its_name() -> None:
    output = io.StringIO()
    talker = spec("talker", "import time; print('hello from the child', flush=True); time.sleep(120)")
    supervisor = Supervisor([talker], output=output)
    await supervisor.start()
    try:
        for _ in range(300):
            if "hello from the child" in output.getvalue():
                break
            await asyncio.sleep(0.05)
    finally:
        await supervisor.stop()
    assert "talker | hello from the child" in output.getvalue().splitlines()


async def test_readiness_waits_for_the_ready_url_to_answer_200(tmp_path: Path) -> None:
    port = free_port()
    server = ProcessSpec(
        name="web",
        argv=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(tmp_path)],
        env=ENV,
        ready_url=f"http://127.0.0.1:{port}/",
    )
    silent = spec("silent", "import time; time.sleep(120)", ready_url=f"http://127.0.0.1:{free_port()}/")
    supervisor = Supervisor([server, silent], output=io.StringIO(), ready_poll=0.05)
    await supervisor.start()
    try:
        async with asyncio.timeout(30):
            await supervisor.processes["web"].ready.wait()
        assert supervisor.processes["web"].state == "ready"
        assert await supervisor.wait_ready(0.5) is False
        assert supervisor.processes["silent"].state == "starting"
    finally:
        await supervisor.stop()


async def test_children_get_sigterm_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    child_code = f"import os, time; open({str(pids)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    runner = textwrap.dedent(
        f"""
        import asyncio, os, sys
        from eventing.dev.supervisor import ProcessSpec, Supervisor
        async def main():
            spec = ProcessSpec("sleeper", [sys.executable, "-c", {child_code!r}], dict(os.environ))
            await Supervisor([spec]).start()
            await asyncio.sleep(120)
        asyncio.run(main())
        """
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", runner, cwd=str(Path(__file__).parents[2]), stdout=asyncio.subprocess.DEVNULL
    )
    try:
        (child,) = [int(line) for line in await wait_for_file_lines(pids, 1)]
        assert alive(child)
    finally:
        process.kill()
        await process.wait()
    assert await wait_gone([child]) == []
