"""`victor serve dead-letters`: the cluster's dead-letter sink logs each dead letter and counts it by type.

On a cluster the local broker's delivery metrics do not exist; the VictorDeadLetters alert
reads `victor_dead_letters_total` from this sink's /metrics instead.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from eventing.dead_letters import KNOWN_TYPES
from tests.support.foundation import clean_env, serving, unique, victor_serve


def dead_letter(event_type: str, event_id: str) -> dict[str, str]:
    """Binary-mode headers of an event as Knative hands it to a dead-letter sink."""
    return {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/tests/dead-letters",
        "ce-type": event_type,
        "ce-knativeerrordest": "http://victor-chat.victor.svc.cluster.local",
        "ce-knativeerrorcode": "503",
        "content-type": "application/json",
    }


def dead_letter_counts(exposition: str) -> dict[str, float]:
    return {
        sample.labels["type"]: sample.value
        for family in text_string_to_metric_families(exposition)
        if family.name == "victor_dead_letters"
        for sample in family.samples
        if sample.name == "victor_dead_letters_total"
    }


async def test_each_dead_letter_is_logged_as_json_and_counted_by_type(tmp_path: Path) -> None:
    log = tmp_path / "dead-letters.log"
    async with (
        serving(victor_serve("dead-letters"), clean_env(), log) as served,
        httpx.AsyncClient(base_url=served.url) as http,
    ):
        assert (await http.get("/health/ready")).status_code == 200
        # Every known type starts at 0, so the first dead letter is an increase the alert sees.
        assert dead_letter_counts((await http.get("/metrics")).text) == dict.fromkeys(
            KNOWN_TYPES | {"other"}, 0.0
        )
        first, second, third = unique("dl"), unique("dl"), unique("dl")
        for event_type, event_id in [
            ("ai.victor.chat.requested", first),
            ("ai.victor.chat.requested", second),
            ("com.example.anything", third),  # not Victor's: counted as "other"
        ]:
            answer = await http.post("/", headers=dead_letter(event_type, event_id), content=b"{}")
            assert answer.status_code == 202
        assert (await http.post("/", content=b"not an event")).status_code == 400
        counts = dead_letter_counts((await http.get("/metrics")).text)
    assert {kind: count for kind, count in counts.items() if count} == {
        "ai.victor.chat.requested": 2.0,
        "other": 1.0,
    }
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    reported = [line for line in lines if line["logger"] == "victor.dead_letters"]
    assert [line.get("event_id") for line in reported] == [first, second, third, None]
    assert reported[0]["message"] == (
        f"dead letter ai.victor.chat.requested id={first} source=/tests/dead-letters: "
        "http://victor-chat.victor.svc.cluster.local answered 503"
    )
