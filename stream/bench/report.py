"""The bench report: assembling it, trends of a soak, the terminal tables, ``compare``.

A report is one JSON object (``kind: hidemo.bench/1``): machine, library versions, git
commit, load average, the settings and the resolved run configuration, then ``engines``
(rows), ``pipeline`` (one entry per scenario), ``baseline``, ``ratios`` (pipeline against
baseline, per matching scenario), ``efficiency`` and ``soak``. Figures only, so two reports
can be compared field by field (:func:`compare_table`).

Example:
    >>> ratio(10.0, 4.0)
    2.5
"""

from __future__ import annotations

import os
from typing import Any

from rich.table import Table

from stream.bench.figures import PARTS, slope_per_minute

KIND = "hidemo.bench/1"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def ratios(pipeline: list[dict[str, Any]], baseline: list[dict[str, Any]]) -> list[dict]:
    """Pipeline against baseline for each (streams, mode) both ran, once per baseline
    (one per engine thread count): throughput (above 1: the pipeline does more frames per
    second) and latency (below 1: it answers sooner)."""
    out = []
    for run in pipeline:
        key = (run["scenario"]["streams"], run["scenario"]["mode"])
        for match in (b for b in baseline if (b["streams"], b["mode"]) == key):
            out.append(_ratio_row(run, match, key))
    return out


def _ratio_row(run: dict[str, Any], match: dict[str, Any], key: tuple[int, str]
               ) -> dict[str, Any]:
    return {
        "streams": key[0], "mode": key[1], "baseline_threads": match.get("threads", 0),
        "placement": run.get("placement"), "label": run.get("label"),
        "pipeline_fps": run["throughput_fps"], "baseline_fps": match["throughput_fps"],
        "throughput_ratio": ratio(run["throughput_fps"], match["throughput_fps"]),
        "frame_latency_p50_ratio": ratio(run["frame_latency_ms"].get("p50"),
                                         match["frame_latency_ms"].get("p50")),
        "e2e_latency_p50_ratio": ratio(run["e2e_latency_ms"].get("p50"),
                                       match["e2e_latency_ms"].get("p50")),
    }


def soak_slopes(run: dict[str, Any], skip_fraction: float = 0.1) -> dict[str, Any]:
    """Trends per minute over a long run, leaving out the first ``skip_fraction`` (start-up
    allocations are not a leak): latency per frame and per prediction, total RSS and each
    stage's RSS."""
    t = run["timeline"]

    def fit(times: list[float], values: list[float | None]) -> float | None:
        pairs = [(x, y) for x, y in zip(times, values, strict=True) if y is not None]
        if not pairs:
            return None
        start = pairs[0][0] + skip_fraction * (pairs[-1][0] - pairs[0][0])
        kept = [(x, y) for x, y in pairs if x >= start]
        slope = slope_per_minute([x for x, _ in kept], [y for _, y in kept])
        return None if slope is None else round(slope, 3)

    return {
        "frame_latency_ms_per_min": fit(t["frame_t"], t["frame_latency_ms"]),
        "e2e_latency_ms_per_min": fit(t["prediction_t"], t["e2e_latency_ms"]),
        "rss_mb_per_min": fit(t["resource_t"], t["rss_mb"]),
        "rss_mb_per_min_by_stage": {label: fit(t["resource_t"], values)
                                    for label, values in t["rss_mb_by_stage"].items()},
    }


def _ms(stats: dict[str, float], key: str) -> str:
    value = stats.get(key)
    return "" if value is None else f"{value:.0f}"


def engines_table(rows: list[dict[str, Any]], title: str = "engines") -> Table:
    table = Table(title=title)
    for column in ("engine", "model", "backend", "batch", "seq/window", "median ms", "p95 ms",
                   "p99 ms", "items/s"):
        table.add_column(column, justify="left" if column in ("engine", "model", "backend")
                         else "right")
    for row in rows:
        table.add_row(row["engine"], row["model"] + (" (random)" if row["random_weights"] else ""),
                      row["backend"], str(row["batch"]), case_label(row),
                      f"{row['median_ms']:.1f}", f"{row['p95_ms']:.1f}", f"{row['p99_ms']:.1f}",
                      f"{row['throughput']:.1f}")
    return table


def case_label(row: dict[str, Any]) -> str:
    """"" / "64" (tokens) / "8s (16/80)" (window seconds, image/keypoint slots)."""
    if row.get("window_s") is not None:
        extra = row.get("extra", {})
        return (f"{row['window_s']:g}s ({extra.get('image_seq', 0):.0f}/"
                f"{extra.get('keypoint_seq', 0):.0f})")
    return "" if row.get("sequence") is None else str(row["sequence"])


def pipeline_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"pipeline and baseline (profile {report.get('profile')}; latency ms)")
    for column in ("run", "streams", "mode", "offered fps", "frames/s", "e2e p50", "e2e p95",
                   "e2e p99", "frame p50", "frame p95", "dropped", "lost", "CPU s",
                   "peak RSS MB"):
        table.add_column(column, justify="left" if column in ("run", "mode") else "right")
    for run in report.get("pipeline", []):
        s = run["scenario"]
        name = f"pipeline ({run['placement']})" if run.get("placement") else "pipeline"
        table.add_row(name, str(s["streams"]), s["mode"],
                      "" if run["offered_fps"] is None else f"{run['offered_fps']:g}",
                      f"{run['throughput_fps']:.2f}", _ms(run["e2e_latency_ms"], "p50"),
                      _ms(run["e2e_latency_ms"], "p95"), _ms(run["e2e_latency_ms"], "p99"),
                      _ms(run["frame_latency_ms"], "p50"), _ms(run["frame_latency_ms"], "p95"),
                      str(run["dropped"]), str(run["lost"]), f"{run['total_cpu_s'] or 0:.0f}",
                      f"{run['total_peak_rss_mb'] or 0:.0f}")
    for run in report.get("baseline", []):
        offered = run["capture_fps"] * run["streams"] if run["mode"] == "paced" else None
        table.add_row(_baseline_name(run), str(run["streams"]), run["mode"],
                      "" if offered is None else f"{offered:g}",
                      f"{run['throughput_fps']:.2f}", _ms(run["e2e_latency_ms"], "p50"),
                      _ms(run["e2e_latency_ms"], "p95"), _ms(run["e2e_latency_ms"], "p99"),
                      _ms(run["frame_latency_ms"], "p50"), _ms(run["frame_latency_ms"], "p95"),
                      str(run["dropped"]), "", "", "")
    return table


def split_table(run: dict[str, Any]) -> Table:
    table = Table(title=f"where the time goes: {run['label']} (mean / p95 ms per frame)")
    for column in ("stage", "transfer", "behind busy stage", "queue wait", "compute",
                   "mean batch", "CPU %"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, parts in run["stage_split_ms"].items():
        status = run["stages"].get(f"{stage}[0]", {})
        cpu = sum(v["cpu_percent"] for k, v in run["cpu"].items() if k.startswith(stage))
        table.add_row(stage, *(f"{parts[f'{p}_mean_ms']:.0f} / {parts[f'{p}_p95_ms']:.0f}"
                               for p in PARTS),
                      "" if stage == "capture" else f"{status.get('mean_batch', '')}",
                      f"{cpu:.0f}" if cpu or not _fused(run) else "(fused)")
    if _fused(run):  # worker processes of detect and features: their CPU as one row
        workers = [k for k in run["cpu"] if k.startswith("fused")]
        cpu = sum(run["cpu"][k]["cpu_percent"] for k in workers)
        table.add_row(f"fused workers ({len(workers)})", "", "", "", "", "", f"{cpu:.0f}")
    wasted = run.get("processed_then_dropped")
    if wasted:
        table.caption = "processed then dropped: " + ", ".join(
            f"{stage} {count}" for stage, count in wasted.items())
    return table


def _baseline_name(run: dict[str, Any]) -> str:
    """``baseline`` (engines on the runtime's default threading) or ``baseline Nt`` (on
    N threads)."""
    threads = run.get("threads") or 0
    return f"baseline {threads}t" if threads else "baseline"


def _fused(run: dict[str, Any]) -> bool:
    return any(label.startswith("fused") for label in run.get("cpu", {}))


def summary_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for r in report.get("ratios", []):
        threads = r.get("baseline_threads") or "default"
        pipeline = f"pipeline ({r['placement']})" if r.get("placement") else "pipeline"
        lines.append(f"{pipeline} / baseline (threads {threads}), {r['streams']} stream(s) "
                     f"{r['mode']}: throughput "
                     f"x{r['throughput_ratio']}, frame latency p50 x"
                     f"{r['frame_latency_p50_ratio']}, e2e p50 x{r['e2e_latency_p50_ratio']}")
    for e in report.get("efficiency", []):
        if e.get("ratio") is None:
            continue
        lines.append(f"efficiency, {e['label']}: {e['pipeline_fps']:.2f} frames/s / "
                     f"{e['bottleneck']} (batch {e['bottleneck_batch']}) capacity "
                     f"{e['bottleneck_fps']:.2f} = {e['ratio']:.2f}; busiest stage bound "
                     f"{e['stage_bound_fps']:.2f}, serial bound {e['serial_bound_fps']:.2f}")
    soak = report.get("soak")
    if soak:
        s = soak["slopes"]
        lines.append(f"soak {soak['minutes']} min: latency {s['frame_latency_ms_per_min']} "
                     f"ms/min (per frame), {s['e2e_latency_ms_per_min']} ms/min (e2e); RSS "
                     f"{s['rss_mb_per_min']} MB/min")
    return lines


def _engine_key(row: dict[str, Any]) -> tuple:
    return (row["engine"], row["backend"], row["batch"], row.get("sequence"),
            row.get("window_s"))


def compare_table(a: dict[str, Any], b: dict[str, Any]) -> Table:
    """Every figure both reports have, side by side, with B/A."""
    table = Table(title=f"compare A ({a.get('git_commit')}) and B ({b.get('git_commit')})")
    for column in ("figure", "A", "B", "B/A"):
        table.add_column(column, justify="left" if column == "figure" else "right")

    def add(name: str, va: float | None, vb: float | None) -> None:
        if va is None and vb is None:
            return
        table.add_row(name, "" if va is None else f"{va:.2f}", "" if vb is None else f"{vb:.2f}",
                      "" if ratio(vb, va) is None else f"{ratio(vb, va):.2f}")

    rows_b = {_engine_key(r): r for r in b.get("engines", {}).get("rows", [])}
    for row in a.get("engines", {}).get("rows", []):
        other = rows_b.get(_engine_key(row))
        if other is not None:
            add(f"{row['engine']} {row['backend']} b{row['batch']} {case_label(row)} median ms",
                row["median_ms"], other["median_ms"])
    for section in ("pipeline", "baseline"):
        runs_b = {_run_key(r): r for r in b.get(section, [])}
        for run in a.get(section, []):
            other = runs_b.get(_run_key(run))
            if other is None:
                continue
            streams, mode, kind = _run_key(run)
            name = f"{section} {streams}x {mode}" + (f" ({kind})" if kind else "")
            add(f"{name} frames/s", run["throughput_fps"], other["throughput_fps"])
            for key in ("e2e_latency_ms", "frame_latency_ms"):
                for q in ("p50", "p95", "p99"):
                    add(f"{name} {key.split('_')[0]} {q} ms", run[key].get(q),
                        other[key].get(q))
    eff_b = {e["label"]: e for e in b.get("efficiency", [])}
    for entry in a.get("efficiency", []):
        if entry["label"] in eff_b:
            add(f"efficiency {entry['label']}", entry.get("ratio"),
                eff_b[entry["label"]].get("ratio"))
    return table


def _run_key(run: dict[str, Any]) -> tuple[int, str, str]:
    """What makes a run one of a kind in a report: streams, mode and, for a pipeline run,
    its placement (as the runs of ``--placement split fused`` differ), for a baseline its
    engine threads."""
    scenario = run.get("scenario", run)
    kind = (str(run.get("placement") or "") if "scenario" in run
            else f"threads {run.get('threads') or 'default'}")
    return int(scenario["streams"]), str(scenario["mode"]), kind
