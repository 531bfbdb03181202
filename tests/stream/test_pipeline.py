"""``hidemo run`` as real processes: real ZeroMQ sockets (ipc), onnxruntime and MediaPipe.

Each test starts the whole pipeline on the tiny engines (random weights; MediaPipe has real
ones) and checks what a user would: predictions on the PUB socket and in the JSONL log, a
stage killed and restarted, and a slow stage that must not make latency grow.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import zmq
from pipeline_runs import (
    by_stream,
    finish,
    read_jsonl,
    stage_process,
    start_run,
    wait_for,
    write_config,
)

from stream.media.demo import write_demo_video
from stream.text_client import publish

pytestmark = pytest.mark.slow


def _enough(log: Path) -> bool:
    logged = by_stream(read_jsonl(log)) if log.is_file() else {}
    return (all(len(logged.get(s, [])) >= 3 for s in ("talk", "demo1"))
            and any("text" in r["modalities"] for r in logged["demo1"]))


def test_two_sources_predict_on_pub_and_jsonl_and_exit_cleanly(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    # long enough that a loaded machine still sees several strides of it before its end
    video = write_demo_video(tmp_path / "talk.avi", seconds=20.0, fps=10, width=320,
                             height=240)
    # The ordered stop must bring each file's end of stream through every stage: give the
    # drain room on a loaded machine (it ends as soon as every stream has ended).
    config = write_config(tmp_path, [{"spec": str(video), "id": "talk"},
                                     {"spec": "demo", "width": 320, "height": 240}],
                          supervisor={"backoff_s": 0.2, "drain_s": 20.0})
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"ipc://{tmp_path}/predictions")
    text = context.socket(zmq.PUB)  # an ASR feed for the demo stream only
    text.connect(f"ipc://{tmp_path}/text")  # classify binds the text topic
    published: list[dict[str, Any]] = []
    next_line = 0.0
    try:
        process = start_run(tmp_path, tiny_engine_dir, config, 90.0)
        log = tmp_path / "out" / "predictions.jsonl"
        # until both streams predicted a few times, demo1 with its text: counts, not a
        # duration, so a busy machine only takes longer; then an ordered stop (SIGINT)
        while process.poll() is None and not _enough(log):
            if time.monotonic() > next_line:
                publish(text, "demo1", "I am really happy with how I played today")
                next_line = time.monotonic() + 0.5
            if sub.poll(100):
                topic, body = sub.recv_multipart()
                record = json.loads(body)
                assert topic.decode() == record["stream"]
                published.append(record)
        process.send_signal(signal.SIGINT)
        while process.poll() is None:  # the last predictions on the way out
            if sub.poll(100):
                published.append(json.loads(sub.recv_multipart()[1]))
        output = finish(process)
    finally:
        context.destroy(linger=0)
    assert process.returncode == 0, output
    out = tmp_path / "out"
    logged = by_stream(read_jsonl(out / "predictions.jsonl"))
    assert set(logged) == {"talk", "demo1"}, output
    for stream, records in logged.items():
        assert len(records) >= 3, (stream, output)
        assert [r["seq"] for r in records] == list(range(len(records)))
        assert all(r["schema"] == "hidemo.prediction/2" and r["random_weights"] for r in records)
        # keypoints: auto with the keypoint engines built is the engines (on tflite here)
        assert all(r["keypoints"] == "engines" for r in records)
        assert {"image", "keypoints"} <= set(records[-1]["modalities"])
        assert set(records[-1]["probs"]) == {"negative", "positive"}
        assert records[-1]["latency_ms"]["total"] > 0
    assert any("text" in r["modalities"] for r in logged["demo1"])  # the topic's lines
    assert not any("text" in r["modalities"] for r in logged["talk"])  # none: masked
    pub = by_stream(published)
    assert set(pub) == {"talk", "demo1"}
    for stream, records in pub.items():
        seqs = [r["seq"] for r in records]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous
        assert seqs[-1] == logged[stream][-1]["seq"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["streams"]["talk"]["ended"]  # the file's end of stream came through
    assert summary["streams"]["talk"]["lost"] == 0 and summary["streams"]["demo1"]["lost"] == 0
    assert not any(summary["restarts"].values())
    saved = json.loads((out / "config.json").read_text())
    assert saved["profile"] == "tiny" and saved["keypoints"] == "engines"  # auto, resolved
    assert ("hidemo run: keypoints engines (auto: keypoint engines built and verified; on the "
            "CPU they run on tflite)") in output


def test_an_end_of_stream_waits_for_a_detect_slower_than_the_capture_exit(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    """The capture's end of stream must reach classify even when detect takes longer per
    batch than the capture takes to exit: ZeroMQ must not discard it, queued, when the
    capture process goes (a detect on keypoint engines under load took > 0.5 s a batch)."""
    video = write_demo_video(tmp_path / "talk.avi", seconds=20.0, fps=10, width=320,
                             height=240)
    config = write_config(tmp_path, [{"spec": str(video), "id": "talk"}],
                          detect={"slow_ms": 1500}, keypoints="mediapipe",
                          supervisor={"backoff_s": 0.2, "drain_s": 30.0})
    log = tmp_path / "out" / "predictions.jsonl"
    process = start_run(tmp_path, tiny_engine_dir, config, 120.0)
    try:
        wait_for(lambda: len(read_jsonl(log)) >= 1, 100, "a first prediction", process)
        process.send_signal(signal.SIGINT)
        output = finish(process, timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["streams"]["talk"]["ended"], output


def test_keypoint_engines_run_in_detect_and_predictions_say_so(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    """``keypoints: engines``: detect runs Holistic on the keypoint engines and ships each
    person's keypoints with its crop; features uses them (no MediaPipe graph)."""
    config = write_config(tmp_path, [{"spec": "demo", "width": 320, "height": 240}],
                          keypoints="engines")
    log = tmp_path / "out" / "predictions.jsonl"
    process = start_run(tmp_path, tiny_engine_dir, config, 90.0)
    try:
        wait_for(lambda: sum("keypoints" in r["modalities"] for r in read_jsonl(log)) >= 3,
                 80, "predictions with keypoints", process)
        process.send_signal(signal.SIGINT)
        output = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    records = read_jsonl(log)
    assert records and all(r["keypoints"] == "engines" for r in records)
    assert all(r["detector"] == "holistic-engines" for r in records)
    assert all("detector" not in r["random_engines"] for r in records)  # MediaPipe's weights
    with_keypoints = [r for r in records if "keypoints" in r["modalities"]]
    assert len(with_keypoints) >= 3 and all(r["slots"]["keypoints"] > 0 for r in with_keypoints)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert not any(summary["restarts"].values())
    features = summary["stages"]["features[0]"]
    assert features["extra"]["keypoints"] == "engines"
    assert features["extra"]["keypoint_frames"] > 0
    assert not features["counters"]["rejected"]  # every shipped keypoint array admitted
    assert json.loads((tmp_path / "out" / "config.json").read_text())["keypoints"] == "engines"


def test_killed_features_stage_is_restarted_and_lost_frames_reported(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    # slow_ms keeps the stage busy, so the kill always catches frames inside it; MediaPipe
    # keypoints keep detect quick (with the keypoint engines, detect can be the slower stage
    # on a loaded machine: features then waits empty and the kill catches nothing)
    config = write_config(tmp_path, [{"spec": "demo", "width": 320, "height": 240}],
                          features={"slow_ms": 250}, keypoints="mediapipe")
    log = tmp_path / "out" / "predictions.jsonl"
    process = start_run(tmp_path, tiny_engine_dir, config, 16.0)
    try:
        wait_for(lambda: log.is_file() and len(read_jsonl(log)) >= 2, 60, "first predictions")
        victim = stage_process(process, "features")
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        output = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["restarts"]["features[0]"] == 1, output
    died = [e for e in summary["events"] if e["event"] == "died"]
    assert died and died[0]["stage"] == "features" and died[0]["exit_code"] == -signal.SIGKILL
    records = read_jsonl(log)
    assert [r["seq"] for r in records] == list(range(len(records)))
    after = [r for r in records if r["capture_time"] > killed_at]
    assert len(after) >= 2, output  # predictions resumed
    stream = summary["streams"]["demo0"]
    assert stream["lost"] >= 1  # frames inside the killed process, reported as lost
    assert after[-1]["frames"]["lost"] == stream["lost"]
    assert "lost" in output


def test_a_slow_stage_does_not_grow_frame_age(tiny_engine_dir: Path, tmp_path: Path) -> None:
    fps, slow_ms = 30.0, 300.0
    config = write_config(tmp_path, [{"spec": "demo", "fps": fps, "width": 320, "height": 240}],
                          analysis={"capture_fps": fps, "keypoint_rate": fps},
                          features={"slow_ms": slow_ms})
    process = start_run(tmp_path, tiny_engine_dir, config, 10.0)
    output = finish(process)
    assert process.returncode == 0, output
    frames = read_jsonl(tmp_path / "out" / "frames.jsonl")
    assert len(frames) >= 6, output
    # Structure, not speed: a busy machine slows every stage (ages 27 -> 51 frames seen at
    # load 1; 9 frames classified in 10 s, ages up to 52, with two busy loops on 2 cores),
    # so no bound in frames of age or trend holds everywhere. What does: when a frame
    # reaches classify, of the frames captured so far (its seq plus its age), how many are
    # still waiting behind it (its age)? An unbounded queue keeps nearly all of them (it
    # classifies frame k while ~30 x elapsed seconds wait: share >= 0.9 in the second half
    # of the run, more on a slower machine); latest-wins hops a few stage times' worth
    # (share 0.1-0.2 measured, loaded or not). The first frames wait for warm-up: skipped.
    late = frames[len(frames) // 2:]
    shares = [f["age_frames"] / (f["seq"] + f["age_frames"]) for f in late]
    assert max(shares) <= 0.5, [(f["seq"], f["age_frames"]) for f in frames]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    stream = summary["streams"]["demo0"]
    assert stream["dropped"] > stream["frames"]  # most frames dropped on purpose, counted
    assert stream["lost"] == 0


def test_feature_replicas_share_the_frames(tiny_engine_dir: Path, tmp_path: Path) -> None:
    # slow enough that one replica could not keep up, so detect's PUSH must use both
    config = write_config(tmp_path, [{"spec": "demo", "width": 320, "height": 240}],
                          features={"slow_ms": 150, "replicas": 2})
    process = start_run(tmp_path, tiny_engine_dir, config, 10.0)
    output = finish(process)
    assert process.returncode == 0, output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    replicas = {name: stage for name, stage in summary["stages"].items()
                if name.startswith("features[")}
    assert set(replicas) == {"features[0]", "features[1]"}, output
    assert replicas["features[0]"]["pid"] != replicas["features[1]"]["pid"]
    processed = [stage["counters"]["processed"] for stage in replicas.values()]
    assert min(processed) >= 3, processed  # both did real work
    records = read_jsonl(tmp_path / "out" / "predictions.jsonl")
    assert len(records) >= 3, output
    assert [r["seq"] for r in records] == list(range(len(records)))
    assert summary["streams"]["demo0"]["lost"] == 0
    assert not any(summary["restarts"].values())


def test_an_offline_file_is_processed_without_drops_at_the_slowest_stage_pace(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    # realtime off: as fast as the pipeline classifies. Features is slowed far below what
    # capture and detect manage; without the credit window most frames would be read,
    # detected and then dropped at features' latest-wins inbox.
    video = write_demo_video(tmp_path / "talk.avi", seconds=4.0, fps=10, width=320, height=240)
    config = write_config(tmp_path, [{"spec": str(video), "id": "talk", "realtime": False}],
                          analysis={"capture_fps": 10.0}, features={"slow_ms": 120})
    started = time.monotonic()
    process = start_run(tmp_path, tiny_engine_dir, config, 60.0)
    output = finish(process, timeout=90)
    assert process.returncode == 0, output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    stream = summary["streams"]["talk"]
    assert stream["ended"] and stream["lost"] == 0, stream
    assert stream["frames"] >= 38 and stream["dropped"] <= 2, stream  # 40 in the file
    capture = summary["stages"]["capture[0]"]["extra"]
    assert capture["next_seq"] == 40 and capture["credit_timeouts"] <= 1, capture
    assert time.monotonic() - started < 60  # it ended with the file, not the duration
