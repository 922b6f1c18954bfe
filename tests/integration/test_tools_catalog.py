"""Each tool over real HTTP against a real temporary git workspace."""

from __future__ import annotations

import os
from pathlib import Path

from functions.tools.settings import ToolsSettings
from tests.support.tools import git, make_repository, tools_server

ALL_TOOLS = [
    "read_file",
    "write_file",
    "edit_file",
    "list_directory",
    "glob",
    "grep",
    "code_search",
    "git_status",
    "git_diff",
    "git_log",
    "run_command",
]
COMMANDS = ToolsSettings(
    enable_run_command=True,
    run_command_allowlist=("echo", "sleep", "env", "python3", "ls"),
    command_timeout=5,
    output_limit=1000,
)


async def test_catalog_lists_every_tool_with_schema_flags_and_version(make_settings) -> None:
    async with tools_server(make_settings) as server:
        body = (await server.client.get("/v1/tools")).json()
    assert [tool["name"] for tool in body["tools"]] == ALL_TOOLS
    assert len(body["catalog_version"]) == 16
    read_file = body["tools"][0]
    assert read_file["input_schema"]["required"] == ["path"]
    assert read_file["input_schema"]["additionalProperties"] is False
    assert (read_file["read_only"], read_file["cacheable"], read_file["dangerous"]) == (True, True, False)
    run_command = body["tools"][-1]
    assert (run_command["read_only"], run_command["dangerous"]) == (False, True)


async def test_unknown_tool_is_404_and_invalid_arguments_are_422_naming_the_field(make_settings) -> None:
    async with tools_server(make_settings) as server:
        missing = await server.client.post("/v1/tools/format_disk", json={})
        wrong_type = await server.client.post("/v1/tools/read_file", json={"path": "a", "offset": "ten"})
        unknown_field = await server.client.post("/v1/tools/read_file", json={"path": "a", "mode": "rw"})
        no_path = await server.client.post("/v1/tools/read_file", json={})
        not_json = await server.client.post("/v1/tools/read_file", content=b"{path")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no tool named 'format_disk'; GET /v1/tools lists them"
    assert wrong_type.status_code == 422
    assert "$.offset" in wrong_type.json()["detail"]
    assert unknown_field.status_code == 422
    assert "mode" in unknown_field.json()["detail"]
    assert no_path.status_code == 422
    assert "path" in no_path.json()["detail"]
    assert not_json.status_code == 400
    assert "not valid JSON" in not_json.json()["detail"]


async def test_read_file_numbers_lines_and_pages_with_offset_and_limit(make_settings) -> None:
    async with tools_server(make_settings) as server:
        whole = await server.call("read_file", {"path": "docs/guide.txt"})
        page = await server.call("read_file", {"path": "docs/guide.txt", "offset": 2, "limit": 1})
        plain = await server.call("read_file", {"path": "./docs//guide.txt", "line_numbers": False})
        past = await server.call("read_file", {"path": "docs/guide.txt", "offset": 9})
    assert whole["content"] == "1\tline one\n2\tline two\n3\tline three"
    assert page["content"] == "2\tline two\n[1 more lines; read on with offset=3]"
    assert plain["content"] == "line one\nline two\nline three"
    assert past["is_error"] and past["content"] == "offset 9 is past the end of docs/guide.txt (3 lines)"


async def test_read_file_reports_binary_large_missing_and_directories(make_settings) -> None:
    limits = ToolsSettings(max_file_size=100)
    async with tools_server(make_settings, limits) as server:
        (server.workspace / "blob.bin").write_bytes(b"\x89PNG\x00\x01\x02")
        (server.workspace / "large.txt").write_text("y" * 101)
        binary = await server.call("read_file", {"path": "blob.bin"})
        large = await server.call("read_file", {"path": "large.txt"})
        missing = await server.call("read_file", {"path": "nope.txt"})
        directory = await server.call("read_file", {"path": "src"})
    assert binary["is_error"] is False
    assert binary["content"] == "blob.bin is a binary file (7 bytes); its content is not shown"
    assert (large["is_error"], large["error"]) == (True, "too_large")
    assert (missing["error"], missing["content"]) == ("not_found", "'nope.txt' does not exist")
    assert directory["error"] == "is_directory"


async def test_write_file_creates_parents_and_edit_file_needs_one_exact_match(make_settings) -> None:
    async with tools_server(make_settings) as server:
        wrote = await server.call("write_file", {"path": "pkg/deep/mod.py", "content": "a = 1\nb = 1\n"})
        twice = await server.call(
            "edit_file", {"path": "pkg/deep/mod.py", "old_text": "= 1", "new_text": "= 2"}
        )
        absent = await server.call(
            "edit_file", {"path": "pkg/deep/mod.py", "old_text": "c =", "new_text": "d ="}
        )
        edited = await server.call(
            "edit_file", {"path": "pkg/deep/mod.py", "old_text": "b = 1", "new_text": "b = 3"}
        )
        text = (server.workspace / "pkg/deep/mod.py").read_text()
    assert wrote["content"] == "wrote 12 bytes to pkg/deep/mod.py"
    assert twice["is_error"] and "occurs 2 times" in twice["content"]
    assert absent["is_error"] and "was not found" in absent["content"]
    assert edited["content"] == "edited pkg/deep/mod.py at line 2"
    assert text == "a = 1\nb = 3\n"


async def test_list_directory_and_glob(make_settings) -> None:
    async with tools_server(make_settings) as server:
        (server.workspace / "src" / "link.py").symlink_to("app.py")
        listing = await server.call("list_directory", {"path": "src"})
        hidden = await server.call("list_directory", {"include_hidden": True})
        python = await server.call("glob", {"pattern": "**/*.py"})
        top = await server.call("glob", {"pattern": "*.md"})
        none = await server.call("glob", {"pattern": "*.rs"})
    assert listing["content"] == "src: 3 entries\napp.py\t78 bytes\nlink.py -> (symlink)\nutil/"
    assert ".git/" in hidden["content"].splitlines()
    assert python["content"] == "src/app.py\nsrc/util/strings.py"
    assert top["content"] == "README.md"
    assert none["content"] == "no files match '*.rs' under ."


async def test_grep_with_context_glob_filter_cap_and_bad_regex(make_settings) -> None:
    async with tools_server(make_settings) as server:
        found = await server.call("grep", {"pattern": r"return \w", "glob": "*.py"})
        context = await server.call("grep", {"pattern": "line two", "context": 1})
        capped = await server.call("grep", {"pattern": "line", "max_results": 2})
        case = await server.call("grep", {"pattern": "DEMO", "ignore_case": True})
        bad = await server.call("grep", {"pattern": "("})
    assert found["content"] == (
        "src/app.py:2:    return f'hello {name}'\n"
        "src/app.py:6:    return a + b\n"
        "src/util/strings.py:2:    return text.upper()"
    )
    assert (
        context["content"]
        == "docs/guide.txt-1-line one\ndocs/guide.txt:2:line two\ndocs/guide.txt-3-line three\n--"
    )
    assert capped["content"] == "docs/guide.txt:1:line one\ndocs/guide.txt:2:line two\n[stopped at 2 matches]"
    assert case["content"] == "README.md:1:# Demo"
    assert (bad["is_error"], bad["error"]) == (True, "invalid_pattern")


async def test_git_tools_read_the_real_repository(make_settings) -> None:
    async with tools_server(make_settings) as server:
        clean = await server.call("git_status")
        (server.workspace / "README.md").write_text("# Demo\n\nChanged.\n")
        (server.workspace / "notes.txt").write_text("new\n")
        status = await server.call("git_status")
        diff = await server.call("git_diff", {"path": "README.md"})
        log = await server.call("git_log")
        one = await server.call("git_log", {"max_count": 1, "path": "docs"})
        index_before = (server.workspace / ".git" / "index").stat().st_mtime_ns
        await server.call("git_status")
        index_after = (server.workspace / ".git" / "index").stat().st_mtime_ns
    assert clean["content"] == "## main\n"
    assert status["content"] == "## main\n M README.md\n?? notes.txt\n"
    assert "-A tiny project for the tools tests.\n+Changed." in diff["content"]
    assert [line.split(" ", 3)[3] for line in log["content"].splitlines()] == [
        "Add the app",
        "Add the readme and guide",
    ]
    assert one["content"].endswith("Ada Add the readme and guide\n")
    assert index_after == index_before  # read-only: no index refresh written


async def test_git_tools_refuse_a_workspace_that_is_not_a_repository(make_settings) -> None:
    async with tools_server(make_settings) as server:
        os.rename(server.workspace / ".git", server.workspace.parent / "moved-git")
        outcome = await server.call("git_status")
    assert (outcome["is_error"], outcome["error"]) == (True, "not_a_repository")


async def test_run_command_is_off_by_default(make_settings) -> None:
    async with tools_server(make_settings) as server:
        outcome = await server.call("run_command", {"argv": ["echo", "hi"]})
    assert (outcome["error"], outcome["content"]) == (
        "disabled",
        "run_command is disabled; set VICTOR_ENABLE_RUN_COMMAND=true to enable it",
    )


async def test_run_command_allowlist_timeout_output_cap_and_scrubbed_environment(
    make_settings, monkeypatch
) -> None:
    monkeypatch.setenv("VICTOR_TEST_SECRET", "s3cr3t-value")
    async with tools_server(make_settings, COMMANDS) as server:
        echo = await server.call("run_command", {"argv": ["echo", "hello", "$HOME", "*"]})
        refused = await server.call("run_command", {"argv": ["rm", "-rf", "."]})
        slow = await server.call("run_command", {"argv": ["sleep", "30"], "timeout": 0.3})
        chatty = await server.call("run_command", {"argv": ["python3", "-c", "print('x' * 5000)"]})
        environment = await server.call("run_command", {"argv": ["env"]})
        failing = await server.call("run_command", {"argv": ["ls", "missing-dir"]})
        in_src = await server.call("run_command", {"argv": ["ls"], "cwd": "src"})
    assert echo["content"] == "hello $HOME *\n"  # no shell: nothing expanded
    assert refused["error"] == "not_allowed"
    assert (slow["error"], slow["content"]) == ("timeout", "sleep did not finish in 0.3 s and was killed")
    assert chatty["content"] == "x" * 1000 + "\n[output truncated]"
    variables = dict(line.split("=", 1) for line in environment["content"].splitlines())
    assert sorted(variables) == ["HOME", "LANG", "PATH"]
    assert variables["HOME"] == str(Path(server.settings.workspace_dir).resolve())
    assert "s3cr3t-value" not in environment["content"]
    assert failing["error"] == "exit_status"
    assert in_src["content"] == "app.py\nutil\n"


async def test_cacheable_reads_are_cached_until_a_write_or_a_change(make_settings) -> None:
    async with tools_server(make_settings) as server:
        first = await server.call("read_file", {"path": "docs/guide.txt", "limit": 1})
        second = await server.call("read_file", {"path": "docs/guide.txt", "limit": 1})
        await server.call("write_file", {"path": "other.txt", "content": "unrelated"})
        after_write = await server.call("read_file", {"path": "docs/guide.txt", "limit": 1})
        again = await server.call("read_file", {"path": "docs/guide.txt", "limit": 1})
        path = server.workspace / "docs/guide.txt"
        path.write_text("edited outside\n")
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 5_000_000_000))
        changed = await server.call("read_file", {"path": "docs/guide.txt", "limit": 1})
        grep_one = await server.call("grep", {"pattern": "edited"})
        await server.call("edit_file", {"path": "docs/guide.txt", "old_text": "edited", "new_text": "fixed"})
        grep_two = await server.call("grep", {"pattern": "edited"})
        metrics = (await server.client.get("/metrics")).text
    assert [first["cached"], second["cached"], after_write["cached"], again["cached"]] == [
        False,
        True,
        False,
        True,
    ]
    assert first["content"] == second["content"] == "1\tline one\n[2 more lines; read on with offset=2]"
    assert (changed["cached"], changed["content"]) == (False, "1\tedited outside")
    assert grep_one["content"] == "docs/guide.txt:1:edited outside"
    assert (grep_two["cached"], grep_two["content"]) == (False, "no matches for 'edited'")
    assert 'victor_cache_hit_ratio{cache="tool_results"}' in metrics
    assert 'victor_tool_executions_total{outcome="cached",tool="read_file"}' in metrics
    assert 'victor_tool_duration_seconds_count{tool="read_file"}' in metrics


async def test_the_api_key_guards_tool_routes_when_set(make_settings) -> None:
    async with tools_server(make_settings, VICTOR_API_KEY="k-123") as server:
        anonymous = await server.client.get("/v1/tools")
        keyed = await server.client.get("/v1/tools", headers={"Authorization": "Bearer k-123"})
        mcp = await server.client.post("/mcp", json={})
    assert (anonymous.status_code, keyed.status_code, mcp.status_code) == (401, 200, 401)


async def test_bodies_that_do_not_fit_answer_422(make_settings) -> None:
    async with tools_server(make_settings) as server:
        batch = await server.client.post("/v1/tools/batch", json={"calls": []})
        select = await server.client.post("/v1/tools/select", json={"query": "x", "k": 0})
        strategy = await server.client.post("/v1/tools/select", json={"query": "x", "strategy": "magic"})
    assert batch.status_code == 422 and "$.calls" in batch.json()["detail"]
    assert select.status_code == 422 and "$.k" in select.json()["detail"]
    assert strategy.status_code == 422 and "$.strategy" in strategy.json()["detail"]


def test_git_fixture_is_a_real_repository(tmp_path: Path) -> None:
    repo = make_repository(tmp_path / "repo")
    assert git(repo, "rev-list", "--count", "HEAD").strip() == "2"
