"""The catalog over MCP streamable HTTP, used by the `mcp` package's own client."""

from __future__ import annotations

from typing import Any

from mcp import Client

from tests.support.tools import tools_server


async def test_an_mcp_client_lists_and_calls_the_tools(make_settings) -> None:
    async with tools_server(make_settings) as server:
        catalog = (await server.client.get("/v1/tools")).json()["tools"]
        async with Client(f"{server.url}/mcp") as client:
            listed = await client.list_tools()
            read = await client.call_tool("read_file", {"path": "docs/guide.txt", "offset": 3})
            wrote = await client.call_tool("write_file", {"path": "mcp.txt", "content": "from mcp"})
            unknown = await client.call_tool("format_disk", {})
            invalid = await client.call_tool("read_file", {"path": 5})
        written = (server.workspace / "mcp.txt").read_text()
    assert [tool.name for tool in listed.tools] == [tool["name"] for tool in catalog]
    by_name = {tool.name: tool for tool in listed.tools}
    assert by_name["grep"].input_schema == next(t["input_schema"] for t in catalog if t["name"] == "grep")
    assert (read.is_error, read.content[0].text) == (False, "3\tline three")  # type: ignore[union-attr]
    assert wrote.is_error is False
    assert written == "from mcp"
    assert unknown.is_error is True
    assert unknown.content[0].text == "no tool named 'format_disk'; GET /v1/tools lists them"  # type: ignore[union-attr]
    assert invalid.is_error is True
    assert "$.path" in invalid.content[0].text  # type: ignore[union-attr]


def hint_row(tool: Any) -> tuple[Any, ...]:
    a = tool.annotations
    return (a.title, a.read_only_hint, a.destructive_hint, a.idempotent_hint, a.open_world_hint)


async def test_mcp_lists_annotations_and_output_schemas_and_returns_structured_content(make_settings) -> None:
    async with tools_server(make_settings) as server, Client(f"{server.url}/mcp") as client:
        listed = await client.list_tools()
        listing = await client.call_tool("list_directory", {"path": "src"})
        globbed = await client.call_tool("glob", {"pattern": "**/*.py"})
        grepped = await client.call_tool("grep", {"pattern": "def \\w+", "path": "src"})
        read = await client.call_tool("read_file", {"path": "README.md"})
    by_name = {tool.name: tool for tool in listed.tools}
    hints = {name: hint_row(t) for name, t in by_name.items() if t.annotations is not None}
    assert hints["read_file"] == ("Read file", True, False, True, False)
    assert hints["write_file"] == ("Write file", False, True, True, False)
    assert hints["edit_file"] == ("Edit file", False, True, False, False)
    assert hints["run_command"] == ("Run command", False, True, False, True)
    assert len(hints) == len(listed.tools)
    with_output = {name for name, tool in by_name.items() if tool.output_schema is not None}
    assert with_output == {"list_directory", "glob", "grep", "code_search"}
    assert by_name["grep"].output_schema["required"] == ["pattern", "matches", "files"]  # type: ignore[index]
    assert listing.structured_content == {
        "path": "src",
        "entries": [
            {"name": "app.py", "kind": "file", "size": 78},
            {"name": "util", "kind": "directory", "size": None},
        ],
        "truncated": False,
    }
    assert listing.content[0].text == "src: 2 entries\napp.py\t78 bytes\nutil/"  # type: ignore[union-attr]
    assert globbed.structured_content is not None
    assert globbed.structured_content["paths"] == ["src/app.py", "src/util/strings.py"]
    assert grepped.structured_content == {
        "pattern": "def \\w+",
        "matches": [
            {"path": "src/app.py", "line": 1, "text": "def greet(name):"},
            {"path": "src/app.py", "line": 5, "text": "def add(a, b):"},
            {"path": "src/util/strings.py", "line": 1, "text": "def shout(text):"},
        ],
        "files": 2,
        "stopped": False,
        "truncated": False,
        "not_utf8": [],
    }
    assert read.structured_content is None
