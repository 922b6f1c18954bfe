"""`victor tools list | run NAME --args JSON | select QUERY`: clients of the tools function's HTTP API.

The function's URL comes from VICTOR_TOOLS_URL (default http://127.0.0.1:8002,
where `victor dev` serves it); the first of VICTOR_API_KEYS is sent when set.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from common.settings import Settings

DEFAULT_URL = "http://127.0.0.1:8002"


def _url(settings: Settings) -> str:
    return settings.function_urls.get("tools", DEFAULT_URL)


def _request(settings: Settings, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    import httpx  # loaded when the command runs, not for `victor serve`

    headers = {}
    if settings.client_key is not None:
        headers["authorization"] = f"Bearer {settings.client_key.reveal()}"
    url = _url(settings)
    try:
        response = httpx.request(method, url + path, json=body, headers=headers, timeout=120)
    except httpx.HTTPError as exc:
        print(f"victor: cannot reach the tools function at {url}: {type(exc).__name__}", file=sys.stderr)
        return 0, None
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def _failed(status: int, body: Any) -> int:
    if status == 0:
        return 1
    detail = body.get("detail") if isinstance(body, dict) else body
    print(f"victor: HTTP {status}: {detail}", file=sys.stderr)
    return 1


def cmd_list(args: argparse.Namespace, settings: Settings) -> int:
    status, body = _request(settings, "GET", "/v1/tools")
    if status != 200:
        return _failed(status, body)
    for tool in body["tools"]:
        flags = ", ".join(f for f in ("read_only", "cacheable", "dangerous") if tool[f])
        print(f"{tool['name']:<16} {tool['description']}" + (f" [{flags}]" if flags else ""))
    print(f"catalog version {body['catalog_version']}")
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        arguments = json.loads(args.args)
    except json.JSONDecodeError as exc:
        print(f"victor: --args is not valid JSON: {exc}", file=sys.stderr)
        return 2
    if not isinstance(arguments, dict):
        print('victor: --args must be a JSON object, e.g. \'{"path": "README.md"}\'', file=sys.stderr)
        return 2
    status, body = _request(settings, "POST", f"/v1/tools/{args.name}", arguments)
    if status != 200:
        return _failed(status, body)
    if body["is_error"]:
        print(f"{args.name} failed ({body['error']}): {body['content']}", file=sys.stderr)
        return 1
    print(body["content"])
    return 0


def cmd_select(args: argparse.Namespace, settings: Settings) -> int:
    request = {"query": args.query, "k": args.k, "strategy": args.strategy}
    status, body = _request(settings, "POST", "/v1/tools/select", request)
    if status != 200:
        return _failed(status, body)
    for tool in body["tools"]:
        print(f"{tool['score']:>10.4f}  {tool['name']}")
    print(f"strategy {body['used']}{' (cached)' if body['cached'] else ''}")
    return 0


def register(subparsers: Any) -> None:
    tools = subparsers.add_parser("tools", help="list, run and select tools (client of the tools function)")
    commands = tools.add_subparsers(dest="tools_command", required=True, metavar="ACTION")
    listing = commands.add_parser("list", help="list the tool catalog")
    listing.set_defaults(run=cmd_list)
    run = commands.add_parser("run", help="run one tool")
    run.add_argument("name", help="tool name, e.g. read_file")
    run.add_argument(
        "--args", default="{}", help='arguments as a JSON object, e.g. \'{"path": "README.md"}\''
    )
    run.set_defaults(run=cmd_run)
    select = commands.add_parser("select", help="rank tools for a task")
    select.add_argument("query")
    select.add_argument("-k", type=int, default=5, help="how many tools (default 5)")
    select.add_argument("--strategy", default="auto", choices=("keyword", "semantic", "hybrid", "auto"))
    select.set_defaults(run=cmd_select)
