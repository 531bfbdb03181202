"""The ``hidemo`` command as a user types it: real subprocesses on the tiny engines."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engines.manifest import read_manifest
from engines.sources.mediapipe import KEYPOINT_ENGINES

pytestmark = pytest.mark.slow


def hidemo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hidemo", *args], capture_output=True,
                          text=True, timeout=300, cwd=cwd)


def test_help_is_instant_and_lists_jobs() -> None:
    result = hidemo("--help")
    assert result.returncode == 0
    assert "engines" in result.stdout and "bench" in result.stdout


def test_list_json_reports_states(tiny_engine_dir: Path, tmp_path: Path) -> None:
    engine_dir = tmp_path / "engines"
    shutil.copytree(tiny_engine_dir, engine_dir)
    result = hidemo("engines", "list", "--profile", "tiny", "--engine-dir", str(engine_dir),
                    "--json")
    assert result.returncode == 0, result.stderr
    states = {row["name"]: row["state"] for row in json.loads(result.stdout)}
    assert states == {"detector": "random-weights", "image_embedder": "random-weights",
                      "text_embedder": "random-weights", "classifier": "random-weights",
                      **dict.fromkeys(KEYPOINT_ENGINES, "ok")}

    onnx_file = engine_dir / read_manifest(engine_dir, "detector").onnx_file
    onnx_file.write_bytes(onnx_file.read_bytes()[:-10])
    result = hidemo("engines", "list", "--profile", "tiny", "--engine-dir", str(engine_dir),
                    "--json")
    assert result.returncode == 1
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["detector"]["state"] == "stale"
    assert "does not match its manifest" in rows["detector"]["detail"]


def test_bench_engines_writes_a_report(tiny_engine_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    result = hidemo("bench", "engines", "--profile", "tiny", "--engine-dir", str(tiny_engine_dir),
                    "--batch-sizes", "1", "2", "--seq-lens", "8", "--iters", "3", "--warmup", "1",
                    "--weights-dir", str(tmp_path / "none"), "--json", str(report),
                    "--engines", "detector", "image_embedder", "text_embedder", "classifier",
                    "kp_face_landmark")
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["kind"] == "bench-engines" and data["profile"] == "tiny"
    cases = {(r["engine"], r["backend"].split(":")[0], r["batch"]) for r in data["rows"]}
    for engine in ("detector", "image_embedder", "text_embedder"):
        for backend in ("torch", "onnxruntime"):
            for batch in (1, 2):
                assert (engine, backend, batch) in cases
    for backend in ("torch", "onnxruntime", "tflite"):  # a keypoint engine: its .tflite too
        for batch in (1, 2):
            assert ("kp_face_landmark", backend, batch) in cases
    assert not any(engine not in ("kp_face_landmark", "keypoints") and backend == "tflite"
                   for engine, backend, _ in cases), "tflite runs converted engines only"
    # With keypoint engines built: MediaPipe Holistic per person, and Holistic on the
    # engines per backend for 1 and 4 streams (what `keypoints: auto` weighs).
    holistic = {(r["model"], r["backend"].split(":")[0], r["batch"])
                for r in data["rows"] if r["engine"] == "keypoints"}
    assert ("mediapipe-holistic", "mediapipe", 1) in holistic
    for backend in ("onnxruntime", "tflite"):
        for streams in (1, 4):
            assert ("holistic-engines", backend, streams) in holistic
    for row in data["rows"]:
        assert row["runs"] >= 3 and row["median_ms"] > 0
        assert row["p95_ms"] >= row["median_ms"]
        assert row["random_weights"] is (row["engine"] not in ("kp_face_landmark",
                                                                "keypoints"))
        assert row["throughput"] == pytest.approx(row["batch"] * 1000 / row["median_ms"])
    assert "random weights" in result.stderr
    assert "text_embedder" in result.stdout


def test_bench_without_engines_says_how_to_build(tmp_path: Path) -> None:
    deep = tmp_path / ("a-long-folder-name-" * 4)  # the line is longer than any terminal
    deep.mkdir()
    result = hidemo("bench", "engines", "--profile", "tiny", "--engine-dir", str(deep))
    assert result.returncode == 1
    assert "hidemo engines build --profile tiny" in result.stderr


def test_unknown_profile_is_a_clear_error(tmp_path: Path) -> None:
    result = hidemo("engines", "build", "--profile", "huge", "--engine-dir", str(tmp_path))
    assert result.returncode != 0
    assert "unknown profile 'huge'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_backend_choices_match_the_bench() -> None:
    from hidemo.cli import BENCH_BACKENDS
    from stream.bench.engines import VARIANTS

    assert BENCH_BACKENDS == VARIANTS
    result = hidemo("bench", "engines", "--backends", "onnx")
    assert result.returncode == 2 and "invalid choice: 'onnx'" in result.stderr
