"""Recovery that recovers: kills at any time, in any order; floods the supervisor must not obey.

Real ``hidemo run`` processes (tiny engines, the demo source read as fast as the pipeline
takes it, every stage its own process). The properties, checked in frames and counts:
- after a stage is killed, predictions resume within a bounded number of frames, the same
  bound after a short and after a long uptime (a restarted capture starts a new generation,
  so nothing waits for media time to catch up with the old session);
- prediction ``seq`` stays contiguous across every restart;
- a flood on the status socket neither stretches the run past ``--duration`` nor hides a
  stopped stage from the watchdog; it is counted and reported;
- thousands of distinct subscriptions on the publishers cost no memory.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from pipeline_runs import (
    finish,
    read_jsonl,
    run_folder,
    stage_process,
    start_run,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.slow

STREAM = "demo0"
CAPTURE_FPS = 10.0
STRIDE_S = 1.0
RESUME_FRAMES = math.ceil(3 * STRIDE_S * CAPTURE_FPS) + 10
"""Frames classify may account after a kill before the next prediction: a stride to pass
on the new session's clock (and the first one to arm), a window's first person, the frames
in flight; nothing that grows with how long the run had lived."""


def demo_config(tmp_path: Path, **sections: Any) -> Path:
    """The demo at 320x240, read as fast as the pipeline classifies (a long run in frames
    in a short time), analysed at :data:`CAPTURE_FPS`, a prediction every
    :data:`STRIDE_S`."""
    return write_config(
        tmp_path, [{"spec": "demo", "width": 320, "height": 240, "realtime": False}],
        analysis={"capture_fps": CAPTURE_FPS, "image_rate": 2.0, "keypoint_rate": CAPTURE_FPS},
        classify={"stride_s": STRIDE_S}, **sections)


def outputs(tmp_path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    out = tmp_path / "out"
    return read_jsonl(out / "predictions.jsonl"), read_jsonl(out / "frames.jsonl")


def kill_and_measure(run: Any, tmp_path: Path, stage: str) -> int:
    """SIGKILL ``stage``; wait for the first prediction of a frame captured after the kill;
    return how many frames classify accounted from the kill up to that frame."""
    victim = stage_process(run, stage)
    killed_at = time.monotonic()  # CLOCK_MONOTONIC: the clock of every stage's capture_time
    os.kill(victim.pid, signal.SIGKILL)

    def resumed() -> dict[str, Any] | None:
        return next((p for p in outputs(tmp_path)[0] if p["capture_time"] > killed_at), None)

    wait_for(lambda: resumed() is not None, 120, f"a prediction after killing {stage}", run)
    first = resumed()
    assert first is not None
    frames = [f for f in outputs(tmp_path)[1]
              if killed_at < f["capture_time"] <= first["capture_time"]]
    return len(frames)


def stop_run(run: Any) -> str:
    run.send_signal(signal.SIGINT)
    return finish(run, timeout=90)


def contiguous(predictions: list[dict[str, Any]]) -> bool:
    seqs = [p["seq"] for p in predictions]
    return seqs == list(range(len(seqs)))


def test_a_restarted_capture_resumes_within_frames_not_uptime(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    """Kill the capture after a short uptime and again after a long one (in frames): both
    resume within the same bound, each on a new generation."""
    run = start_run(tmp_path, tiny_engine_dir, demo_config(tmp_path), 600.0)
    resumes = []
    try:
        wait_for(lambda: len(outputs(tmp_path)[0]) >= 2, 120, "first predictions", run)
        resumes.append(kill_and_measure(run, tmp_path, "capture"))
        # live long: many more frames (and seconds of media time) than before the first kill
        frames_before = len(outputs(tmp_path)[1])
        wait_for(lambda: len(outputs(tmp_path)[1]) >= 4 * frames_before + 150, 240,
                 "a long uptime", run)
        resumes.append(kill_and_measure(run, tmp_path, "capture"))
        output = stop_run(run)
    finally:
        if run.poll() is None:
            run.kill()
    predictions, frames = outputs(tmp_path)
    assert all(r <= RESUME_FRAMES for r in resumes), (resumes, output[-3000:])
    generations = sorted({f["generation"] for f in frames})
    assert len(generations) == 3, generations  # one per capture process
    media_after_long_run = max(f["seq"] for f in frames if f["generation"] == generations[1])
    assert media_after_long_run > 3 * RESUME_FRAMES  # the second kill came after a long run
    assert contiguous(predictions)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["restarts"]["capture[0]"] == 2


@settings(max_examples=2, deadline=None, phases=[Phase.generate], derandomize=True)
@given(order=st.permutations(["capture", "detect", "features", "classify"]))
def test_kills_of_every_stage_in_any_order_resume_within_bounded_frames(
        tiny_engine_dir: Path, tmp_path_factory: pytest.TempPathFactory,
        order: list[str]) -> None:
    tmp_path = tmp_path_factory.mktemp("kills")
    run = start_run(tmp_path, tiny_engine_dir, demo_config(tmp_path), 600.0)
    resumes = {}
    try:
        wait_for(lambda: len(outputs(tmp_path)[0]) >= 2, 120, "first predictions", run)
        for stage in order:
            resumes[stage] = kill_and_measure(run, tmp_path, stage)
        output = stop_run(run)
    finally:
        if run.poll() is None:
            run.kill()
    assert all(r <= RESUME_FRAMES for r in resumes.values()), (order, resumes, output[-3000:])
    predictions, _ = outputs(tmp_path)
    assert contiguous(predictions), order
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    for stage in order:
        assert summary["restarts"][f"{stage}[0]"] == 1, (stage, summary["restarts"])


def _flood_status(endpoint: str, stop_at: float) -> None:
    """Another local process writing ``{}`` to the status socket as fast as it can."""
    context = zmq.Context()
    socket = context.socket(zmq.PUSH)
    socket.setsockopt(zmq.SNDHWM, 100_000)
    socket.connect(endpoint)
    while time.monotonic() < stop_at:
        for _ in range(1000):
            try:
                socket.send(b"{}", flags=zmq.NOBLOCK)
            except zmq.Again:
                break
    context.destroy(linger=0)


def test_a_status_flood_neither_stretches_the_run_nor_hides_a_hang(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    duration, hang_after = 25.0, 4.0
    config = demo_config(tmp_path, supervisor={"backoff_s": 0.2, "drain_s": 2.0,
                                               "hang_after_s": hang_after})
    run = start_run(tmp_path, tiny_engine_dir, config, duration)
    flood = None
    try:
        wait_for(lambda: len(outputs(tmp_path)[0]) >= 1, 120, "first predictions", run)
        endpoint = f"ipc://{run_folder(run)}/status"
        flood = multiprocessing.get_context("spawn").Process(
            target=_flood_status, args=(endpoint, time.monotonic() + 3 * duration))
        flood.start()
        time.sleep(1.0)  # the flood is on
        victim = stage_process(run, "detect")
        victim.suspend()  # SIGSTOP: alive, silent
        output = finish(run, timeout=3 * duration)
    finally:
        if flood is not None:
            flood.kill()
            flood.join()
        if run.poll() is None:
            run.kill()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    # the clock was read every turn: the run ended on time, not when the flood did
    assert summary["running_s"] <= duration + 10, (summary["running_s"], output[-2000:])
    hung = [e for e in summary["events"] if e["event"] == "hung"]
    assert [e["stage"] for e in hung] == ["detect"], summary["events"]
    assert hung[0]["silent_s"] <= hang_after + 5, hung
    refused = summary["rejected"]["status"]
    assert refused.get("schema", 0) >= 1000, refused  # counted, not obeyed
    assert any("refused" in w and "status report" in w for w in summary["warnings"]), \
        summary["warnings"]


def _subscribe_many(endpoint: str, count: int, length: int) -> None:
    """Another process: ``count`` distinct subscriptions of ``length`` bytes, then gone."""
    context = zmq.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.SNDHWM, 100_000)
    socket.connect(endpoint)
    for i in range(count):
        socket.setsockopt(zmq.SUBSCRIBE, i.to_bytes(4, "big") + b"x" * (length - 4))
    time.sleep(3.0)  # let them arrive while connected
    context.destroy(linger=0)


def test_thousands_of_subscriptions_cost_no_memory(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    run = start_run(tmp_path, tiny_engine_dir, demo_config(tmp_path), 600.0)
    try:
        wait_for(lambda: len(outputs(tmp_path)[0]) >= 1, 120, "first predictions", run)
        folder = run_folder(run)
        processes = [psutil.Process(run.pid), *psutil.Process(run.pid).children(recursive=True)]
        before = {p.pid: p.memory_info().rss for p in processes}
        for endpoint in (f"ipc://{tmp_path}/predictions", f"ipc://{folder}/credits"):
            _subscribe_many(endpoint, 2000, 8)  # short enough to be read: refused, counted
            _subscribe_many(endpoint, 2000, 400)  # too long to match: the peer is dropped
        time.sleep(2.0)  # the publishers read them on their next turns
        after = {p.pid: p.memory_info().rss for p in processes if p.is_running()}
        count = len(outputs(tmp_path)[0])
        wait_for(lambda: len(outputs(tmp_path)[0]) > count, 60, "predictions go on", run)
        output = stop_run(run)
    finally:
        if run.poll() is None:
            run.kill()
    growth_mb = {pid: (after[pid] - before[pid]) / 2**20 for pid in after}
    assert max(growth_mb.values()) < 20, (growth_mb, output[-2000:])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    rejected = summary["stages"]["classify[0]"]["counters"]["rejected"]
    refused = sum(rejected.get(name, {}).get("subscription", 0)
                  for name in ("predictions", "credits"))
    assert refused >= 2 * 2000, rejected
