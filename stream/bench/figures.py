"""Numbers from a run's traces: percentiles, trends, and where each frame's time went.

A pipeline run leaves one ``frames.jsonl`` line per frame that reached the classifier,
with every stage's stamp ``[stage, t_arrive, t_in, t_out]`` (monotonic seconds, see
:class:`stream.transport.wire.Stamp`). :func:`stage_breakdown` splits each frame's time per stage
into four parts that add up to its time from capture to the classifier:

- *transfer*: the previous stage's send to this stage taking it off its socket (ZeroMQ,
  copies, the stage's poll), less the part below;
- *busy*: the part of that time the stage was computing an earlier batch (the frame sat
  in socket buffers behind it), from the stage's batch intervals seen in the same trace;
- *queue*: in the latest-wins inbox and the batch window, until its batch started;
- *compute*: the batch that held it.

Example:
    >>> percentiles([1.0, 2.0, 3.0, 4.0])["p50"]
    2.5
    >>> round(slope_per_minute([0.0, 60.0, 120.0], [10.0, 11.0, 12.0]), 3)
    1.0
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PARTS = ("transfer", "busy", "queue", "compute")


def percentiles(values: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99, mean, max and count of ``values`` (empty dict for none)."""
    array = np.asarray(list(values), np.float64)
    if array.size == 0:
        return {}
    p50, p95, p99 = np.percentile(array, [50, 95, 99])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2),
            "p99": round(float(p99), 2), "mean": round(float(array.mean()), 2),
            "max": round(float(array.max()), 2), "n": int(array.size)}


def slope_per_minute(times_s: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares trend of ``values`` against time (seconds), per minute; None if fewer
    than three points or no spread in time."""
    t = np.asarray(times_s, np.float64)
    v = np.asarray(values, np.float64)
    if t.size < 3 or float(np.ptp(t)) <= 0:
        return None
    return float(np.polyfit(t / 60.0, v, 1)[0])


def read_jsonl(path: Path, start: int = 0) -> list[dict[str, Any]]:
    """Records of a JSON-lines file from byte ``start`` on (what a run appended to a file
    an earlier run left); a torn last line (a killed writer) is skipped."""
    if not path.is_file():
        return []
    with path.open("rb") as file:
        file.seek(start)
        text = file.read().decode("utf-8", errors="replace")
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class BusyIntervals:
    """A stage's batch intervals (merged), to measure how much of a span it was busy."""

    def __init__(self, intervals: Iterable[tuple[float, float]]) -> None:
        merged: list[list[float]] = []
        for start, end in sorted(intervals):
            if merged and start <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], end)
            else:
                merged.append([start, end])
        self.starts = np.array([m[0] for m in merged], np.float64)
        self.ends = np.array([m[1] for m in merged], np.float64)

    def overlap(self, start: float, end: float) -> float:
        """Seconds of ``[start, end]`` during which the stage was computing."""
        if end <= start or self.starts.size == 0:
            return 0.0
        lo = int(np.searchsorted(self.ends, start, side="right"))
        hi = int(np.searchsorted(self.starts, end, side="left"))
        if hi <= lo:
            return 0.0
        s = np.maximum(self.starts[lo:hi], start)
        e = np.minimum(self.ends[lo:hi], end)
        return float(np.clip(e - s, 0.0, None).sum())


def busy_intervals(frames: Sequence[dict[str, Any]]) -> dict[str, BusyIntervals]:
    """Per stage, the batch intervals seen in ``frames``' stamps."""
    spans: dict[str, set[tuple[float, float]]] = {}
    for record in frames:
        for stage, _, t_in, t_out in record.get("stamps", []):
            if t_out > t_in:
                spans.setdefault(str(stage), set()).add((t_in, t_out))
    return {stage: BusyIntervals(values) for stage, values in spans.items()}


def frame_parts_ms(stamps: Sequence[Sequence[Any]],
                   busy: dict[str, BusyIntervals] | None = None) -> dict[str, dict[str, float]]:
    """Per stage, milliseconds of transfer, busy, queue wait and compute for one frame."""
    out: dict[str, dict[str, float]] = {}
    previous_out: float | None = None
    for stage, t_arrive, t_in, t_out in stamps:
        transit = 0.0 if previous_out is None else max(0.0, t_arrive - previous_out)
        blocked = 0.0
        if previous_out is not None and busy and stage in busy:
            blocked = min(transit, busy[stage].overlap(previous_out, t_arrive))
        out[str(stage)] = {"transfer": 1000.0 * (transit - blocked),
                           "busy": 1000.0 * blocked,
                           "queue": 1000.0 * max(0.0, t_in - t_arrive),
                           "compute": 1000.0 * max(0.0, t_out - t_in)}
        previous_out = t_out
    return out


def stage_breakdown(frames: Sequence[dict[str, Any]],
                    classify_compute_ms: Sequence[float] = ()) -> dict[str, dict[str, float]]:
    """Mean and p95 milliseconds per stage and part over ``frames`` (trace records).

    The classifier's compute is not in the frame trace (it runs once per stride, not per
    frame): pass the predictions' ``latency_ms.classify`` as ``classify_compute_ms``.
    """
    samples: dict[str, dict[str, list[float]]] = {}
    busy = busy_intervals(frames)
    for record in frames:
        for stage, parts in frame_parts_ms(record.get("stamps", []), busy).items():
            bucket = samples.setdefault(stage, {part: [] for part in PARTS})
            for part in PARTS:
                bucket[part].append(parts[part])
    if "classify" in samples and classify_compute_ms:
        samples["classify"]["compute"] = list(classify_compute_ms)
    out: dict[str, dict[str, float]] = {}
    for stage, parts in samples.items():
        row: dict[str, float] = {}
        for part, values in parts.items():
            array = np.asarray(values, np.float64)
            row[f"{part}_mean_ms"] = round(float(array.mean()), 2) if array.size else 0.0
            row[f"{part}_p95_ms"] = (round(float(np.percentile(array, 95)), 2)
                                     if array.size else 0.0)
        out[stage] = row
    return out
