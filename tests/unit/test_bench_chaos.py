"""The chaos benchmark's scripted model: one answer per (turn, step), however often it is asked."""

from __future__ import annotations

from collections import Counter

from bench.chaos import duplicates, position, scripted_reply


def user(text: str) -> dict[str, object]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def test_position_is_the_turn_named_in_the_first_message_and_the_answers_so_far() -> None:
    assert position([user("chaos turn 17: work, then answer")]) == (17, 0)
    history = [
        user("chaos turn 17: work, then answer"),
        {"role": "assistant", "content": []},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "x", "content": "ok"}]},
        {"role": "assistant", "content": []},
        {"role": "user", "content": "results"},
    ]
    assert position(history) == (17, 2)
    assert position([user("something else")]) == (-1, 0)


def test_each_step_has_its_fixed_answer_two_appends_and_a_write_then_the_text() -> None:
    first = scripted_reply(3, 0).content
    assert [(b["name"], b["id"]) for b in first] == [
        ("run_command", "toolu_3_0_run"),
        ("write_file", "toolu_3_0_write"),
    ]
    assert first[0]["input"] == {"argv": ["python3", "-c", "open('runs.log', 'a').write('3:0\\n')"]}
    assert first[1]["input"] == {"path": "turn-3.txt", "content": "turn 3 was here\n"}
    assert scripted_reply(3, 0) == scripted_reply(3, 0)
    assert [b["input"]["argv"][2] for b in scripted_reply(3, 1).content] == [
        "open('runs.log', 'a').write('3:1\\n')"
    ]
    assert scripted_reply(3, 2).content == [{"type": "text", "text": "turn 3 done"}]
    assert scripted_reply(3, 2).stop == "end_turn"


def test_duplicates_count_every_repeat_beyond_the_first() -> None:
    assert duplicates(Counter({"1:0": 1, "1:1": 3, "2:0": 2})) == 3
    assert duplicates(Counter()) == 0
