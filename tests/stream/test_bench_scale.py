"""``hidemo bench scale`` end to end: pipelines as separate ``hidemo run`` processes on one
Triton server that the bench starts, stops and reads the statistics of."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_bench_scale_runs_pipelines_on_local_and_served_engines(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "scale"
    scratch_before = set(Path("/tmp").glob("hidemo-triton-*"))
    done = subprocess.run(
        [sys.executable, "-m", "hidemo", "bench", "scale", "--profile", "tiny",
         "--engine-dir", str(tiny_engine_dir), "--pipelines", "1", "--duration", "5",
         "--warmup-s", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    rows = {row["backend"]: row for row in report["runs"]}
    assert set(rows) == {"local", "triton"}
    for row in rows.values():
        assert row["pipelines"] == 1 and len(row["per_pipeline_fps"]) == 1
        assert row["total_fps"] > 0 and row["predictions"] > 0 and not row["failed"]
    served = rows["triton"]["triton"]["image_embedder"]
    assert served["requests"] > 0 and 1 <= served["executions"] <= served["requests"]
    assert sum(served["batches"].values()) == served["executions"]
    assert rows["local"]["triton"] is None
    assert all(run["served"] for run in rows["triton"]["runs"]), "runs used the server"
    assert not any(run["served"] for run in rows["local"]["runs"])
    assert "bench scale" in done.stdout
    assert set(Path("/tmp").glob("hidemo-triton-*")) <= scratch_before, "server cleaned up"
