"""``hidemo label`` end to end against the local wire servers (OpenAI-compatible and
Gemini), on a tiny manifest of real videos: the summary, the exit codes, the report, the
person crop through the real perception core, a run killed halfway and resumed, and that
no API key ever reaches the store, the output or the logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from wire_servers import Answer, Fail, GeminiServer, OpenAIServer, RecordedRequest, Respond

from hidemo.cli import main
from training.data.manifest import ManifestRow, write_manifest
from training.pseudo.records import Status
from training.pseudo.store import LabelStore

pytestmark = pytest.mark.slow  # every test here decodes videos

SECRET = "sk-test-SECRET-1234"
FIRST = json.dumps({"label": "positive", "confidence": 0.7, "reasoning": "relaxed smile"})
FINAL = json.dumps({"label": "negative", "confidence": 0.6, "reasoning": "masked; neck touch"})
REPO = Path(__file__).resolve().parents[3]


def make_manifest(folder: Path, count: int, labelled: int = 0, width: int = 64) -> Path:
    """``count`` small distinct demo videos; the first ``labelled`` have gold labels."""
    from stream.demo import write_demo_video

    rows = []
    for index in range(count):
        path = write_demo_video(folder / f"v{index}.avi", seconds=0.3 + 0.1 * index, fps=10,
                                width=width, height=width * 3 // 4)
        rows.append(ManifestRow(f"v{index}", path.name, label=1 if index < labelled else None,
                                split="train", transcript=f"words of video {index}"))
    return write_manifest(folder / "manifest.csv", rows)


def answers(request: RecordedRequest) -> Answer:
    """First call (one user turn) -> FIRST, reflection -> FINAL."""
    body = request.body
    turns = body.get("messages") or body.get("contents") or []
    return Answer(FIRST if len(turns) == 1 else FINAL, 1000, 200)


def label_args(manifest: Path, out: Path, *extra: str) -> list[str]:
    return ["label", "--manifest", str(manifest), "--out", str(out), "--crop", "frame",
            "--frames", "2", "--size", "64", *extra]


def no_secret_in(folder: Path, *texts: str) -> None:
    for text in texts:
        assert SECRET not in text
    for file in folder.rglob("*"):
        if file.is_file():
            assert SECRET.encode() not in file.read_bytes(), file


def test_openai_end_to_end_with_report_and_no_key_anywhere(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    manifest = make_manifest(tmp_path, 3, labelled=1)
    out = tmp_path / "labels.sqlite"
    caplog.set_level("DEBUG")
    with OpenAIServer([Fail(429, retry_after=0.01), Respond(answers)]) as server:
        code = main(label_args(manifest, out, "--provider", "openai", "--model", "qwen2.5-vl",
                               "--base-url", server.base_url))
        requests = server.requests
    printed = capsys.readouterr()
    assert code == 0, printed
    assert len(requests) == 1 + 2 * 2  # the 429, then two unlabelled videos x two calls
    assert all(r.headers["authorization"] == f"Bearer {SECRET}" for r in requests)
    summary = printed.out.strip().splitlines()[-1]
    assert summary.startswith("labelled 2, refused 0, failed 0, cached 0, skipped 0 (of 2)")
    assert "tokens 4000 in / 800 out" in summary and "cost unknown" in summary
    with LabelStore.open(out) as store:
        stored = store.labels()
    assert [s.video_id for s in stored] == ["v1", "v2"]
    assert all(s.outcome.verdict.label == "negative" for s in stored)
    assert stored[0].outcome.attempts == 3 and stored[0].key.provider == "openai"

    assert main(["label", "report", "--store", str(out), "--manifest", str(manifest),
                 "--plot", str(tmp_path / "rel.png")]) == 0
    report = capsys.readouterr().out
    assert "2" in report and (tmp_path / "rel.png").is_file()
    no_secret_in(tmp_path, printed.out, printed.err, report, caplog.text)


def test_gemini_end_to_end_and_a_rerun_is_free(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    manifest = make_manifest(tmp_path, 2)
    out = tmp_path / "labels.sqlite"
    with GeminiServer([Respond(answers)]) as server:
        args = label_args(manifest, out, "--provider", "gemini", "--base-url",
                          server.base_url, "--select", "all")
        assert main(args) == 0
        assert len(server.requests) == 4
        assert all(r.headers["x-goog-api-key"] == SECRET for r in server.requests)
        assert main(args) == 0
        assert len(server.requests) == 4  # all cached
        assert main([*args, "--ids", "v1", "--force"]) == 0
        assert len(server.requests) == 6
    printed = capsys.readouterr()
    lines = printed.out.splitlines()
    assert any(line.startswith("labelled 0, refused 0, failed 0, cached 2") for line in lines)
    assert "cost $" in lines[-1]  # gemini-2.5-pro has a price
    with LabelStore.open(out) as store:
        assert {s.key.model for s in store.labels()} == {"gemini-2.5-pro"}
    no_secret_in(tmp_path, printed.out, printed.err)


def test_failures_exit_1_and_bad_arguments_exit_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    manifest = make_manifest(tmp_path, 1)
    out = tmp_path / "labels.sqlite"
    with OpenAIServer([Fail(500)]) as server:
        args = label_args(manifest, out, "--provider", "openai", "--model", "m",
                          "--base-url", server.base_url, "--max-attempts", "1")
        assert main(args) == 1
    assert "failed 1" in capsys.readouterr().out
    bad = [
        (["label", "--provider", "openai", "--out", str(out)], "needs --manifest"),
        (label_args(manifest, out, "--provider", "openai"), "needs --model"),
        (label_args(manifest, out, "--provider", "teacher"), "needs --teacher and --features"),
        (label_args(manifest, out, "--provider", "gemini", "--prompts", "v9"), "'v9' not found"),
        (label_args(manifest, out, "--provider", "gemini", "--frames", "0"), "--frames"),
        (label_args(manifest, out, "--provider", "gemini", "--ids", "nope"), "'nope'"),
        (label_args(manifest, out, "--provider", "gemini", "--api-key-env", "NO_SUCH_VAR_X"),
         "NO_SUCH_VAR_X"),
        (["label", "report", "--store", str(tmp_path / "none.sqlite")], "does not exist"),
    ]
    for argv, message in bad:
        os.environ.pop("NO_SUCH_VAR_X", None)
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv


def test_no_gemini_key_is_a_configuration_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    manifest = make_manifest(tmp_path, 1)
    assert main(label_args(manifest, tmp_path / "s.sqlite", "--provider", "gemini")) == 2
    assert "GEMINI_API_KEY" in capsys.readouterr().err


def test_person_crop_with_the_real_perception_core(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No engines built: ``--detector auto`` falls back to MediaPipe Pose, which finds the
    demo clip's person; the images sent are crops (taller than wide, unlike the frame)."""
    import cv2
    import numpy as np

    manifest = make_manifest(tmp_path, 1, width=320)  # MediaPipe finds nobody at 64x48
    with OpenAIServer([Respond(answers)]) as server:
        code = main(["label", "--manifest", str(manifest), "--out", str(tmp_path / "s.sqlite"),
                     "--provider", "openai", "--model", "m", "--base-url", server.base_url,
                     "--frames", "2", "--size", "96", "--crop", "person",
                     "--engine-dir", str(tmp_path / "no-engines")])
        images = server.requests[0].images()
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "no person found" not in printed
    shapes = [cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape[:2]
              for jpeg in images]
    assert len(shapes) == 2 and all(h == 96 and w < 96 for h, w in shapes), shapes


def test_killed_halfway_keeps_whole_rows_and_the_rerun_finishes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL while the third video's first call is in flight: the two finished videos
    are stored whole, nothing else is; the rerun asks only for the other three."""
    count = 5
    manifest = make_manifest(tmp_path, count)
    out = tmp_path / "labels.sqlite"
    in_flight = threading.Event()

    def slow_fifth(request: RecordedRequest) -> Answer:
        if len(server.requests) >= 5:
            in_flight.set()
            time.sleep(3.0)  # the subprocess is killed meanwhile
        return answers(request)

    env = {**os.environ, "OPENAI_API_KEY": SECRET}
    with OpenAIServer([Respond(slow_fifth)]) as server:
        process = subprocess.Popen(
            [sys.executable, "-m", "hidemo", "label", *label_args(
                manifest, out, "--provider", "openai", "--model", "m", "--base-url",
                server.base_url)[1:]],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert in_flight.wait(60), process.communicate(timeout=5)
            process.send_signal(signal.SIGKILL)
            stdout, stderr = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
    assert process.returncode == -signal.SIGKILL
    no_secret_in(tmp_path, stdout, stderr)
    with LabelStore.open(out) as store:
        stored = store.labels()
    assert [s.video_id for s in stored] == ["v0", "v1"]
    for row in stored:
        assert row.outcome.status is Status.LABELLED and len(row.outcome.responses) == 2
        assert row.outcome.provisional is not None and row.outcome.attempts == 2

    with OpenAIServer([Respond(answers)]) as server:
        assert main(label_args(manifest, out, "--provider", "openai", "--model", "m",
                               "--base-url", server.base_url)) == 0
        assert len(server.requests) == 2 * (count - 2)
    assert "labelled 3, refused 0, failed 0, cached 2" in capsys.readouterr().out
    with LabelStore.open(out) as store:
        assert len(store.labels(status="labelled")) == count


def test_teacher_reads_features_not_videos(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """``--provider teacher`` hands the run and feature store to CheckpointTeacher (tested
    with its own module) and labels rows without touching their video files."""
    from training.pseudo import teacher as teacher_module
    from training.pseudo.records import LabelOutcome, Verdict

    opened: list[tuple[Path, Path]] = []

    class Teacher:
        provider, model, prompt_version, needs_images = "teacher", "run@abc", "none", False

        def label(self, item):
            return LabelOutcome(Status.LABELLED, Verdict(label="positive", confidence=0.8,
                                                         reasoning=f"windows of {item.video_id}"))

        def close(self) -> None:
            pass

    def from_run(run: Path, features: Path) -> Teacher:
        opened.append((run, features))
        return Teacher()

    monkeypatch.setattr(teacher_module.CheckpointTeacher, "from_run", from_run)
    write_manifest(tmp_path / "m.csv", [ManifestRow("k1"), ManifestRow("k2", "gone.avi")])
    code = main(["label", "--manifest", str(tmp_path / "m.csv"), "--provider", "teacher",
                 "--teacher", str(tmp_path / "run"), "--features", str(tmp_path / "feats"),
                 "--out", str(tmp_path / "s.sqlite")])
    assert code == 0, capsys.readouterr()
    assert opened == [(tmp_path / "run", tmp_path / "feats")]
    with LabelStore.open(tmp_path / "s.sqlite") as store:
        assert [(s.video_id, s.key.sampling) for s in store.labels()] == [("k1", "none"),
                                                                         ("k2", "none")]
