"""The watchdog: a stage that reported ready and then fell silent is killed and restarted.

Status reports, sent from each stage's main loop, are its heartbeat. A stage stuck in its
loop (a deadlock, a runaway computation; simulated here with SIGSTOP) is alive, so no exit
would ever be noticed: after ``supervisor.hang_after_s`` without a report it is killed,
reported as ``hung`` and restarted like a stage that died.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from pipeline_runs import finish, read_jsonl, stage_process, start_run, wait_for, write_config

from stream.config import load_config
from stream.run.supervisor import StopRequest, Supervisor
from stream.run.view import make_view
from stream.transport.endpoints import Endpoints
from stream.transport.status import Health, StageStatus


def supervisor_with_sleeper(tmp_path: Path, state: Health, silent_s: float) -> Supervisor:
    """A supervisor whose features[0] is a sleeping process that last reported ``state``
    ``silent_s`` seconds ago (nothing else is started)."""
    config = load_config(None, {"sources": [{"spec": "demo"}], "profile": "tiny",
                                "placement": "split",
                                "supervisor": {"hang_after_s": 5.0, "drain_s": 0}})
    endpoints = replace(Endpoints.for_config(config.endpoints, tmp_path),
                        predictions=f"ipc://{tmp_path}/predictions")
    supervisor = Supervisor(config, endpoints, tmp_path / "spec.json", tmp_path / "logs",
                            make_view("none"), StopRequest())
    child = supervisor.children[1]
    child.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    supervisor.statuses[child.label] = StageStatus(stage="features", replica=0,
                                                   pid=child.process.pid, state=state)
    supervisor.heard[child.label] = time.monotonic() - silent_s
    return supervisor


@pytest.mark.parametrize(("state", "silent_s", "hung"), [
    (Health.RUNNING, 6.0, True), (Health.STALLED, 6.0, True),
    (Health.RUNNING, 1.0, False),  # heard from recently
    (Health.STARTING, 60.0, False),  # still loading its engines: silence is expected
])
def test_only_a_ready_stage_silent_for_hang_after_s_is_killed(
        tmp_path: Path, state: Health, silent_s: float, hung: bool) -> None:
    supervisor = supervisor_with_sleeper(tmp_path, state, silent_s)
    child = supervisor.children[1]
    process = child.process
    assert process is not None
    try:
        supervisor._check(child, time.monotonic(), restart=True)
        assert (process.poll() == -signal.SIGKILL) is hung
        assert child.hangs == int(hung)
        events = [e["event"] for e in supervisor.events]
        assert events == (["hung", "died"] if hung else [])
        assert (child.restart_at is not None) is hung  # restarted through the usual path
    finally:
        process.kill()
        process.wait()
        child.process = None
        supervisor._shutdown()


@pytest.mark.slow
def test_a_hung_stage_is_killed_and_restarted_and_predictions_resume(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, [{"spec": "demo", "width": 320, "height": 240}],
                          supervisor={"backoff_s": 0.2, "drain_s": 2.0, "hang_after_s": 3.0})
    log = tmp_path / "out" / "predictions.jsonl"
    process = start_run(tmp_path, tiny_engine_dir, config, 15.0)
    try:
        wait_for(lambda: log.is_file() and len(read_jsonl(log)) >= 2, 60, "first predictions")
        victim = stage_process(process, "features")
        frozen_at = time.monotonic()
        os.kill(victim.pid, signal.SIGSTOP)  # alive, silent, no progress: hung
        output = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    hung = [e for e in summary["events"] if e["event"] == "hung"]
    assert [(e["stage"], e["pid"]) for e in hung] == [("features", victim.pid)], output
    assert summary["hangs"]["features[0]"] == 1
    assert summary["restarts"] == {"classify[0]": 0, "features[0]": 1, "detect[0]": 0,
                                   "capture[0]": 0}, output
    records = read_jsonl(log)
    assert [r["seq"] for r in records] == list(range(len(records)))
    after = [r for r in records if r["capture_time"] > frozen_at]
    assert len(after) >= 2, output  # predictions resumed after the restart
