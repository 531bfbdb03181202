"""A killed classify comes back and goes on numbering and accounting where it stopped."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from pipeline_runs import finish, read_jsonl, stage_process, start_run, wait_for, write_config

pytestmark = pytest.mark.slow


def test_prediction_seq_stays_contiguous_across_a_classify_restart(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, [{"spec": "demo", "width": 320, "height": 240}])
    log = tmp_path / "out" / "predictions.jsonl"
    run = start_run(tmp_path, tiny_engine_dir, config, 120.0)
    try:
        wait_for(lambda: len(read_jsonl(log)) >= 3, 90, "first predictions", run)
        victim = stage_process(run, "classify")
        os.kill(victim.pid, signal.SIGKILL)
        before = len(read_jsonl(log))
        seen = read_jsonl(log)[-1]["frame_seq"]  # frames the dead classify had accounted
        wait_for(lambda: len(read_jsonl(log)) >= before + 3, 90, "predictions after restart",
                 run)
        run.send_signal(signal.SIGINT)
        output = finish(run)
    finally:
        if run.poll() is None:
            run.kill()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["restarts"]["classify[0]"] == 1, output
    seqs = [r["seq"] for r in read_jsonl(log)]
    assert seqs == list(range(len(seqs))), seqs  # no restart at 0, no gap
    # only frames in flight at the kill are lost, not every frame sent before the restart
    assert summary["streams"]["demo0"]["lost"] < seen, (summary["streams"], seen)
