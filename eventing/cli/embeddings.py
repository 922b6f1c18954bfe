"""`victor index PATH` and `victor search QUERY`: HTTP clients of the embeddings function;
`victor embeddings export OUT_DIR`: the model written out for the torch-free ONNX backend.

The function's URL: `--url`, VICTOR_EMBEDDINGS_URL, a running `victor dev`, or
http://127.0.0.1:8003 (see `eventing.cli.endpoints`); the first of VICTOR_API_KEYS is
sent when set. A PATH that exists here is sent as an absolute path, which the function accepts when it lies
inside its WORKSPACE_DIR; anything else (a glob, say) is sent as written,
relative to WORKSPACE_DIR.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from common.settings import Settings
from eventing.cli.endpoints import add_client_options, auth_headers, example, function_url


def _post(args: argparse.Namespace, settings: Settings, route: str, body: dict[str, Any]) -> Any | None:
    """The JSON answer, or None after printing one line saying what went wrong."""
    import httpx  # loaded when the command runs, not for `victor serve`

    url = function_url(args, settings, "embeddings")
    try:
        response = httpx.post(
            f"{url}{route}", json=body, headers=auth_headers(settings), timeout=args.timeout
        )
    except httpx.HTTPError as exc:
        _unreachable(args, url, route, exc)
        return None
    return _answer(route, response.status_code, response.content)


def _unreachable(args: argparse.Namespace, url: str, route: str, exc: Exception) -> None:
    """One line for a request that got no answer: a timeout, or no function there."""
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        print(f"victor: no answer from {url}{route} within {args.timeout:g} s; the function goes on"
              " working: run the command again (finished files are skipped), or raise --timeout",
              file=sys.stderr)  # fmt: skip
    else:
        print(f"victor: cannot reach the embeddings function at {url} ({type(exc).__name__});"
              " start it with `victor dev` or set VICTOR_EMBEDDINGS_URL", file=sys.stderr)  # fmt: skip


def _answer(route: str, status: int, content: bytes) -> Any | None:
    """The decoded JSON of a 2xx, or None after printing the status and detail of anything else."""
    try:
        answer = json.loads(content)
    except ValueError:
        answer = {"detail": content[:200].decode("utf-8", "replace")}
    if not 200 <= status < 300:
        detail = answer.get("detail", answer) if isinstance(answer, dict) else answer
        print(f"victor: {route} answered {status}: {detail}", file=sys.stderr)
        return None
    return answer


def _index(args: argparse.Namespace, settings: Settings, body: dict[str, Any]) -> Any | None:
    """POST /v1/index as a progress stream: a bar on a terminal's stderr, then the result (or None)."""
    import httpx

    url = function_url(args, settings, "embeddings")
    show = sys.stderr.isatty() and not args.json
    job_id = None
    try:
        with httpx.stream(
            "POST", f"{url}/v1/index", json={**body, "progress": True},
            headers=auth_headers(settings), timeout=args.timeout,
        ) as response:  # fmt: skip
            if response.status_code != 200:
                return _answer("/v1/index", response.status_code, response.read())
            result = None
            for line in response.iter_lines():
                item = json.loads(line) if line.strip() else {}
                job_id = item.get("job_id", job_id)
                if item.get("event") == "progress" and show:
                    print(f"\r{progress_bar(item)}", end="", file=sys.stderr, flush=True)
                elif item.get("event") == "done":
                    result = item["result"]
                elif item.get("event") == "error":
                    failure = f"{item['status_code']} {item['error']}"
                    print(f"victor: indexing failed ({failure}): {item['detail']}", file=sys.stderr)
                    return None
    except httpx.HTTPError as exc:
        _unreachable(args, url, "/v1/index", exc)
        _follow(url, job_id)
        return None
    if show:
        print(file=sys.stderr)
    if result is None:
        print("victor: the index stream ended without a result; run the command again"
              " (finished files are skipped)", file=sys.stderr)  # fmt: skip
        _follow(url, job_id)
    return result


def _follow(url: str, job_id: str | None) -> None:
    """Where to follow a job whose stream was lost, when the stream named it."""
    if job_id is not None:
        print(f"victor: the index job {job_id} goes on; follow it at {url}/v1/index/jobs/{job_id}",
              file=sys.stderr)  # fmt: skip


def progress_bar(progress: dict[str, Any], width: int = 30) -> str:
    """`index [#########.....] 120/480 chunks, 12 of 35 files changed` for one progress report."""
    total, done = progress["chunks_total"], progress["chunks_done"]
    filled = width if total == 0 else width * done // total
    return (
        f"index [{'#' * filled}{'.' * (width - filled)}] {done}/{total} chunks,"
        f" {progress['files_changed']} of {progress['files_total']} files changed"
    )


def cmd_index(args: argparse.Namespace, settings: Settings) -> int:
    local = Path(args.path).expanduser()
    path = str(local.resolve()) if local.exists() else args.path
    body = {"path": path, "collection": args.collection}
    if args.background:
        return _submit(args, settings, body)
    answer = _index(args, settings, body)
    if answer is None:
        return 1
    if args.json:
        print(msgspec.json.encode(answer).decode())
        return 0
    print(
        f"{answer['collection']}: {answer['files_indexed']} files indexed,"
        f" {answer['files_unchanged']} unchanged;"
        f" {answer['chunks_added']} chunks added, {answer['chunks_removed']} removed;"
        f" {answer['total_chunks']} chunks in all"
    )
    for skipped, reason in sorted(answer.get("skipped", {}).items()):
        print(f"  skipped {skipped}: {reason}")
    return 0


def _submit(args: argparse.Namespace, settings: Settings, body: dict[str, Any]) -> int:
    """POST /v1/index as a background job: print its id and where to follow it."""
    job = _post(args, settings, "/v1/index", {**body, "background": True})
    if job is None:
        return 1
    if args.json:
        print(msgspec.json.encode(job).decode())
        return 0
    url = function_url(args, settings, "embeddings")
    print(f"index job {job['job_id']} {job['state']}; follow it at {url}{job['status_url']}")
    return 0


def cmd_search(args: argparse.Namespace, settings: Settings) -> int:
    body: dict[str, Any] = {
        "query": args.query,
        "k": args.k,
        "collection": args.collection,
        "mode": args.mode,
    }
    if args.path_prefix or args.language:
        body["filter"] = {"path_prefix": args.path_prefix, "language": args.language}
    answer = _post(args, settings, "/v1/search", body)
    if answer is None:
        return 1
    if args.json:
        print(msgspec.json.encode(answer).decode())
        return 0
    if not answer["results"]:
        print("no results")
    for hit in answer["results"]:
        print(f"{hit['score']:.3f}  {hit['path']}:{hit['start_line']}-{hit['end_line']}")
    return 0


def cmd_export(args: argparse.Namespace, settings: Settings) -> int:
    from common.embedding_export import ExportError, export_model

    try:
        exported = export_model(settings.embedding_model, Path(args.out_dir), onnx_only=args.onnx_only)
    except ExportError as exc:
        print(f"victor: {exc}", file=sys.stderr)
        return 1
    print(
        f"{exported.name}: exported to {args.out_dir} ({exported.dimension} dimensions,"
        f" {exported.max_seq_length} tokens, pooling {'+'.join(exported.pooling) or 'none'},"
        f" {'normalized' if exported.normalize else 'not normalized'});"
        f" serve it with VICTOR_EMBEDDING_MODEL={args.out_dir}"
    )
    return 0


def register(subparsers: Any) -> None:
    embeddings = subparsers.add_parser(
        "embeddings",
        help="the embedding model: export it for the ONNX backend",
        **example("victor embeddings export ./model-onnx"),
    )
    actions = embeddings.add_subparsers(dest="embeddings_command", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="export VICTOR_EMBEDDING_MODEL to ONNX (with its tokenizer and pooling); needs the torch extra",
        **example(
            "victor embeddings export ./model-onnx --onnx-only",
            "VICTOR_EMBEDDING_MODEL=BAAI/bge-small-en-v1.5 victor embeddings export /opt/model",
        ),
    )
    export.add_argument(
        "out_dir", help="directory to write (absent or empty); serve it as VICTOR_EMBEDDING_MODEL"
    )
    export.add_argument(
        "--onnx-only",
        action="store_true",
        help="leave out the torch weights: the directory then serves only the ONNX backend (smaller)",
    )
    export.set_defaults(run=cmd_export)

    index = subparsers.add_parser(
        "index",
        help="index files of the workspace into a collection",
        **example(
            "victor index .",
            "victor index 'src/**/*.py' --collection code --json",
            "victor index . --background",
        ),
    )
    index.add_argument("path", help="a file, directory or glob inside the function's WORKSPACE_DIR")
    index.add_argument("--collection", default="default", help="collection to index into (default: default)")
    index.add_argument(
        "--background",
        action="store_true",
        help="submit the run as a job and print its id and status URL at once (GET it to follow the job)",
    )
    index.add_argument("--timeout", type=float, default=600.0, help="seconds to wait (default 600)")
    add_client_options(index, "embeddings", json_help="print the function's JSON answer")
    index.set_defaults(run=cmd_index)

    search = subparsers.add_parser(
        "search",
        help="search an indexed collection",
        **example(
            'victor search "where are retries configured" -k 5', 'victor search "parse dates" --mode hybrid'
        ),
    )
    search.add_argument("query", help="what the code does, in plain words")
    search.add_argument("-k", type=int, default=10, help="how many results (default 10)")
    search.add_argument("--collection", default="default", help="collection to search (default: default)")
    search.add_argument(
        "--mode",
        choices=("vector", "hybrid"),
        default="vector",
        help="vector: embeddings only; hybrid: embeddings and full text fused (default vector)",
    )
    search.add_argument("--path-prefix", help="only results under this path")
    search.add_argument("--language", help="only results in this language (python, go, markdown, ...)")
    search.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    add_client_options(search, "embeddings", json_help="print the function's JSON answer")
    search.set_defaults(run=cmd_search)
