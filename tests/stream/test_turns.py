"""Fused placement's demand (:mod:`stream.stages.grants`): one stream at a time is asked for its
next frame, in turn, only while no frame waits; and, end to end, a fused run of several
live streams works on no frame it then drops, serves the streams evenly and renders no
frame it does not send.

Structural checks only (counts and bounds); time in the unit tests is the test's own
clock, and the pipeline run asserts nothing about durations.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.stages.grants import TurnGrants
from tests.stream.pipeline_runs import finish, read_jsonl, start_run, write_config


class Recorder:
    """A credit publisher that keeps what would have gone out."""

    def __init__(self) -> None:
        self.acks: list[tuple[str, int, int]] = []
        self._pending: list[tuple[str, int, int]] = []

    def ack(self, stream: str, generation: int, seq: int) -> None:
        self._pending.append((stream, generation, seq))

    def flush(self) -> None:
        self.acks.extend(self._pending)
        self._pending.clear()


def test_a_grant_acknowledges_the_last_frame_received_and_turns_go_round() -> None:
    recorder = Recorder()
    grants = TurnGrants(recorder, patience_s=0.1)  # type: ignore[arg-type]
    for stream in ("a", "b", "c"):
        grants.arrived(stream, generation=2, seq=0)
    order = []
    now = 0.0
    for seq in range(1, 4):
        for _ in range(3):
            asked = grants.grant(waiting=0, now=now)
            assert asked is not None
            order.append(asked)
            grants.arrived(asked, generation=2, seq=seq)  # it answered at once
            now += 0.01
    assert order == ["a", "b", "c"] * 3
    assert recorder.acks[:3] == [("a", 2, 0), ("b", 2, 0), ("c", 2, 0)]
    assert recorder.acks[3:6] == [("a", 2, 1), ("b", 2, 1), ("c", 2, 1)]
    assert grants.report() == {"grants": 9, "regrants": 0, "unasked": 3}


def test_no_grant_while_a_frame_waits_or_an_answer_is_due() -> None:
    grants = TurnGrants(None, patience_s=0.1, regrant_s=1.0)
    grants.arrived("a", 0, 0)
    grants.arrived("b", 0, 0)
    assert grants.grant(waiting=1, now=0.0) is None  # the waiting frame goes first
    assert grants.grant(waiting=0, now=0.0) == "a"
    assert grants.grant(waiting=0, now=0.09) is None  # a's frame may be on its way
    assert grants.grant(waiting=0, now=0.1) == "b"  # a is slow: b is not held up by it
    assert grants.grant(waiting=0, now=0.5) is None  # both asked, neither stale
    assert grants.grant(waiting=0, now=1.0) == "a"  # a's grant may have been lost
    assert grants.report()["regrants"] == 1


def test_an_ended_stream_leaves_the_rotation_until_it_sends_again() -> None:
    grants = TurnGrants(None, patience_s=0.0)
    for stream in ("a", "b", "c"):
        grants.arrived(stream, 0, 0)
    assert grants.grant(0, 0.0) == "a"
    grants.arrived("a", 0, 1)
    grants.ended("b")
    assert grants.grant(0, 1.0) == "c"
    grants.arrived("c", 0, 1)
    assert grants.grant(0, 2.0) == "a"
    grants.arrived("a", 0, 2)
    grants.arrived("b", 1, 0)  # b reconnected: a new generation, back in turn
    asked = []
    for step in range(3):
        stream = grants.grant(0, 3.0 + step)
        assert stream is not None
        asked.append(stream)
        grants.arrived(stream, 1 if stream == "b" else 0, 9)
    assert sorted(asked) == ["a", "b", "c"]


EVENTS = st.lists(st.one_of(
    st.tuples(st.just("arrive"), st.sampled_from("abcd"), st.integers(0, 2)),
    st.tuples(st.just("end"), st.sampled_from("abcd"), st.just(0)),
    st.tuples(st.just("grant"), st.integers(0, 2), st.integers(1, 400)),
), max_size=80)


@settings(max_examples=300, deadline=None)
@given(EVENTS)
def test_grants_never_pile_up_and_never_starve(events: list[tuple[str, Any, int]]) -> None:
    """Any interleaving of arrivals, ends and grant calls (waiting frames, time steps in ms):
    no grant while frames wait; never a second unanswered grant inside the patience; a
    stream is asked again only after its answer or ``regrant_s``; and whenever nothing
    waits and some stream in the rotation may be asked, one is."""
    patience, regrant = 0.1, 1.0
    grants = TurnGrants(None, patience_s=patience, regrant_s=regrant)
    now = 0.0
    outstanding: dict[str, float] = {}  # stream -> when asked, until it answers
    rotation: list[str] = []
    for kind, who, value in events:
        if kind == "arrive":
            grants.arrived(who, generation=value, seq=0)
            outstanding.pop(who, None)
            if who not in rotation:
                rotation.append(who)
            continue
        if kind == "end":
            grants.ended(who)
            outstanding.pop(who, None)
            if who in rotation:
                rotation.remove(who)
            continue
        waiting, now = who, now + value / 1000.0
        asked = grants.grant(waiting=waiting, now=now)
        answer_due = any(now - at < patience for at in outstanding.values())
        askable = [s for s in rotation if s not in outstanding or now - outstanding[s] >= regrant]
        if waiting or answer_due:
            assert asked is None
        elif askable:
            assert asked in askable
        else:
            assert asked is None
        if asked is not None:
            outstanding[asked] = now


def test_a_fused_run_of_live_streams_asks_each_in_turn_and_drops_only_at_capture(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    """Three demo streams on one fused worker. Frames are sent on the head's grants, one
    stream at a time: no frame is dropped after capture (the fused inbox pushes none out,
    nothing is processed then dropped), every drop is made at capture before the frame was
    rendered, and the streams are served evenly."""
    sources = [{"spec": "demo", "id": f"cam{i}", "width": 160, "height": 120}
               for i in range(3)]
    config = write_config(tmp_path, sources, placement="fused", fused={"workers": 1},
                          analysis={"capture_fps": 10.0})
    process = start_run(tmp_path, tiny_engine_dir, config, 12.0)
    output = finish(process, timeout=180)
    assert process.returncode == 0, output
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert all(v == 0 for v in summary["processed_then_dropped"].values()), summary
    stages = summary["stages"]
    assert stages["detect[0]"]["counters"]["dropped_in"] == 0, stages["detect[0]"]
    turns = stages["detect[0]"]["extra"]["turns"]
    assert turns["grants"] > 0 and turns["unasked"] >= 3, turns  # 3 first frames at least
    frames = []
    for i in range(3):
        capture = stages[f"capture[{i}]"]
        counters, extra = capture["counters"], capture["extra"]
        assert counters["dropped_in"] > 0, capture  # drops happen here, before any work
        decode = extra["decode"]
        # rendered only what went out (sent, or refused by a full socket): a held frame
        # replaced by a newer one never was
        assert decode["retrieved"] <= counters["sent"] + counters["dropped_out"], capture
        stream = summary["streams"][f"cam{i}"]
        assert stream["lost"] == 0, stream
        frames.append(stream["frames"])
    assert min(frames) >= 3, frames
    assert max(frames) - min(frames) <= max(2, max(frames) // 4), frames  # served in turn
    records = read_jsonl(out / "predictions.jsonl")
    assert {r["stream"] for r in records} == {"cam0", "cam1", "cam2"}, output
