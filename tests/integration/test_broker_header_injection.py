"""Control characters in event attributes never reach a subscriber as headers or as a second request.

The subscriber here is a raw TCP recorder (tests.support.recorder.RawRecorder): it
keeps every byte the broker wrote and splits them into requests as any HTTP/1.1
server would, so a smuggled request or an injected header would show.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from common.cloudevents import CloudEvent, to_binary
from eventing.broker.delivery import NETWORK_ERROR_STATUS, SubscriberClient, attempt
from tests.support.broker import event, routed
from tests.support.cloudevents_cases import SMUGGLING_CONTENT_TYPE, bad_attribute_events
from tests.support.recorder import RawRecorder


def assert_nothing_smuggled(recorder: RawRecorder) -> None:
    assert b"x-injected" not in recorder.raw
    assert b"/smuggled" not in recorder.raw
    for request in recorder.requests:
        names = {name for name, _ in request.headers}
        assert not names & {"x-injected", "x-smuggled"}, request.headers


async def test_the_smuggling_event_is_refused_at_ingress_and_the_subscriber_sees_one_clean_request(
    make_settings, tmp_path
) -> None:
    async with (
        RawRecorder() as subscriber,
        routed(make_settings(), tmp_path, {"all": subscriber.url + "/events"}) as (ingress, _),
        httpx.AsyncClient() as client,
    ):
        for bad in bad_attribute_events("ai.victor.test.happened"):
            response = await client.post(ingress, headers=bad.headers, content=bad.body)
            assert response.status_code == 400, (bad.name, response.text)
            answer = response.json()
            assert answer["error"] == "invalid_event"
            assert bad.detail in answer["detail"]
        # A valid event after them: the broker is still working, and only this one is delivered.
        sent = event(data={"after": "the attacks"})
        headers, body = to_binary(sent)
        response = await client.post(ingress, headers=headers, content=body)
        assert response.status_code == 202
        for _ in range(200):
            if subscriber.requests:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # anything smuggled behind it would arrive in this time
    [request] = subscriber.requests
    assert (request.method, request.target) == ("POST", "/events")
    assert dict(request.headers)["ce-id"] == sent.id
    assert request.body == body
    assert_nothing_smuggled(subscriber)


@pytest.mark.parametrize(
    "bad",
    [
        {"datacontenttype": SMUGGLING_CONTENT_TYPE},
        {"extensions": {"bad\r\nx-injected": "yes"}},
        {"datacontenttype": "application/json; charset=\u0100"},
    ],
    ids=["content type smuggling", "extension name", "beyond latin-1"],
)
async def test_the_broker_client_refuses_to_write_a_header_that_is_not_a_valid_field(
    bad: dict[str, object],
) -> None:
    """Defence in depth: an event built in code (never parsed) cannot make the client write it either.

    (Other attribute values travel percent-encoded in ce- headers; the Content-Type and the
    header names are the parts written as they are.)
    """
    built = CloudEvent(id="e-1", source="/test", type="ai.victor.test.happened", data=b"{}", **bad)  # type: ignore[arg-type]
    client = SubscriberClient()
    async with RawRecorder() as subscriber:
        outcome = await attempt(client, subscriber.url, built, 5.0, 1 << 20)
        clean = CloudEvent(id="e-2", source="/test", type="ai.victor.test.happened", data=b"{}")
        assert (await attempt(client, subscriber.url, clean, 5.0, 1 << 20)).status == 202
        await client.aclose()
    assert outcome.status == NETWORK_ERROR_STATUS
    assert b"is not a valid HTTP field" in outcome.body
    [request] = subscriber.requests
    assert dict(request.headers)["ce-id"] == "e-2"
    assert_nothing_smuggled(subscriber)
