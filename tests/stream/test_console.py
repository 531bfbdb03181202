"""What ``hidemo run`` prints: each decision once, on one short line; no line twice; no
library deprecation warning. The full reasons go to ``config.json``."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console

from stream.prediction import FrameCounts, Prediction, Slots, Window
from stream.run.cli import LINE_WIDTH, one_line
from stream.run.view import LogView

DECISIONS = ("hidemo run: keypoints ", "hidemo run: placement ", "hidemo run: asr ")


def record(seq: int, *, random_weights: bool = True) -> Prediction:
    return Prediction(
        stream="demo0", seq=seq, person=0, generation=1, frame_seq=seq, label="positive",
        probs={"negative": 0.4, "positive": 0.6}, window=Window(start=0.0, end=3.0, seconds=3.0),
        modalities=["image", "keypoints"], slots=Slots(image=6, keypoints=30, text=0),
        smoothing=0.0, capture_time=1.0, emit_time=1.1, latency_ms={"total": 123.0},
        frames=FrameCounts(received=1, dropped=0, lost=0), detector=None,
        random_weights=random_weights, random_engines=["classifier", "image_embedder"])


def test_the_log_view_says_random_weights_once_and_never_wraps_a_line() -> None:
    view = LogView()
    view.console = Console(file=io.StringIO(), width=40, highlight=False, soft_wrap=True)
    for seq in range(5):
        view.prediction(record(seq))
    lines = view.console.file.getvalue().splitlines()
    assert len(lines) == 6, lines  # one warning, then one line per prediction (width 40)
    assert sum("random weights" in line for line in lines) == 1
    assert "classifier, image_embedder" in lines[0]
    assert all(line.startswith(f"demo0 #{seq} ") for seq, line in enumerate(lines[1:]))


@pytest.mark.parametrize("text", [
    "short", "a " * 200, "x" * 300, "first line\nsecond line", "word, " * 40, "",
])
def test_one_line_is_one_line_within_the_width(text: str) -> None:
    line = one_line(text)
    assert "\n" not in line and len(line) <= LINE_WIDTH
    first = text.strip().splitlines()[0] if text.strip() else ""
    assert line == first or (line.endswith("…") and first.startswith(line[:-1].rstrip()))


@pytest.mark.slow
def test_a_demo_run_prints_each_decision_once_and_no_line_twice(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}  # as a user runs it
    result = subprocess.run(
        [sys.executable, "-m", "hidemo", "run", "--source", "demo", "--profile", "tiny",
         "--engine-dir", str(tiny_engine_dir), "--duration", "8", "--out", str(tmp_path / "out"),
         "--set", f"endpoints.predictions=ipc://{tmp_path}/predictions",
         "--set", f"endpoints.text=ipc://{tmp_path}/text"],
        capture_output=True, text=True, timeout=240, env=env)
    console = result.stdout + result.stderr
    assert result.returncode == 0, console
    lines = [line for line in console.splitlines() if line.strip()]
    assert sum(line.startswith("demo0 #") for line in lines) >= 1, console  # it ran
    repeated = {line: n for line, n in Counter(lines).items() if n > 1}
    assert not repeated, repeated
    assert "Deprecat" not in console and "deprecat" not in console, console
    for prefix in DECISIONS:
        said = [line for line in lines if line.startswith(prefix)]
        assert len(said) == 1, (prefix, said)
        assert len(said[0]) <= LINE_WIDTH, said[0]
    assert sum("random weights" in line for line in lines) == 1
    reasons = json.loads((tmp_path / "out" / "config.json").read_text())["reasons"]
    placement = next(line for line in lines if line.startswith("hidemo run: placement "))
    assert reasons["placement"] and reasons["keypoints"] and reasons["asr"]
    assert reasons["placement"] not in placement  # the line names the rule, the file says why
