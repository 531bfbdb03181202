"""``hidemo bench --quick`` end to end, as CI runs it: the report's structure and the PNGs.

Timings are never asserted (the machine is shared and noisy); what is checked is that every
section is there, figures are finite and consistent with each other, the plots are real
PNG images, and ``compare`` reads two reports.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def hidemo(*args: str, timeout: float = 170) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hidemo", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def quick_report(tiny_engine_dir: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench") / "quick"
    result = hidemo("bench", "--quick", "--duration", "4", "--engine-dir",
                    str(tiny_engine_dir), "--out", str(out), "--placement", "split", "fused",
                    timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    # tables on stdout, progress ("bench pipeline: ...") on stderr
    return out, json.loads((out / "report.json").read_text()), result.stdout + result.stderr


def _finite(stats: dict[str, float]) -> bool:
    return all(math.isfinite(stats[k]) for k in ("p50", "p95", "p99"))


def test_quick_report_has_every_section(quick_report: tuple[Path, dict[str, Any], str]
                                        ) -> None:
    _, report, stdout = quick_report
    assert report["kind"] == "hidemo.bench/1" and report["profile"] == "tiny"
    for key in ("machine", "versions", "git_commit", "run_config", "load_average_before"):
        assert key in report
    assert report["versions"]["python"] and report["run_config"]["profile"] == "tiny"
    engines = {row["engine"] for row in report["engines"]["rows"]}
    assert {"detector", "image_embedder", "text_embedder", "classifier"} <= engines
    assert {"person_finder", "keypoints"} <= engines  # MediaPipe, timed alone too
    windows = [r for r in report["engines"]["rows"] if r["engine"] == "classifier"]
    assert all(r["window_s"] == 4.0 and r["extra"]["image_seq"] == 8 for r in windows)
    for row in report["engines"]["rows"]:
        assert row["runs"] >= 3 and row["p99_ms"] >= row["median_ms"] > 0

    modes = {(run["scenario"]["streams"], run["scenario"]["mode"]) for run in report["pipeline"]}
    assert modes == {(1, "paced"), (1, "saturated")}
    # --placement split fused: each scenario once per placement, each in its own folder
    assert sorted((run["scenario"]["mode"], run["placement"]) for run in report["pipeline"]) \
        == [("paced", "fused"), ("paced", "split"), ("saturated", "fused"),
            ("saturated", "split")]
    assert len({run["label"] for run in report["pipeline"]}) == 4
    assert len({run["out"] for run in report["pipeline"]}) == 4
    for run in report["pipeline"]:
        assert run["exit_code"] == 0 and run["frames"] > 0 and run["throughput_fps"] > 0
        assert _finite(run["frame_latency_ms"]) and run["lost"] == 0
        assert set(run["stage_split_ms"]) == {"capture", "detect", "features", "classify"}
        for parts in run["stage_split_ms"].values():
            assert {"transfer_mean_ms", "busy_mean_ms", "queue_mean_ms",
                    "compute_mean_ms"} <= set(parts)
        assert run["placement"] in run["label"] and run["placement_reason"]
        processes = {"fused[0]", "classify[0]"} if run["placement"] == "fused" else \
            {"detect[0]", "features[0]", "classify[0]"}
        assert processes <= set(run["cpu"])
        timeline = run["timeline"]
        assert len(timeline["resource_t"]) == len(timeline["rss_mb"]) >= 2
        assert len(timeline["frame_t"]) == len(timeline["frame_latency_ms"]) == run["frames"]
        # the per-stage split is a budget: its means add up to the mean latency
        split = sum(v for parts in run["stage_split_ms"].values() for k, v in parts.items()
                    if k.endswith("_mean_ms") and not k.startswith("compute"))
        split += sum(parts["compute_mean_ms"] for stage, parts in run["stage_split_ms"].items()
                     if stage != "classify")
        assert split == pytest.approx(run["frame_latency_ms"]["mean"], rel=0.05, abs=2.0)

    assert {(b["streams"], b["mode"]) for b in report["baseline"]} == modes
    for run in report["baseline"]:
        assert run["frames"] > 0 and _finite(run["frame_latency_ms"])
        assert set(run["step_ms"]) == {"capture", "detect", "image", "keypoints", "classify"}
    assert sorted((r["mode"], r["placement"]) for r in report["ratios"]) == sorted(
        (run["scenario"]["mode"], run["placement"]) for run in report["pipeline"])
    assert all(r["throughput_ratio"] > 0 for r in report["ratios"])
    assert len(report["efficiency"]) == 2
    for efficiency in report["efficiency"]:
        assert efficiency["ratio"] > 0 and efficiency["bottleneck"] in {
            e["engine"] for e in efficiency["engines"]}
    for placement in ("split", "fused"):
        assert f"pipeline ({placement}) / baseline" in stdout
    assert "efficiency" in stdout
    # interleaved: each scenario's pipeline runs, then its baseline, then the next scenario
    started = [line.split(":")[0] + ", " + line.split(":")[1].split(",")[1].strip()
               for line in stdout.splitlines()
               if line.startswith(("bench pipeline:", "bench baseline:"))]
    assert started == ["bench pipeline, paced"] * 2 + ["bench baseline, paced"] + \
        ["bench pipeline, saturated"] * 2 + ["bench baseline, saturated"], started


def test_quick_report_writes_valid_pngs(quick_report: tuple[Path, dict[str, Any], str]
                                        ) -> None:
    out, report, _ = quick_report
    assert set(report["plots"]) == {"latency_cdf.png", "stage_breakdown.png", "timeline.png"}
    import matplotlib.image

    for name in report["plots"]:
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC)
        image = matplotlib.image.imread(out / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_compare_two_reports(quick_report: tuple[Path, dict[str, Any], str],
                             tmp_path: Path) -> None:
    out, report, _ = quick_report
    other = dict(report)
    other["pipeline"] = [dict(run, throughput_fps=run["throughput_fps"] * 2)
                         for run in report["pipeline"]]
    (tmp_path / "b.json").write_text(json.dumps(other))
    result = hidemo("bench", "compare", str(out / "report.json"), str(tmp_path / "b.json"),
                    timeout=60)
    assert result.returncode == 0, result.stderr
    for placement in ("split", "fused"):  # one row per placement, not one for both
        assert f"pipeline 1x saturated ({placement}) frames/s" in result.stdout
    assert "2.00" in result.stdout  # B/A of the doubled throughput


def test_compare_refuses_other_json(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text(json.dumps({"kind": "bench-engines"}))
    result = hidemo("bench", "compare", str(tmp_path / "a.json"), str(tmp_path / "a.json"),
                    timeout=60)
    assert result.returncode == 2 and "not a hidemo bench report" in result.stderr


def test_a_run_reads_only_the_lines_it_appended_to_a_file_an_earlier_run_left(
        tmp_path: Path) -> None:
    from stream.bench.figures import read_jsonl

    log = tmp_path / "frames.jsonl"
    log.write_text('{"arrival": 1.0}\n{"arrival": 2.0}\n')  # an earlier bench's lines
    start = log.stat().st_size
    with log.open("a") as file:
        file.write('{"arrival": 5000.0}\n{"arrival": 5001.0}\n{"arriv')  # torn last line
    assert read_jsonl(log, start) == [{"arrival": 5000.0}, {"arrival": 5001.0}]
    assert len(read_jsonl(log)) == 4
    assert read_jsonl(tmp_path / "absent.jsonl", 10) == []
