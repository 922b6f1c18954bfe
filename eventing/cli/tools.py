"""`victor tools list | run NAME --args JSON | select QUERY`: clients of the tools function's HTTP API.

The function's URL: `--url`, VICTOR_TOOLS_URL, a running `victor dev`, or
http://127.0.0.1:8002 (see `eventing.cli.endpoints`); the first of VICTOR_API_KEYS is sent when set.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from common.settings import Settings
from eventing.cli.endpoints import add_client_options, auth_headers, example, function_url

# What to do when a call runs out of time, by tool (any other tool gets the generic advice).
TIMEOUT_ADVICE = {
    "code_search": "the first code_search indexes the workspace, and indexing goes on after the timeout:"
    " run `victor index .` to see it finish, then search again",
}


def _request(
    args: argparse.Namespace, settings: Settings, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    import httpx  # loaded when the command runs, not for `victor serve`

    url = function_url(args, settings, "tools")
    try:
        response = httpx.request(
            method, url + path, json=body, headers=auth_headers(settings), timeout=args.timeout
        )
    except httpx.TimeoutException:
        print(
            f"victor: the tools function at {url} gave no answer within {args.timeout:g} s;"
            " it may still be working: try again, or raise --timeout",
            file=sys.stderr,
        )
        return 0, None
    except httpx.HTTPError as exc:
        print(
            f"victor: cannot reach the tools function at {url} ({type(exc).__name__});"
            " start it with `victor dev`, or pass --url",
            file=sys.stderr,
        )
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
    status, body = _request(args, settings, "GET", "/v1/tools")
    if status != 200:
        return _failed(status, body)
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
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
    status, body = _request(args, settings, "POST", f"/v1/tools/{args.name}", arguments)
    if status != 200:
        return _failed(status, body)
    if args.json:
        print(json.dumps(body, indent=2))
        return 1 if body["is_error"] else 0
    if body["is_error"]:
        print(f"{args.name} failed ({body['error']}): {body['content']}", file=sys.stderr)
        if body["error"] == "timeout":
            advice = TIMEOUT_ADVICE.get(
                args.name, "run it again, or raise VICTOR_TOOL_TIMEOUT on the tools function"
            )
            print(f"victor: {advice}", file=sys.stderr)
        return 1
    print(body["content"])
    return 0


def cmd_select(args: argparse.Namespace, settings: Settings) -> int:
    request = {"query": args.query, "k": args.k, "strategy": args.strategy}
    status, body = _request(args, settings, "POST", "/v1/tools/select", request)
    if status != 200:
        return _failed(status, body)
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    for tool in body["tools"]:
        print(f"{tool['score']:>10.4f}  {tool['name']}")
    print(f"strategy {body['used']}{' (cached)' if body['cached'] else ''}")
    return 0


def register(subparsers: Any) -> None:
    tools = subparsers.add_parser(
        "tools",
        help="list, run and select tools (client of the tools function)",
        **example("victor tools list", 'victor tools run read_file --args \'{"path": "README.md"}\''),
    )
    commands = tools.add_subparsers(dest="tools_command", required=True, metavar="ACTION")
    listing = commands.add_parser("list", help="list the tool catalog", **example("victor tools list --json"))
    listing.set_defaults(run=cmd_list)
    run = commands.add_parser(
        "run",
        help="run one tool",
        **example(
            'victor tools run read_file --args \'{"path": "README.md"}\'',
            'victor tools run grep --args \'{"pattern": "def main"}\' --json',
        ),
    )
    run.add_argument("name", help="tool name, e.g. read_file (`victor tools list` shows them)")
    run.add_argument(
        "--args", default="{}", help='arguments as a JSON object, e.g. \'{"path": "README.md"}\''
    )
    run.set_defaults(run=cmd_run)
    select = commands.add_parser(
        "select",
        help="rank tools for a task",
        **example('victor tools select "show the commit history" -k 3'),
    )
    select.add_argument("query", help="the task in plain words, e.g. 'what changed in my working tree'")
    select.add_argument("-k", type=int, default=5, help="how many tools (default 5)")
    select.add_argument(
        "--strategy",
        default="auto",
        choices=("keyword", "semantic", "hybrid", "auto"),
        help="ranking: BM25 keywords, embeddings, both fused, or auto (hybrid when embeddings answer;"
        " default auto)",
    )
    select.set_defaults(run=cmd_select)
    for command, what in ((listing, "the catalog"), (run, "the call's outcome"), (select, "the selection")):
        add_client_options(command, "tools", json_help=f"print {what} as the function's JSON")
        command.add_argument(
            "--timeout", type=float, default=120.0, help="seconds to wait for the answer (default 120)"
        )
