"""Efficiency: how close the pipeline comes to its slowest engine, measured in the same run.

Each engine the pipeline uses has a capacity in frames per second: its own throughput
(items per second, from the engine bench at the batch size the pipeline actually formed)
divided by how many items one frame needed of it in the run (observed: image embeddings
and keypoint frames per frame at the features stage, windows per frame at classify). The
slowest is the bottleneck; a perfect pipeline would run at its capacity, so
``efficiency = saturated throughput / bottleneck capacity``.

Two more bounds explain a low figure: ``stage_bound_fps`` (the busiest stage process, whose
engines run one after the other) and ``serial_bound_fps`` (every engine one after the
other: what one process can reach at best, the baseline's ceiling).

Example:
    >>> nearest_batch([1, 4, 8], 3.1)
    4
"""

from __future__ import annotations

from typing import Any

from stream.bench.engines import BenchRow
from stream.bench.perception import FINDER, KEYPOINTS

STAGE_OF = {"detector": "detect", FINDER: "detect", "image_embedder": "features",
            KEYPOINTS: "features", "classifier": "classify"}


def nearest_batch(batches: list[int], wanted: float) -> int:
    return min(batches, key=lambda b: (abs(b - wanted), b))


def _pick(rows: list[BenchRow], engine: str, batch: float,
          window_s: float | None = None) -> BenchRow | None:
    """The row of ``engine`` on the backend ``auto`` would run (the fastest non-torch one),
    at the benched batch size nearest ``batch`` (and window length nearest ``window_s``)."""
    own = [r for r in rows if r.engine == engine and not r.backend.startswith("torch")]
    if window_s is not None and any(r.window_s is not None for r in own):
        best_window = min({r.window_s for r in own if r.window_s is not None},
                          key=lambda w: abs(w - window_s))
        own = [r for r in own if r.window_s == best_window]
    if not own:
        return None
    size = nearest_batch(sorted({r.batch for r in own}), batch)
    return max((r for r in own if r.batch == size), key=lambda r: r.throughput)


def efficiency(rows: list[BenchRow], pipeline: dict[str, Any]) -> dict[str, Any]:
    """The efficiency figure of one saturated pipeline scenario (see the module doc)."""
    streams = pipeline["scenario"]["streams"]
    stages = pipeline["stages"]
    per_frame = pipeline["per_frame"]
    detect_batch = stages.get("detect[0]", {}).get("mean_batch", 1.0) or 1.0
    features_batch = stages.get("features[0]", {}).get("mean_batch", 1.0) or 1.0
    uses_yolo = str(pipeline.get("detector") or "").startswith("yolo")
    needs = [
        ("detector", detect_batch, 1.0) if uses_yolo else (FINDER, 1.0, 1.0),
        ("image_embedder", max(1.0, features_batch * per_frame["image"]), per_frame["image"]),
        (KEYPOINTS, 1.0, per_frame["keypoints"]),
        ("classifier", float(streams), per_frame["windows"]),
    ]
    engines = []
    for engine, batch, share in needs:
        row = _pick(rows, engine, batch, pipeline.get("window_seconds"))
        if row is None or share <= 0:
            continue
        ms_per_frame = row.median_ms / row.batch * share
        engines.append({"engine": engine, "model": row.model, "backend": row.backend,
                        "batch": row.batch, "items_per_s": round(row.throughput, 2),
                        "items_per_frame": round(share, 4),
                        "capacity_fps": round(row.throughput / share, 2),
                        "ms_per_frame": round(ms_per_frame, 2), "stage": STAGE_OF[engine]})
    if not engines:
        return {"label": pipeline["label"], "engines": [], "ratio": None}
    bottleneck = min(engines, key=lambda e: e["capacity_fps"])
    by_stage: dict[str, float] = {}
    for entry in engines:
        by_stage[entry["stage"]] = by_stage.get(entry["stage"], 0.0) + entry["ms_per_frame"]
    throughput = pipeline["throughput_fps"]
    return {
        "label": pipeline["label"], "streams": streams,
        "pipeline_fps": throughput, "bottleneck": bottleneck["engine"],
        "bottleneck_batch": bottleneck["batch"],
        "bottleneck_fps": bottleneck["capacity_fps"],
        "ratio": round(throughput / bottleneck["capacity_fps"], 3),
        "stage_ms_per_frame": {k: round(v, 2) for k, v in by_stage.items()},
        "stage_bound_fps": round(1000.0 / max(by_stage.values()), 2),
        "serial_bound_fps": round(1000.0 / sum(by_stage.values()), 2),
        "engines": engines,
    }
