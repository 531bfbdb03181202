"""Helpers for tests that start a real ``hidemo run``: its config, the process, its outputs.

Not a test module: the tests that run the whole pipeline (test_pipeline, test_watchdog,
test_sinks, test_classify_restart, test_fuzz) share these so each states only what it
attacks and checks.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import yaml


def write_config(tmp_path: Path, sources: list[dict[str, Any]], **sections: Any) -> Path:
    """A tiny-profile run config with the outside endpoints on ipc in ``tmp_path``;
    ``sections`` replace top-level sections. Placement is ``split`` unless a test asks for
    another: these tests kill, slow down and count the split stage processes (the fused
    placement has its own tests)."""
    config = {
        "profile": "tiny", "view": "log", "sources": sources, "placement": "split",
        "endpoints": {"predictions": f"ipc://{tmp_path}/predictions",
                      "text": f"ipc://{tmp_path}/text"},
        "supervisor": {"backoff_s": 0.2, "drain_s": 2.0},
        **sections,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_run(tmp_path: Path, engine_dir: Path, config: Path, duration: float,
              *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hidemo", "run", "--config", str(config), "--engine-dir",
         str(engine_dir), "--duration", str(duration), "--out", str(tmp_path / "out"), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen[str], timeout: float = 60) -> str:
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=20)
        raise AssertionError(f"hidemo run did not exit in time:\n{output}") from None
    return output


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The records of a JSONL file; none while it does not exist yet."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def by_stream(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        out.setdefault(record["stream"], []).append(record)
    return out


def stage_process(run: subprocess.Popen[str], stage: str,
                  index: int | None = None) -> psutil.Process:
    """The (first) process of ``stage`` under the run; of ``stage`` ``index`` if given."""
    for child in psutil.Process(run.pid).children(recursive=True):
        command = child.cmdline()
        if stage not in command:
            continue
        at = command.index(stage)
        if index is None or command[at + 1:at + 2] == [str(index)]:
            return child
    raise AssertionError(f"no {stage} process {'' if index is None else index} found")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str,
             run: subprocess.Popen[str] | None = None) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` or when ``run`` exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if run is not None and run.poll() is not None:
            raise AssertionError(f"hidemo run exited before {what}:\n{run.stdout.read()}")
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def run_folder(run: subprocess.Popen[str]) -> Path:
    """The run's private folder (where the stage spec, the last argument of every stage's
    command line, lies, and the ipc sockets with it): reachable by this user only."""
    return Path(stage_process(run, "classify").cmdline()[-1]).parent
