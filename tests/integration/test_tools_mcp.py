"""The catalog over MCP streamable HTTP, used by the `mcp` package's own client."""

from __future__ import annotations

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
