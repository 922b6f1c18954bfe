"""`victor chat MESSAGE`: a client of the chat function's POST /v1/chat.

The function's URL: `--url`, VICTOR_CHAT_URL, a running `victor dev`, or
http://127.0.0.1:8001 (see `eventing.cli.endpoints`); the first of VICTOR_API_KEYS is
sent when set. By default the answer streams as it is written, with tool calls and results on stderr; the
conversation id is printed last so a follow-up can pass `--conversation`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from common.settings import Settings
from eventing.cli.endpoints import add_client_options, auth_headers, example, function_url

if TYPE_CHECKING:
    import httpx


def cmd_chat(args: argparse.Namespace, settings: Settings) -> int:
    import httpx  # loaded when the command runs, not for `victor serve`

    url = function_url(args, settings, "chat")
    headers = auth_headers(settings)
    body: dict[str, Any] = {"message": args.message, "stream": not args.no_stream}
    for name in ("conversation_id", "system", "model", "max_tokens"):
        if getattr(args, name) is not None:
            body[name] = getattr(args, name)
    try:
        timeout = httpx.Timeout(args.timeout, connect=5.0)
        with httpx.stream("POST", f"{url}/v1/chat", json=body, headers=headers, timeout=timeout) as response:
            if response.status_code != 200:
                response.read()
                return _failed(response)
            if args.no_stream:
                response.read()
                return _print_answer(response.json(), args.json)
            return _follow(response.iter_lines(), args.json)
    except httpx.TimeoutException:
        print(
            f"\nvictor: no answer from {url} within {args.timeout:g} s; the request goes on:"
            " `victor chat --conversation ID` continues it later, or raise --timeout",
            file=sys.stderr,
        )
        return 1
    except httpx.HTTPError as exc:
        print(f"victor: cannot reach the chat function at {url}: {type(exc).__name__}", file=sys.stderr)
        return 1


def _failed(response: httpx.Response) -> int:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text
    print(f"victor: HTTP {response.status_code}: {detail}", file=sys.stderr)
    return 1


def _print_answer(answer: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(answer, indent=2))
        return 0
    for call in answer.get("tool_calls", []):
        print(f"[tool] {call['name']} {json.dumps(call['arguments'])}", file=sys.stderr)
    print(answer["answer"])
    _print_footer(answer)
    return 0


def _print_footer(answer: dict[str, Any]) -> None:
    usage = answer["usage"]
    print(
        f"[conversation {answer['conversation_id']}; {usage['input_tokens']} in,"
        f" {usage['output_tokens']} out, {usage['cache_read_tokens']} cache read,"
        f" {usage['cache_write_tokens']} cache write;"
        f" ${usage['cost_usd']:.6f}{unpriced(answer)}]",
        file=sys.stderr,
    )


def unpriced(answer: dict[str, Any]) -> str:
    """The footer's note on models whose cost is unknown (not zero)."""
    models = answer.get("unpriced_models") or []
    return f" + unpriced calls of {', '.join(models)} (no price; see VICTOR_LLM_PRICES)" if models else ""


def _follow(lines: Any, as_json: bool) -> int:
    """Print SSE events as they come: text to stdout, tool activity and the summary to stderr."""
    event = "message"
    for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
            continue
        if not line.startswith("data:"):
            continue
        data = json.loads(line[5:])
        if event == "text" and not as_json:
            print(data["text"], end="", flush=True)
        elif event == "tool_call" and not as_json:
            print(f"\n[tool] {data['name']} {json.dumps(data['arguments'])}", file=sys.stderr)
        elif event == "tool_result" and not as_json:
            state = "error" if data.get("is_error") else "ok"
            print(f"[tool] {data['name']}: {state}, {len(data.get('content') or '')} chars", file=sys.stderr)
        elif event == "done":
            if as_json:
                print(json.dumps(data, indent=2))
            else:
                print()
                _print_footer(data)
            return 0
        elif event == "error":
            print(f"\nvictor: chat failed ({data.get('code')}): {data.get('error')}", file=sys.stderr)
            return 1
    print("\nvictor: the stream ended before the answer", file=sys.stderr)
    return 1


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="send a message to the chat function",
        **example('victor chat "What does NOTES.md say?"', 'victor chat "and why?" --conversation ID --json'),
    )
    parser.add_argument("message", help="the message to send")
    parser.add_argument("--conversation", dest="conversation_id", help="continue this conversation")
    parser.add_argument("--system", help="system prompt (a new conversation keeps it for follow-ups)")
    parser.add_argument("--model", help="model to use instead of the function's default")
    parser.add_argument("--max-tokens", dest="max_tokens", type=int, help="max tokens of each answer")
    parser.add_argument(
        "--no-stream", action="store_true", help="wait for the whole answer instead of streaming"
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds to wait for the whole answer (default 900)"
    )
    add_client_options(parser, "chat", json_help="print the final answer as JSON")
    parser.set_defaults(run=cmd_chat)
