"""``hidemo label`` end to end against the local wire servers (OpenAI-compatible and
Gemini), on a tiny manifest of real videos: the summary, the exit codes, the report, the
person crop through the real perception core, a run killed halfway and resumed, and that
no API key ever reaches the store, the output or the logs."""

from __future__ import annotations

import csv
import json
import logging
import os
import re
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from wire_servers import (
    Answer,
    Fail,
    GeminiServer,
    OpenAIServer,
    Raw,
    RecordedRequest,
    Refuse,
    Respond,
    Scripted,
)

from hidemo.cli import main
from training.data.manifest import ManifestRow, read_manifest, write_manifest
from training.pseudo.label_cli import CHATTY_LOGGERS
from training.pseudo.records import Status
from training.pseudo.store import LabelStore

pytestmark = pytest.mark.slow  # every test here decodes videos

SECRET = "sk-test-SECRET-1234"
FIRST = json.dumps({"label": "positive", "confidence": 0.7, "reasoning": "relaxed smile"})
FINAL = json.dumps({"label": "negative", "confidence": 0.6, "reasoning": "masked; neck touch"})
REPO = Path(__file__).resolve().parents[3]


def make_manifest(folder: Path, count: int, labelled: int = 0, width: int = 64) -> Path:
    """``count`` small distinct demo videos; the first ``labelled`` have gold labels."""
    from stream.media.demo import write_demo_video

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


# -- secrets: whatever the server echoes, nothing the run writes or shows holds a key ------

KEY_ALPHABET = string.ascii_letters + string.digits + "-_."
keys = st.text(st.sampled_from(KEY_ALPHABET), min_size=12, max_size=48)
ECHOES = ("first reasoning", "final reasoning", "label", "prose after the JSON",
          "extra field", "error body 401", "error body 429", "headers", "refusal",
          "enum value")


def _envelope(protocol: str, status: int, message: str) -> str:
    if protocol == "gemini":
        return json.dumps({"error": {"code": status, "message": message,
                                     "status": "UNAUTHENTICATED"}})
    return json.dumps({"error": {"message": message, "type": "invalid_request_error",
                                 "param": None, "code": None}})


def echo(position: str, protocol: str, secret: str) -> Scripted:
    """A scripted server answer that carries ``secret`` at ``position``."""
    verdict = {"label": "positive", "confidence": 0.7, "reasoning": "relaxed"}
    if position == "first reasoning":
        return Answer(json.dumps({**verdict, "reasoning": f"I was told {secret}"}))
    if position == "final reasoning":
        return Answer(json.dumps({**verdict, "label": "negative", "reasoning": secret}))
    if position == "label":
        return Answer(json.dumps({**verdict, "label": secret}))
    if position == "prose after the JSON":
        return Answer(json.dumps(verdict) + f"\nKey used: {secret}")
    if position == "extra field":
        return Answer(json.dumps({**verdict, "key": secret}))
    if position == "error body 401":
        return Fail(401, body=_envelope(protocol, 401, f"API key {secret} is not valid"))
    if position == "error body 429":
        return Fail(429, retry_after=0, body=_envelope(protocol, 429, f"quota of {secret}"))
    if position == "headers":
        return Raw(429, _envelope(protocol, 429, "slow down"),
                   {"Retry-After": "0", "X-Echo": secret,
                    "WWW-Authenticate": f"Bearer realm={secret}"})
    if position == "enum value":  # the client warns with (openai: keeps) what it was sent
        if protocol == "openai":
            return Raw(200, json.dumps({
                "id": "x", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "finish_reason": secret,
                             "message": {"role": "assistant", "content": ""}}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}))
        return Raw(200, json.dumps({
            "promptFeedback": {"blockReason": secret},
            "usageMetadata": {"promptTokenCount": 100, "totalTokenCount": 100}}))
    assert position == "refusal"
    if protocol == "openai":
        return Refuse(f"I will not; your key is {secret}")
    return Raw(200, json.dumps({
        "promptFeedback": {"blockReason": "SAFETY", "blockReasonMessage": f"key {secret}"},
        "usageMetadata": {"promptTokenCount": 100, "totalTokenCount": 100}}))


@pytest.mark.parametrize("protocol", ["openai", "gemini"])
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(secret=keys, other=keys,
       script=st.lists(st.tuples(st.sampled_from(ECHOES), st.booleans()), min_size=1,
                       max_size=4))
def test_no_secret_reaches_a_file_a_log_or_the_console_whatever_the_server_echoes(
        protocol: str, secret: str, other: str, script: list[tuple[str, bool]],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    """The run holds two secrets: the provider's key and another key variable. The server
    echoes either one at any position; then every file the run and its report wrote
    (store, WAL, CSV, plot), every log record (DEBUG, the clients' included) and every
    console line is searched for both."""
    assume(secret != other)
    own, spare = ("OPENAI_API_KEY", "GEMINI_API_KEY") if protocol == "openai" else \
        ("GEMINI_API_KEY", "OPENAI_API_KEY")
    monkeypatch.setenv(own, secret)
    monkeypatch.setenv(spare, other)
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    for name in ("", *CHATTY_LOGGERS):
        caplog.set_level(logging.DEBUG, logger=name or None)
    manifest = _shared_manifest(tmp_path.parent)
    entries = [echo(position, protocol, secret if own_key else other)
               for position, own_key in script]
    server_type = OpenAIServer if protocol == "openai" else GeminiServer
    with tempfile.TemporaryDirectory(dir=tmp_path) as folder:
        out = Path(folder) / "labels.sqlite"
        provider = ["--provider", "openai", "--model", "m"] if protocol == "openai" else \
            ["--provider", "gemini"]
        with server_type(entries) as server, warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _warn_to_stderr  # as outside pytest: to the console
            code = main(["-v", *label_args(manifest, out, *provider, "--base-url",
                                           server.base_url, "--select", "all",
                                           "--max-attempts", "2", "--frames", "1")])
            sent = server.requests
        assert main(["label", "report", "--store", str(out), "--manifest", str(manifest),
                     "--per-video", "--csv", str(Path(folder) / "videos.csv"),
                     "--plot", str(Path(folder) / "rel.png")]) == 0
        printed = capsys.readouterr()
        logs = caplog.text
        caplog.clear()
        assert code in (0, 1)
        header = "authorization" if protocol == "openai" else "x-goog-api-key"
        assert all(secret in r.headers[header] for r in sent)  # the key was used...
        files = [file.read_bytes() for file in Path(folder).rglob("*") if file.is_file()]
    for text in (printed.out, printed.err, logs, *(f.decode("latin-1") for f in files)):
        for key in (secret, other):  # ...and is nowhere
            assert key not in text
    kept = printed.out + logs + "".join(f.decode("latin-1") for f in files)
    if any(position != "headers" for position, _ in script):
        assert "[redacted]" in kept  # an echo arrived, and was blanked


def _warn_to_stderr(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, file: object = None, line: str | None = None) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


_MANIFESTS: dict[Path, Path] = {}


def _shared_manifest(folder: Path) -> Path:
    """Two small videos, made once per test (hypothesis runs many examples in one)."""
    if folder not in _MANIFESTS:
        videos = folder / "shared-videos"
        videos.mkdir(exist_ok=True)
        _MANIFESTS[folder] = make_manifest(videos, 2)
    return _MANIFESTS[folder]


def test_a_credential_in_the_server_address_is_a_secret_too(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bad --base-url with a password in it: the error names the address, redacted."""
    manifest = make_manifest(tmp_path, 1)
    token = "tok-0123456789abcdef"
    assert main(label_args(manifest, tmp_path / "s.sqlite", "--provider", "openai",
                           "--model", "m", "--base-url", f"ftp://me:{token}@host/v1")) == 2
    printed = capsys.readouterr()
    assert "base_url must be an http" in printed.err and "[redacted]" in printed.err
    assert token not in printed.out + printed.err


# -- spend: refusals are billed, a duplicated file is paid once ----------------------------


def test_refusals_with_usage_are_billed_in_the_summary_and_the_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """v0 is refused at the first call (100 in / 10 out), v1 at the reflection (its first
    call 1000 / 200, then the refusal): both are final (exit 0) and every token counts."""
    manifest = make_manifest(tmp_path, 2)
    out = tmp_path / "labels.sqlite"
    script = [Refuse("no"), Answer(FIRST, 1000, 200), Refuse("no")]
    with OpenAIServer(script) as server:
        assert main(label_args(manifest, out, "--provider", "openai", "--model", "m",
                               "--base-url", server.base_url)) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("labelled 0, refused 2, failed 0")
    assert "tokens 1200 in / 220 out" in summary
    assert "per labelled video" not in summary and "s per call (3 calls)" in summary
    assert main(["label", "report", "--store", str(out)]) == 0
    assert "tokens 1,200 in, 220 out" in capsys.readouterr().out


def test_the_report_lists_each_video_and_pays_a_duplicated_file_once(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = make_manifest(tmp_path, 2, labelled=2)
    rows = read_manifest(manifest)
    rows.append(ManifestRow("v0-copy", rows[0].path, label=0, split="train",
                            transcript=rows[0].transcript))
    write_manifest(manifest, rows)
    out = tmp_path / "labels.sqlite"
    with OpenAIServer([Respond(answers)]) as server:
        assert main(label_args(manifest, out, "--provider", "openai", "--model", "m",
                               "--base-url", server.base_url, "--select", "all")) == 0
        assert len(server.requests) == 4  # two distinct files, two calls each
    capsys.readouterr()
    csv_path = tmp_path / "report" / "videos.csv"
    assert main(["label", "report", "--store", str(out), "--manifest", str(manifest),
                 "--per-video", "--csv", str(csv_path)]) == 0
    report = capsys.readouterr().out
    assert "videos 3: labelled 3" in report
    assert "spend over 2 stored answers (1 more video ids share one" in report
    assert "tokens 4,000 in, 800 out" in report  # not 6,000: the copy was not paid again
    lines = {line.split()[0]: line for line in report.splitlines()[-4:-1]}
    assert set(lines) == {"v0", "v1", "v0-copy"}
    assert "same file as v0" in lines["v0-copy"] and "negative" in lines["v0-copy"]
    with csv_path.open() as handle:
        table = {line["video_id"]: line for line in csv.DictReader(handle)}
    assert table["v0-copy"]["same_file_as"] == "v0" and table["v0-copy"]["gold"] == "negative"
    assert table["v0"]["input_tokens"] == "2000" and table["v0"]["calls"] == "2"
    assert table["v0"]["agrees"] == "False"  # gold positive, labelled negative


# -- timeouts a user can set ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai", "gemini"])
def test_a_server_that_never_answers_costs_attempts_times_the_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        protocol: str) -> None:
    """--timeout-s 0.5 and 2 attempts: the video ends after exactly 2 requests, each of
    which the client waited out (the default 120 s would take minutes)."""
    monkeypatch.setenv("GEMINI_API_KEY", SECRET)
    manifest = make_manifest(tmp_path, 1)
    out = tmp_path / "labels.sqlite"
    release = threading.Event()

    def hang(_request: RecordedRequest) -> Answer:
        release.wait(120)
        return Answer(FIRST)

    server_type = OpenAIServer if protocol == "openai" else GeminiServer
    provider = ["--provider", "openai", "--model", "m"] if protocol == "openai" else \
        ["--provider", "gemini"]
    started = time.monotonic()
    with server_type([Respond(hang)]) as server:
        try:
            code = main(label_args(manifest, out, *provider, "--base-url", server.base_url,
                                   "--timeout-s", "0.5", "--max-attempts", "2"))
        finally:
            release.set()
        requests = len(server.requests)
    elapsed = time.monotonic() - started
    assert code == 1, capsys.readouterr()
    assert requests == 2
    with LabelStore.open(out) as store:
        (stored,) = store.labels()
    outcome = stored.outcome
    assert outcome.status is Status.FAILED and outcome.attempts == 2
    assert re.search(r"(?i)time(d)? ?out", outcome.error), outcome.error
    assert outcome.call_seconds is not None and outcome.call_seconds >= 2 * 0.5 * 0.9
    assert elapsed < 60  # far below 2 x 120 s: the option, not the default, applied


def test_retry_after_is_capped_by_the_option(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    manifest = make_manifest(tmp_path, 1)
    out = tmp_path / "labels.sqlite"
    with OpenAIServer([Fail(429, retry_after=3600), Respond(answers)]) as server:
        assert main(label_args(manifest, out, "--provider", "openai", "--model", "m",
                               "--base-url", server.base_url,
                               "--max-retry-after-s", "0.05")) == 0
        assert len(server.requests) == 3
    assert "retrying in 0.05 s" in caplog.text


def test_settings_come_from_a_config_file_and_options_override_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = make_manifest(tmp_path, 1)
    config = tmp_path / "label.json"
    release = threading.Event()

    def hang(_request: RecordedRequest) -> Answer:
        release.wait(120)
        return Answer(FIRST)

    with OpenAIServer([Respond(hang)]) as server:
        config.write_text(json.dumps({
            "provider": "openai", "model": "m", "base_url": server.base_url,
            "timeout_s": 0.3, "max_attempts": 1, "crop": "frame", "frames": 2, "size": 64}))
        try:
            assert main(["label", "--config", str(config), "--manifest", str(manifest),
                         "--out", str(tmp_path / "a.sqlite")]) == 1
            assert len(server.requests) == 1
            assert main(["label", "--config", str(config), "--manifest", str(manifest),
                         "--out", str(tmp_path / "b.sqlite"), "--max-attempts", "2"]) == 1
            assert len(server.requests) == 3
        finally:
            release.set()
    capsys.readouterr()
    bad = [
        ({"timeout_s": 0}, [], "timeout_s in --config"),
        ({"max_retry_after_s": -1}, [], "max_retry_after_s in --config"),
        ({"timeout_s": 7200}, [], "timeout_s in --config"),
        ({}, ["--timeout-s", "0"], "--timeout-s: Input should be greater than 0"),
        ({}, ["--timeout-s", "nan"], "--timeout-s"),
        ({}, ["--max-retry-after-s", "inf"], "--max-retry-after-s"),
        ({}, ["--max-attempts", "0"], "--max-attempts"),
        ({"api_key": "abc"}, [], "never holds a key"),
        ({"timeuot_s": 3}, [], "timeuot_s in --config"),
        ([1, 2], [], "a JSON object of settings is needed"),
    ]
    for content, options, message in bad:
        config.write_text(json.dumps(content))
        assert main(["label", "--config", str(config), "--manifest", str(manifest),
                     "--provider", "openai", "--model", "m", "--out",
                     str(tmp_path / "c.sqlite"), *options]) == 2, (content, options)
        assert message in capsys.readouterr().err, (content, options)
    config.write_text("{not json")
    assert main(["label", "--config", str(config)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    assert main(["label", "--config", str(tmp_path / "none.json")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not (tmp_path / "c.sqlite").exists()  # nothing was called or created
