"""Demand-driven flow for live sources: a live capture keeps reading, sends only while
classify's credits allow, holds just the newest frame otherwise, and drops before work.

Structural checks only (counts and bounds, never durations): the machine may be loaded.
Capture runs in a thread against real sockets bound by the test, which plays detect (a
PULL on ``detect_in``), the supervisor (a PULL on ``status``) and classify (the credits
PUB).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import zmq

from stream.config import load_config
from stream.stages import capture
from stream.stages.loop import StopFlag
from stream.stages.placement import (
    FUSED_IN_FLIGHT,
    SPLIT_LIVE_IN_FLIGHT,
    live_in_flight,
    resolve_placement,
)
from stream.transport.credits import CreditPublisher, LiveWindow
from stream.transport.endpoints import Endpoints
from stream.transport.status import Health, StageStatus, decode_status
from stream.transport.wire import Header, Kind, decode
from tests.stream.pipeline_runs import finish, read_jsonl, start_run, write_config

WAIT_S = 60.0
"""Only a bound against a hang: no assertion depends on how fast anything ran."""


def test_the_window_counts_frames_sent_not_sequence_numbers() -> None:
    window = LiveWindow(None, "cam0", in_flight=2, timeout_s=10.0)
    assert window.has_room(0, now=0.0)
    window.sent(0, 0, now=0.0)
    assert not window.has_room(0, now=0.1)  # slow start: one frame until an ack
    window.acked = 0
    assert window.has_room(0, now=0.2)
    window.sent(0, 1, now=0.2)
    window.sent(0, 6, now=0.3)  # numbers 2-5 were dropped at capture: they hold no credit
    assert not window.has_room(0, now=1.0)
    window.acked = 1
    assert window.has_room(0, now=1.0) and list(window.outstanding) == [6]


def test_an_ack_timeout_frees_one_slot_and_a_new_generation_starts_empty() -> None:
    window = LiveWindow(None, "cam0", in_flight=1, timeout_s=2.0)
    window.sent(3, 0, now=10.0)
    assert not window.has_room(3, now=11.9) and window.timeouts == 0
    assert window.has_room(3, now=12.0) and window.timeouts == 1  # presumed lost
    window.sent(3, 1, now=12.0)
    assert not window.has_room(3, now=13.0)  # the clock restarted at the timeout
    assert window.has_room(4, now=13.0)  # reconnected: nothing of it is in flight
    window.sent(4, 0, now=13.0)
    assert list(window.outstanding) == [0] and window.acked == -1


def test_live_in_flight_defaults_keep_every_inbox_within_its_depth() -> None:
    assert live_in_flight("fused", 1) == FUSED_IN_FLIGHT == 1
    assert live_in_flight("split", 1) == SPLIT_LIVE_IN_FLIGHT == 2
    assert live_in_flight("split", 4) == 1
    sources = [{"spec": "demo"}, {"spec": "demo", "in_flight": 3},
               {"spec": "demo", "realtime": False}]
    for asked, expected in (("split", [1, 3, 2]), ("fused", [1, 3, FUSED_IN_FLIGHT])):
        config = load_config(None, {"sources": sources, "placement": asked})
        resolved, _ = resolve_placement(config, cores=2)
        assert [s.in_flight for s in resolved.sources] == expected, asked
    alone = load_config(None, {"sources": [{"spec": "demo"}], "placement": "split"})
    assert resolve_placement(alone, cores=2)[0].sources[0].in_flight == SPLIT_LIVE_IN_FLIGHT


@dataclass
class Rig:
    """A capture thread and the test's ends of its sockets."""

    frames: zmq.Socket
    status: zmq.Socket
    credits: CreditPublisher
    stop: StopFlag
    thread: threading.Thread
    received: list[Header] = field(default_factory=list)
    reports: list[StageStatus] = field(default_factory=list)

    def pump(self) -> None:
        """Collect what has arrived so far, without waiting."""
        while self.frames.poll(0):
            self.received.append(decode(self.frames.recv_multipart()).header)
        while self.status.poll(0):
            self.reports.append(decode_status(self.status.recv()))

    def until(self, predicate: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while not predicate():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            self.frames.poll(20)
            self.pump()

    def frames_sent(self) -> list[Header]:
        return [h for h in self.received if h.kind is not Kind.EOS]

    def dropped(self) -> int:
        """Capture's reported drops (frames replaced while held), as of its last report."""
        return self.reports[-1].counters.dropped_in if self.reports else 0

    def ack(self, header: Header) -> None:
        self.credits.ack(header.stream, header.generation, header.seq)
        self.credits.flush()


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> Iterator[Rig]:
    """The demo source at 20 frames/s, ``in_flight`` 2; the ack timeout is the test's
    parameter (default: far longer than the test, so no frame goes out by timeout)."""
    timeout_s = getattr(request, "param", 3600.0)

    class Window(LiveWindow):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, "timeout_s": timeout_s})

    monkeypatch.setattr(capture, "LiveWindow", Window)
    config = load_config(None, {
        "sources": [{"spec": "demo", "fps": 20.0, "width": 64, "height": 48, "in_flight": 2}],
        "profile": "tiny", "analysis": {"capture_fps": 20.0},
        "supervisor": {"status_interval_s": 0.05}})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    endpoints = Endpoints.for_config(config.endpoints, run_dir)
    context = zmq.Context()
    frames = context.socket(zmq.PULL)
    frames.bind(endpoints.detect_in)
    status = context.socket(zmq.PULL)
    status.bind(endpoints.status)
    pub = context.socket(zmq.PUB)
    pub.bind(endpoints.credits)
    stop = StopFlag()
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(
        capture.run_capture(config, 0, endpoints, stop, context)))
    thread.start()
    try:
        yield Rig(frames, status, CreditPublisher(pub), stop, thread)
    finally:
        stop.set()
        thread.join(20)
        context.destroy(linger=0)
    assert codes == [0]


def _settled(rig: Rig, sent: int, drops_after: int) -> None:
    """Wait until capture reports ``drops_after`` drops, then check it sent no more than
    ``sent`` frames meanwhile: it reads on, and only holds."""
    rig.until(lambda: rig.dropped() >= drops_after, f"{drops_after} drops at capture")
    rig.pump()
    assert len(rig.frames_sent()) == sent, [h.seq for h in rig.frames_sent()]
    assert rig.reports[-1].extra["held"] is True


def test_without_acks_a_live_capture_sends_one_frame_then_only_holds(rig: Rig) -> None:
    # in_flight is 2, but no acknowledgement came yet: slow start keeps one in flight
    rig.until(lambda: len(rig.frames_sent()) >= 1, "the first frame")
    _settled(rig, sent=1, drops_after=5)
    assert [h.seq for h in rig.frames_sent()] == [0]
    last = rig.reports[-1]
    assert last.counters.processed == last.counters.sent + last.counters.dropped_in + 1
    assert last.extra["credit_timeouts"] == 0 and last.extra["in_flight"] == 2
    assert last.state != "stalled"  # reports (the supervisor's heartbeat) kept flowing
    decode = last.extra["decode"]  # held frames that a newer one replaced were never rendered
    assert decode["retrieved"] == 1 and decode["grabbed"] >= 1 + last.counters.dropped_in


def test_each_ack_releases_exactly_the_newest_held_frame(rig: Rig) -> None:
    rig.until(lambda: len(rig.frames_sent()) >= 1, "the first frame")
    _settled(rig, sent=1, drops_after=3)
    rig.ack(rig.frames_sent()[0])  # the first ack opens the window to in_flight (2)
    rig.until(lambda: len(rig.frames_sent()) >= 3, "two more frames")
    _settled(rig, sent=3, drops_after=rig.dropped() + 2)
    for step in range(1, 4):
        before = rig.frames_sent()
        count = len(before)
        rig.ack(before[step])  # frees one slot
        rig.until(lambda: len(rig.frames_sent()) > count, "the released frame")  # noqa: B023
        _settled(rig, sent=count + 1, drops_after=rig.dropped() + 2)
        released, previous = rig.frames_sent()[-1], before[-1]
        assert released.media_time > previous.media_time
        # every frame kept between the two was dropped here, and said so: the released
        # one was the newest read when it went
        assert released.seq - previous.seq - 1 == released.dropped > 0
        assert rig.reports[-1].extra["decode"]["retrieved"] == len(rig.frames_sent())
        stamp = released.stamps[-1]  # the hold is capture's queue wait
        assert stamp.stage == "capture" and stamp.t_arrive == released.capture_time
        assert released.capture_time < stamp.t_in <= stamp.t_out


@pytest.mark.parametrize("rig", [0.3], indirect=True)
def test_an_ack_timeout_frees_the_window_and_every_drop_is_carried(rig: Rig) -> None:
    rig.until(lambda: rig.reports and rig.reports[-1].extra.get("credit_timeouts", 0) >= 2,
              "two credit timeouts")
    rig.stop.set()
    rig.until(lambda: any(h.kind is Kind.EOS for h in rig.received), "the end of stream")
    rig.thread.join(20)
    # its last report (stopping) went as the thread ended: wait for it to be delivered
    rig.until(lambda: bool(rig.reports) and rig.reports[-1].state is Health.STOPPING,
              "capture's stopping report")
    last = rig.reports[-1]
    sent = rig.frames_sent()
    timeouts = last.extra["credit_timeouts"]
    assert len(sent) == 1 + timeouts  # nobody acknowledged: one more per timeout
    counters = last.counters
    assert counters.processed == len(sent) + counters.dropped_in
    carried = sum(h.dropped for h in rig.received)  # frames' and the end's Header.dropped
    assert carried == counters.dropped_in
    eos = rig.received[-1]
    assert eos.kind is Kind.EOS and eos.seq == counters.processed


def test_a_split_run_of_a_live_source_processes_nothing_it_then_drops(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    # features slowed well below the capture rate: pushed, detect would work on frames that
    # features' latest-wins inbox then drops; with credits the drops happen at capture
    config = write_config(tmp_path, [{"spec": "demo", "width": 320, "height": 240}],
                          analysis={"capture_fps": 10.0}, features={"slow_ms": 150})
    process = start_run(tmp_path, tiny_engine_dir, config, 10.0)
    output = finish(process, timeout=120)
    assert process.returncode == 0, output
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed_then_dropped"], output
    assert all(v == 0 for v in summary["processed_then_dropped"].values()), output
    stream: dict[str, Any] = summary["streams"]["demo0"]
    assert stream["lost"] == 0 and stream["dropped"] > 0, stream  # dropped at capture
    counters = summary["stages"]["capture[0]"]["counters"]
    assert counters["dropped_in"] >= stream["dropped"] > 0, counters
    records = read_jsonl(out / "predictions.jsonl")
    assert len(records) >= 3, output
    assert [r["seq"] for r in records] == list(range(len(records)))
    saved = json.loads((out / "config.json").read_text())
    assert saved["sources"][0]["in_flight"] == SPLIT_LIVE_IN_FLIGHT
