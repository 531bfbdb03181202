"""A killed classify comes back and goes on numbering and accounting where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

pytestmark = pytest.mark.slow


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_prediction_seq_stays_contiguous_across_a_classify_restart(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "profile": "tiny", "view": "log",
        "sources": [{"spec": "demo", "width": 320, "height": 240}],
        "endpoints": {"predictions": f"ipc://{tmp_path}/predictions",
                      "text": f"ipc://{tmp_path}/text"},
        "supervisor": {"backoff_s": 0.2, "drain_s": 2.0},
    }))
    log = tmp_path / "out" / "predictions.jsonl"
    run = subprocess.Popen(
        [sys.executable, "-m", "hidemo", "run", "--config", str(config), "--engine-dir",
         str(tiny_engine_dir), "--duration", "120", "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: len(read_jsonl(log)) >= 3, 90, "first predictions")
        victim = next(p for p in psutil.Process(run.pid).children(recursive=True)
                      if "classify" in p.cmdline())
        os.kill(victim.pid, signal.SIGKILL)
        before = len(read_jsonl(log))
        seen = read_jsonl(log)[-1]["frame_seq"]  # frames the dead classify had accounted
        wait_for(lambda: len(read_jsonl(log)) >= before + 3, 90, "predictions after restart")
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["restarts"]["classify[0]"] == 1, output
    seqs = [r["seq"] for r in read_jsonl(log)]
    assert seqs == list(range(len(seqs))), seqs  # no restart at 0, no gap
    # only frames in flight at the kill are lost, not every frame sent before the restart
    assert summary["streams"]["demo0"]["lost"] < seen, (summary["streams"], seen)
