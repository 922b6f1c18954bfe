"""The chat function under functions-framework, over the same handlers as its Litestar app.

    functions-framework --asgi --target handle --source functions/chat/main.py --port 8080

Serves the shared routes, `POST /` (CloudEvents), `POST /v1/chat` and
`GET /v1/conversations/{id}`. functions-framework answers with whole bodies,
so `stream: true` gets the same Server-Sent Events sent at once when the loop
ends; use `victor serve chat` for live streaming.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from common.framework_target import entry_settings, json_answer, make_target
from common.function import API_KEY_REQUIRED, Answer, Runtime, api_key_accepted, error_answer
from functions.chat.app import SPEC
from functions.chat.handlers import ChatBody, ChatRejected, failure_status, loop_of, sse_frame, start_chat

CONVERSATIONS = "/v1/conversations/"


async def post_chat(request: Request, runtime: Runtime) -> Answer:
    try:
        body = msgspec.json.decode(await request.body(), type=ChatBody)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        return error_answer(400, "invalid_request", f"invalid request body: {exc}")
    try:
        run = await start_chat(runtime, body)
    except ChatRejected as exc:
        return error_answer(exc.status, "chat_rejected", exc.message)
    if body.stream:
        frames = b"".join([sse_frame(message) async for message in run.progress()])
        return Answer(200, {"content-type": "text/event-stream"}, frames)
    final = await run.outcome()
    if final.kind != "done":
        return json_answer(
            failure_status(final.data),
            {
                "status_code": failure_status(final.data),
                "error": "chat_failed",
                "detail": final.data.get("error"),
                "extra": final.data,
            },
        )
    return json_answer(200, final.data)


async def get_conversation(runtime: Runtime, conversation_id: str) -> Answer:
    view = await loop_of(runtime).conversations.view(conversation_id)
    if view is None:
        return error_answer(404, "not_found", f"conversation {conversation_id} does not exist")
    return json_answer(200, view)


settings = entry_settings()

_target = make_target(SPEC, settings, extra_routes={("POST", "/v1/chat"): post_chat})


async def handle(request: Request) -> Response:
    """The functions-framework target; adds the one route with a path parameter."""
    path = request.url.path
    if request.method == "GET" and path.startswith(CONVERSATIONS) and len(path) > len(CONVERSATIONS):
        runtime = await _target.dispatcher.ensure_runtime()  # type: ignore[attr-defined]
        if not api_key_accepted(runtime.settings, request.headers):
            answer = error_answer(401, "unauthorized", API_KEY_REQUIRED)
        else:
            answer = await get_conversation(runtime, path[len(CONVERSATIONS) :])
        return Response(answer.body, status_code=answer.status, headers=answer.headers)
    return await _target(request)
