"""The bench report's PNGs: latency CDF, per-stage breakdown, latency and RSS over time.

Drawn with matplotlib's Agg backend (no display needed, CI-safe) straight from the report's
figures, so a report JSON can be re-plotted later. Each function writes one file and returns
its path.

Example:
    >>> paths = write_plots(report, Path("artifacts/bench/run"))  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from stream.bench.figures import PARTS

STAGE_ORDER = ("capture", "detect", "features", "classify")
PART_COLOURS = {"transfer": "#9ecae1", "busy": "#de2d26", "queue": "#fdae6b",
                "compute": "#31a354"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def latency_cdf(report: dict[str, Any], path: Path) -> Path:
    """CDF of per-frame latency (capture to classifier; baseline: to the end of the frame)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    series = [(f"pipeline {p['label']}", p["timeline"]["frame_latency_ms"], "-")
              for p in report.get("pipeline", [])]
    series += [(f"baseline {b['streams']}x {b['mode']}", b["timeline"]["frame_latency_ms"], "--")
               for b in report.get("baseline", [])]
    for label, values, style in series:
        if not values:
            continue
        ordered = np.sort(np.asarray(values, np.float64))
        ax.plot(ordered, np.arange(1, len(ordered) + 1) / len(ordered), style, label=label)
    ax.set_xlabel("latency per frame (ms)")
    ax.set_ylabel("fraction of frames")
    ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"latency CDF, profile {report.get('profile')}")
    return _save(fig, path)


def stage_breakdown(report: dict[str, Any], path: Path) -> Path:
    """Per scenario and stage, the mean ms of transfer, queue wait and compute (stacked)."""
    plt = _pyplot()
    runs = report.get("pipeline", [])
    fig, axes = plt.subplots(max(1, len(runs)), 1, figsize=(7, 1.8 + 1.6 * max(1, len(runs))),
                             squeeze=False)
    for ax, run in zip(axes[:, 0], runs, strict=False):
        split = run.get("stage_split_ms", {})
        stages = [s for s in STAGE_ORDER if s in split]
        left = np.zeros(len(stages))
        for part in PARTS:
            values = np.array([split[s][f"{part}_mean_ms"] for s in stages])
            ax.barh(stages, values, left=left, color=PART_COLOURS[part],
                    label=part if run is runs[0] else None)
            left += values
        ax.invert_yaxis()
        ax.set_title(f"{run['label']}: {run['throughput_fps']:.2f} frames/s", fontsize=9)
        ax.set_xlabel("mean ms per frame")
    if runs:
        axes[0, 0].legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def timeline(report: dict[str, Any], path: Path) -> Path:
    """Per-frame latency and total RSS over each run."""
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for run in report.get("pipeline", []):
        t = run["timeline"]
        top.plot(t["frame_t"], t["frame_latency_ms"], ".", markersize=2, label=run["label"])
        bottom.plot(t["resource_t"], t["rss_mb"], label=run["label"])
    top.set_ylabel("latency per frame (ms)")
    top.set_yscale("log")
    top.legend(fontsize=8)
    bottom.set_ylabel("pipeline RSS (MB, all processes)")
    bottom.set_xlabel("seconds since the captures started")
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    return _save(fig, path)


def soak(report: dict[str, Any], path: Path) -> Path:
    """The soak run: latency and RSS against minutes, with their fitted trends."""
    plt = _pyplot()
    run = report["pipeline"][report["soak"]["run_index"]]
    t = run["timeline"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    minutes = np.asarray(t["frame_t"], np.float64) / 60
    top.plot(minutes, t["frame_latency_ms"], ".", markersize=2)
    top.set_ylabel("latency per frame (ms)")
    rss_minutes = np.asarray(t["resource_t"], np.float64) / 60
    bottom.plot(rss_minutes, t["rss_mb"])
    bottom.set_ylabel("pipeline RSS (MB)")
    bottom.set_xlabel("minutes")
    slopes = report["soak"]["slopes"]
    top.set_title(f"soak {report['soak']['minutes']} min: latency "
                  f"{slopes.get('frame_latency_ms_per_min')} ms/min, RSS "
                  f"{slopes.get('rss_mb_per_min')} MB/min", fontsize=9)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
    return _save(fig, path)


def write_plots(report: dict[str, Any], out: Path) -> list[str]:
    """Every plot the report has data for; file names relative to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if report.get("pipeline") or report.get("baseline"):
        written.append(latency_cdf(report, out / "latency_cdf.png"))
    if report.get("pipeline"):
        written.append(stage_breakdown(report, out / "stage_breakdown.png"))
        written.append(timeline(report, out / "timeline.png"))
    if report.get("soak"):
        written.append(soak(report, out / "soak.png"))
    return [p.name for p in written]


def _save(fig: Any, path: Path) -> Path:
    """Lay out, write and release a figure (a long bench run draws many)."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    _pyplot().close(fig)
    return path
