"""Fail fast and loud: what cannot work stops ``hidemo run`` at once, with the fix.

A refused engine, a source that cannot give a frame and an endpoint in use end the run
before any stage starts (exit 2, the message on stderr); a stage that refuses its engines
anyway exits with EX_CONFIG and is not restarted; a run in which no source gave a frame or
a sink failed exits non-zero and says why in ``summary.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import zmq

from stream.config import EndpointConfig, load_config
from stream.exitcodes import EX_CONFIG, FATAL_MARKER
from stream.media.demo import write_demo_video
from stream.media.sources import probe_source
from stream.run.preflight import (
    PreflightError,
    check_endpoints,
    check_engines,
    endpoint_in_use,
    preflight,
)
from stream.run.summary import verdict_of
from stream.run.supervisor import StopRequest, Supervisor, fatal_message
from stream.run.view import make_view
from stream.stages.spec import StageSpec
from stream.transport.endpoints import Endpoints
from stream.transport.status import Counters, Health, StageStatus


def corrupted_copy(engine_dir: Path, tmp_path: Path) -> Path:
    """A copy of the engines whose image embedder has 16 bytes overwritten: what a bad
    disk, a half copy or a tampered file looks like to the runtime."""
    copy = Path(shutil.copytree(engine_dir, tmp_path / "engines"))
    onnx = next(copy.glob("image_embedder-*.onnx"))
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2:len(data) // 2 + 16] = b"\xa5" * 16
    onnx.write_bytes(bytes(data))
    return copy


def hidemo_run(engine_dir: Path, tmp_path: Path, *args: str,
               timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "hidemo", "run", "--profile", "tiny", "--engine-dir",
         str(engine_dir), "--duration", "5", "--view", "log", "--out", str(tmp_path / "out"),
         "--set", f"endpoints.predictions=ipc://{tmp_path}/predictions",
         "--set", f"endpoints.text=ipc://{tmp_path}/text", *args],
        capture_output=True, text=True, timeout=timeout)
    return result, time.monotonic() - started


def assert_refused_before_any_stage(result: subprocess.CompletedProcess[str],
                                    tmp_path: Path) -> None:
    assert result.returncode == 2, result.stderr
    assert "hidemo: error: hidemo run cannot start" in result.stderr, result.stderr
    assert "started pid=" not in result.stderr + result.stdout
    assert not (tmp_path / "out" / "logs").exists()  # no stage process ever started


def test_preflight_refuses_a_corrupted_engine_with_its_fix(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    engines = corrupted_copy(tiny_engine_dir, tmp_path)
    config = load_config(None, {"sources": [{"spec": "demo"}], "profile": "tiny",
                                "engine_dir": engines})
    problems = check_engines(config)
    assert [p.subject for p in problems] == ["engine image_embedder"], problems
    assert "sha256 differs" in problems[0].message
    assert f"fix: hidemo engines build --profile tiny --engine-dir {engines}" in \
        problems[0].message
    assert check_engines(config.model_copy(update={"engine_dir": tiny_engine_dir})) == []


def without_keypoint_engines(engine_dir: Path, tmp_path: Path) -> Path:
    """A copy of the engines folder built before keypoint engines existed."""
    return Path(shutil.copytree(engine_dir, tmp_path / "engines",
                                ignore=shutil.ignore_patterns("kp_*")))


def test_keypoints_engines_without_them_is_one_problem_naming_the_build(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    from stream.stages.perception import resolve_keypoints

    engines = without_keypoint_engines(tiny_engine_dir, tmp_path)
    config = load_config(None, {"sources": [{"spec": "demo"}], "profile": "tiny",
                                "engine_dir": engines, "keypoints": "engines"})
    problems = check_engines(config)
    assert [p.subject for p in problems] == ["keypoints: engines"], problems
    assert "kp_pose_detection" in problems[0].message
    assert f"hidemo engines build --profile tiny --engine-dir {engines}" in problems[0].message
    # auto falls back to MediaPipe, saying why; mediapipe needs no keypoint engine
    resolved, why = resolve_keypoints(config.model_copy(update={"keypoints": "auto"}))
    assert resolved.keypoints == "mediapipe" and "not built" in why.reason
    assert check_engines(resolved) == []
    # with the engines there: the engines (on this CPU on tflite, measured faster)
    on_cpu, why = resolve_keypoints(config.model_copy(update={"engine_dir": tiny_engine_dir,
                                                              "keypoints": "auto"}))
    assert on_cpu.keypoints == "engines" and "run on tflite" in why.reason
    assert check_engines(config.model_copy(update={"engine_dir": tiny_engine_dir})) == []


@pytest.mark.slow
def test_keypoints_engines_without_them_stops_the_run_before_any_stage(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    engines = without_keypoint_engines(tiny_engine_dir, tmp_path)
    result, _ = hidemo_run(engines, tmp_path, "--source", "demo", "--keypoints", "engines")
    assert_refused_before_any_stage(result, tmp_path)
    assert "keypoints: engines" in result.stderr
    assert f"hidemo engines build --profile tiny --engine-dir {engines}" in result.stderr


@pytest.mark.slow
def test_a_corrupted_engine_stops_the_run_in_seconds_with_the_fix(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    engines = corrupted_copy(tiny_engine_dir, tmp_path)
    result, took = hidemo_run(engines, tmp_path, "--source", "demo")
    assert_refused_before_any_stage(result, tmp_path)
    assert "engine image_embedder" in result.stderr and "sha256 differs" in result.stderr
    assert f"fix: hidemo engines build --profile tiny --engine-dir {engines}" in result.stderr
    assert took < 20, took  # seconds, not five crash-looping restarts


def bad_sources(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """Each bad source: its spec and what the message must say about it."""
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(os.urandom(64 * 1024))
    video = write_demo_video(tmp_path / "full.avi", seconds=2.0, fps=10, width=160,
                             height=120).read_bytes()
    header_only = tmp_path / "header.avi"  # cut right after the header: it opens, no frame
    header_only.write_bytes(video[:video.index(b"movi") + 4])
    return {
        "missing": (str(tmp_path / "nowhere.mp4"), "no such file"),
        "corrupt": (str(corrupt), "OpenCV cannot open it as a video"),
        "truncated": (str(header_only), "gives no frame"),
        "camera": ("7", "no camera at index 7: check the device / permissions, or use "
                        "--source demo"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "corrupt", "truncated", "camera"])
def test_a_source_that_cannot_give_frames_stops_the_run_naming_it(
        tiny_engine_dir: Path, tmp_path: Path, case: str) -> None:
    spec, expected = bad_sources(tmp_path)[case]
    result, took = hidemo_run(tiny_engine_dir, tmp_path, "--source", "demo", "--source", spec)
    assert result.returncode == 2, result.stderr
    error = result.stderr[result.stderr.index("hidemo: error:"):]
    assert spec in error and expected in error, error
    assert not (tmp_path / "out" / "logs").exists()
    assert took < 20, took


@pytest.mark.slow
def test_a_tcp_endpoint_in_use_stops_the_run_naming_it(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    context = zmq.Context()
    holder = context.socket(zmq.PUB)
    try:
        port = holder.bind_to_random_port("tcp://127.0.0.1")
        endpoint = f"tcp://127.0.0.1:{port}"
        result, _ = hidemo_run(tiny_engine_dir, tmp_path, "--source", "demo",
                               "--set", f"endpoints.predictions={endpoint}")
    finally:
        context.destroy(linger=0)
    assert_refused_before_any_stage(result, tmp_path)
    assert f"endpoint {endpoint} (predictions): is in use (another hidemo run?)" in \
        result.stderr, result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("name", ["predictions", "text"])
def test_an_ipc_endpoint_another_process_holds_is_not_stolen(
        tiny_engine_dir: Path, tmp_path: Path, name: str) -> None:
    endpoint = f"ipc://{tmp_path}/held"
    context = zmq.Context()
    holder = context.socket(zmq.PULL)  # e.g. another run's classify
    try:
        holder.bind(endpoint)
        result, _ = hidemo_run(tiny_engine_dir, tmp_path, "--source", "demo",
                               "--set", f"endpoints.{name}={endpoint}")
        assert Path(endpoint[len("ipc://"):]).exists()  # still the holder's
    finally:
        context.destroy(linger=0)
    assert_refused_before_any_stage(result, tmp_path)
    assert f"endpoint {endpoint} ({name}): is in use" in result.stderr, result.stderr


def test_endpoint_checks_tell_in_use_from_free_and_stale(tmp_path: Path) -> None:
    stale = tmp_path / "stale"  # a socket file whose listener is gone (a run that crashed)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(stale))
    listener.close()
    assert endpoint_in_use(f"ipc://{stale}") is None
    assert endpoint_in_use(f"ipc://{tmp_path}/free") is None
    (tmp_path / "plain").write_text("not a socket")
    assert "not a socket" in (endpoint_in_use(f"ipc://{tmp_path}/plain") or "")
    assert "longer than" in (endpoint_in_use(f"ipc://{tmp_path}/{'x' * 120}") or "")
    context = zmq.Context()
    holder = context.socket(zmq.PUB)
    try:
        port = holder.bind_to_random_port("tcp://127.0.0.1")
        assert "in use" in (endpoint_in_use(f"tcp://127.0.0.1:{port}") or "")
        holder.close(linger=0)
        time.sleep(0.1)
        assert endpoint_in_use(f"tcp://127.0.0.1:{port}") is None
    finally:
        context.destroy(linger=0)


def test_an_endpoint_a_further_fused_worker_would_bind_is_checked_too(tmp_path: Path) -> None:
    config = EndpointConfig()
    endpoints = Endpoints.for_config(config, tmp_path)
    held = endpoints.for_worker(2, config).credits  # worker 2's own credits endpoint
    context = zmq.Context()
    holder = context.socket(zmq.PUB)
    try:
        holder.bind(held)
        assert not check_endpoints(endpoints, config, detects=2)  # workers 0 and 1
        problems = check_endpoints(endpoints, config, detects=3)
        assert [p.subject for p in problems] == [f"endpoint {held} (credits of fused worker 2)"]
        assert "in use" in problems[0].message
    finally:
        context.destroy(linger=0)


def test_preflight_gathers_every_problem_in_one_error(tmp_path: Path) -> None:
    config = load_config(None, {"sources": [{"spec": str(tmp_path / "a.mp4")}, {"spec": "7"}],
                                "profile": "tiny", "engine_dir": tmp_path / "no-engines"})
    with pytest.raises(PreflightError) as raised:
        preflight(config, Endpoints.for_config(config.endpoints, tmp_path))
    subjects = [p.subject for p in raised.value.problems]
    assert "engine classifier" in subjects and "source camera1 (7)" in subjects, subjects
    assert isinstance(raised.value, ValueError)  # `hidemo` prints it and exits 2


def stage_spec(config_overrides: dict, tmp_path: Path) -> Path:
    config = load_config(None, {"sources": [{"spec": "demo"}], "profile": "tiny",
                                **config_overrides})
    endpoints = Endpoints.for_config(config.endpoints, tmp_path)
    spec = tmp_path / "spec.json"
    spec.write_text(StageSpec(config=config, endpoints=endpoints).text())
    return spec


@pytest.mark.slow
def test_a_stage_that_refuses_its_engine_exits_with_ex_config_and_the_fix(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    engines = corrupted_copy(tiny_engine_dir, tmp_path)
    spec = stage_spec({"engine_dir": engines}, tmp_path)
    result = subprocess.run([sys.executable, "-m", "stream.stages.main", "features", "0",
                             str(spec)], capture_output=True, text=True, timeout=60)
    assert result.returncode == EX_CONFIG, result.stderr
    log = tmp_path / "features-0.log"
    log.write_text(result.stderr)
    message = fatal_message(log)
    assert message is not None and message.startswith("engine 'image_embedder'"), message
    assert message.endswith(f"fix: hidemo engines build --profile tiny --engine-dir {engines}")


@pytest.mark.slow
def test_a_stage_refusing_its_engine_fails_the_run_at_once_without_restarts(
        tiny_engine_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stream.run.cli import run_pipeline

    # the engine goes bad after the preflight (replaced while the run starts): the stage
    # itself refuses it, and the run must still end at once with the stage's own message
    monkeypatch.setattr("stream.run.preflight.preflight", lambda config, endpoints: None)
    engines = corrupted_copy(tiny_engine_dir, tmp_path)
    config = load_config(None, {"sources": [{"spec": "demo"}], "profile": "tiny",
                                "engine_dir": engines, "duration": 30, "out": tmp_path / "out",
                                "view": "none", "placement": "split"},
                         [f"endpoints.predictions=ipc://{tmp_path}/predictions"])
    code, summary = run_pipeline(config, make_view("none"), StopRequest())
    assert code == 1
    assert summary["restarts"]["features[0]"] == 0
    assert [e["event"] for e in summary["events"] if e["stage"] == "features"] == \
        ["started", "refused"]
    assert summary["failures"][0].startswith("features[0] cannot start: engine "
                                             "'image_embedder'"), summary["failures"]
    assert "fix: hidemo engines build" in summary["failures"][0]
    assert summary["wall_s"] < 20  # not 30 s of duration, nor five restarts with backoff


def make_supervisor(tmp_path: Path) -> Supervisor:
    config = load_config(None, {"sources": [{"spec": "demo"}], "profile": "tiny",
                                "placement": "split", "supervisor": {"drain_s": 0}})
    endpoints = replace(Endpoints.for_config(config.endpoints, tmp_path),
                        predictions=f"ipc://{tmp_path}/predictions")
    return Supervisor(config, endpoints, tmp_path / "spec.json", tmp_path / "logs",
                      make_view("none"), StopRequest())


def test_the_supervisor_does_not_restart_a_stage_that_exited_with_ex_config(
        tmp_path: Path) -> None:
    supervisor = make_supervisor(tmp_path)
    try:
        child = supervisor.children[1]  # features[0]
        (tmp_path / "logs").mkdir()
        with (tmp_path / "logs" / "features-0.log").open("wb") as log:
            child.process = subprocess.Popen(
                [sys.executable, "-c", "import sys; print('INFO features[0] x: loading'); "
                 f"print('ERROR features[0] x: {FATAL_MARKER} engine refused\\n  fix: rebuild');"
                 f"print('INFO features[0] x: bye'); sys.exit({EX_CONFIG})"],
                stdout=log, stderr=subprocess.STDOUT)
            child.process.wait()
        supervisor._check(child, time.monotonic(), restart=True)
        assert child.restart_at is None and child.restarts == 0  # no restart scheduled
        assert supervisor.failed == f"features[0] {FATAL_MARKER} engine refused\n  fix: rebuild"
        assert supervisor.events[-1]["event"] == "refused"
    finally:
        supervisor._shutdown()


def status(stage: str, processed: int = 0, **extra: object) -> StageStatus:
    return StageStatus(stage=stage, replica=0, pid=1, state=Health.STOPPING,
                       counters=Counters(processed=processed), extra=dict(extra))


def test_the_verdict_fails_a_run_without_frames_or_with_a_failed_sink(tmp_path: Path) -> None:
    supervisor = make_supervisor(tmp_path)
    try:
        supervisor.captures_started = True
        supervisor.statuses["capture[0]"] = status("capture")
        supervisor.statuses["classify[0]"] = status("classify", streams={})
        verdict = verdict_of(supervisor)
        assert verdict.failures == ["no source produced a frame: demo0 (demo)"]
        supervisor.statuses["capture[0]"] = status("capture", processed=40)
        supervisor.statuses["classify[0]"] = status("classify", sink_errors={"jsonl": 7},
                                                    streams={"demo0": {"frames": 40}})
        verdict = verdict_of(supervisor)
        assert len(verdict.failures) == 1 and "sink jsonl failed: 7 record(s)" in \
            verdict.failures[0], verdict
        supervisor.statuses["classify[0]"] = status("classify",
                                                    streams={"demo0": {"frames": 40}})
        assert verdict_of(supervisor).failures == []
    finally:
        supervisor._shutdown()


@pytest.mark.slow
def test_a_file_that_ends_early_is_reported_and_its_predictions_kept(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    video = write_demo_video(tmp_path / "talk.avi", seconds=6.0, fps=10, width=320,
                             height=240)
    data = video.read_bytes()
    video.write_bytes(data[:len(data) // 2])  # a copy cut short: about 30 of its 60 frames
    result, _ = hidemo_run(tiny_engine_dir, tmp_path, "--source", str(video), "--fast",
                           "--duration", "60", timeout=90)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert len(summary["warnings"]) == 1 and "ended early" in summary["warnings"][0], summary
    assert f"warning: source {video} ended early" in result.stderr
    predictions = (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()
    assert predictions, result.stderr


def test_a_url_that_does_not_open_within_its_timeout_is_a_problem() -> None:
    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    config = load_config(None, {"sources": [{"spec": f"http://127.0.0.1:{port}/live.mjpg",
                                             "open_timeout_s": 2.0}], "profile": "tiny"})
    started = time.monotonic()
    probe = probe_source(config.sources[0])
    assert probe.problem is not None and "cannot be opened within open_timeout_s=2 s" in \
        probe.problem, probe
    assert time.monotonic() - started < 10
