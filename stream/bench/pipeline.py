"""``hidemo bench pipeline``: the real pipeline (supervisor, one process per stage) under load.

Each :class:`Scenario` runs ``hidemo run``'s own code (:func:`stream.run.cli.run_pipeline`) on
N streams for S seconds, in one of two modes:

- ``paced``: every source delivers frames at its frame rate, as a camera would; the figures
  are the latency a user sees and whether the pipeline keeps up (drops).
- ``saturated``: sources are read as fast as the pipeline takes frames (``realtime`` off,
  looping); the figure is throughput, the pipeline's capacity. Every frame gets every
  modality (the analysis rates are set to the frame rate): otherwise the frames that
  survive latest-wins drops are far apart in media time and each one is due for an image
  embedding that a paced frame would skip, and frames/s would mean different work in
  different runs (and in the baseline).

The run's own traces give the figures: ``predictions.jsonl`` (end-to-end latency from
capture to prediction), ``frames.jsonl`` (every frame reaching the classifier, with every
stage's stamps: the per-stage split and the frame rate achieved), ``summary.json`` (drops,
losses, per-stage counters, CPU and RSS over time). The first ``warmup_s`` seconds of
frames are left out of latency and throughput.

Example:
    >>> Scenario(streams=4, mode="saturated", duration_s=30).label
    '4 streams, saturated'
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from stream.bench.figures import percentiles, read_jsonl, stage_breakdown
from stream.config import RunConfig, load_config

log = logging.getLogger(__name__)

Mode = Literal["paced", "saturated"]


@dataclass(frozen=True)
class Scenario:
    """One pipeline run: ``streams`` sources, ``mode``, for ``duration_s`` seconds of running
    (after the stages are ready). ``fps``: the capture rate (None: the profile's)."""

    streams: int
    mode: Mode
    duration_s: float
    fps: float | None = None
    warmup_s: float = 2.0

    @property
    def label(self) -> str:
        return f"{self.streams} stream{'s' if self.streams != 1 else ''}, {self.mode}"

    @property
    def slug(self) -> str:
        return f"{self.streams}x-{self.mode}"


@dataclass(frozen=True)
class PipelineSetup:
    """What every scenario shares: profile, engines, sources, overrides of the run config."""

    profile: str
    engine_dir: Path
    sources: tuple[str, ...] = ("demo",)
    config_file: Path | None = None
    overrides: tuple[str, ...] = ()
    width: int = 640
    height: int = 480


def scenario_config(setup: PipelineSetup, scenario: Scenario, out: Path) -> RunConfig:
    """The :class:`RunConfig` of one scenario; sources cycle through ``setup.sources``.

    Endpoints are ipc sockets inside ``out`` so a bench never collides with a running
    ``hidemo run`` (or another bench) on the default TCP ports.
    """
    realtime = scenario.mode == "paced"
    sources = []
    for index in range(scenario.streams):
        spec = setup.sources[index % len(setup.sources)]
        source: dict[str, Any] = {"spec": spec, "id": f"s{index}", "realtime": realtime,
                                  "loop": True, "width": setup.width, "height": setup.height}
        if scenario.fps is not None:
            source["fps"] = scenario.fps
        sources.append(source)
    overrides: dict[str, Any] = {
        "profile": setup.profile, "engine_dir": setup.engine_dir, "sources": sources,
        "duration": scenario.duration_s, "out": out, "view": "none",
        "endpoints": {"predictions": f"ipc://{out.resolve()}/predictions.sock",
                      "text": f"ipc://{out.resolve()}/text.sock"},
    }
    dotted = list(setup.overrides)
    if scenario.fps is not None:
        dotted.append(f"analysis.capture_fps={scenario.fps}")
    config = load_config(setup.config_file, overrides, dotted)
    if scenario.mode == "saturated":
        rate = config.capture_fps()
        dotted += [f"analysis.capture_fps={rate}", f"analysis.image_rate={rate}",
                   f"analysis.keypoint_rate={rate}"]
        config = load_config(setup.config_file, overrides, dotted)
    return config


def run_scenario(setup: PipelineSetup, scenario: Scenario, out: Path) -> dict[str, Any]:
    """Run ``scenario`` through the supervisor and return its figures (see module doc)."""
    from stream.run.cli import run_pipeline
    from stream.run.supervisor import StopRequest
    from stream.run.view import make_view

    out.mkdir(parents=True, exist_ok=True)
    config = scenario_config(setup, scenario, out)
    # the measured seconds start with the first frame, not when the stages are ready: on a
    # slow machine the first frame can take seconds (models' first calls), and a duration
    # counted from ready would leave little or nothing after the warm-up
    config = config.model_copy(update={"duration": scenario.duration_s + FIRST_FRAME_CAP_S})
    # the sinks append: a folder an earlier bench used keeps its lines, left out here
    # (they once made a run's measured span 4 hours long)
    frames_log, predictions_log = out / "frames.jsonl", out / "predictions.jsonl"
    before = {path: path.stat().st_size if path.is_file() else 0
              for path in (frames_log, predictions_log)}
    stop = StopRequest()
    clock = threading.Thread(target=_stop_after_first_frame,
                             args=(out / "frames.jsonl", scenario.duration_s, stop),
                             daemon=True)
    clock.start()
    log.info("bench pipeline: %s for %.0f s", scenario.label, scenario.duration_s)
    code, summary = run_pipeline(config, make_view("none"), stop)
    stop.requested = True  # ends the clock thread if the run ended first
    figures = pipeline_figures(scenario, config, summary,
                               read_jsonl(frames_log, before[frames_log]),
                               read_jsonl(predictions_log, before[predictions_log]))
    figures["exit_code"] = code
    figures["out"] = str(out)
    return figures


FIRST_FRAME_CAP_S = 60.0
"""Longest a scenario waits for its first frame; the run then ends anyway (and shows 0)."""


def _stop_after_first_frame(trace: Path, seconds: float, stop: Any) -> None:
    """Ask ``stop`` for an ordered stop ``seconds`` after the first new line of ``trace``
    (one left by an earlier run in the same folder does not count)."""
    before = trace.stat().st_size if trace.is_file() else 0
    while not stop.requested and not (trace.is_file() and trace.stat().st_size > before):
        time.sleep(0.05)
    deadline = time.monotonic() + seconds
    while not stop.requested and time.monotonic() < deadline:
        time.sleep(0.05)
    if not stop.requested:
        stop.request("duration reached")


def pipeline_figures(scenario: Scenario, config: RunConfig, summary: dict[str, Any],
                     frames: list[dict[str, Any]],
                     predictions: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput, latency, per-stage split, drops and resources of one run."""
    start = min((f["arrival"] for f in frames), default=0.0) + scenario.warmup_s
    kept = [f for f in frames if f["arrival"] >= start]
    kept_predictions = [p for p in predictions if p["emit_time"] >= start]
    end = max((f["arrival"] for f in kept), default=start)
    span = max(end - start, 1e-9)
    by_stream: dict[str, dict[str, Any]] = {}
    for stream in config.stream_ids():
        own = [f for f in kept if f["stream"] == stream]
        preds = [p for p in kept_predictions if p["stream"] == stream]
        accounting = summary.get("streams", {}).get(stream, {})
        by_stream[stream] = {
            "frames": len(own), "fps": round(len(own) / span, 3),
            "predictions": len(preds),
            "e2e_latency_ms": percentiles(p["latency_ms"]["total"] for p in preds),
            "frame_latency_ms": percentiles(f["latency_ms"]["total"] for f in own),
            "dropped": accounting.get("dropped", 0), "lost": accounting.get("lost", 0),
        }
    stages = {}
    for label, status in summary.get("stages", {}).items():
        counters = status.get("counters", {})
        batches = max(1, counters.get("batches", 0))
        stages[label] = {"processed": counters.get("processed", 0),
                         "mean_batch": round(counters.get("processed", 0) / batches, 2),
                         "busy_s": round(counters.get("busy_s", 0.0), 2),
                         "dropped_in": counters.get("dropped_in", 0),
                         "dropped_out": counters.get("dropped_out", 0)}
    resources = summary.get("resources", {})
    features = [v for k, v in summary.get("stages", {}).items() if k.startswith("features")]
    featured = max(1, sum(f.get("counters", {}).get("processed", 0) for f in features))
    return {
        "scenario": asdict(scenario), "label": scenario.label,
        "capture_fps": config.capture_fps(), "window_seconds": _window_seconds(config),
        "image_rate": config.image_rate(), "keypoint_rate": config.keypoint_rate(),
        "stride_s": config.classify.stride_s,
        "detector": _detector_name(summary),
        "running_s": summary.get("running_s"), "measured_s": round(span, 2),
        "reason": summary.get("reason"),
        "placement": summary.get("placement", {}).get("placement"),
        "placement_reason": summary.get("placement", {}).get("reason"),
        "processed_then_dropped": summary.get("processed_then_dropped", {}),
        "frames": len(kept), "throughput_fps": round(len(kept) / span, 3),
        "predictions": len(kept_predictions),
        "per_frame": {  # work per frame, observed: what efficiency divides by
            "image": round(sum(f.get("extra", {}).get("images", 0) for f in features)
                           / featured, 4),
            "keypoints": round(sum(f.get("extra", {}).get("keypoint_frames", 0)
                                   for f in features) / featured, 4),
            "windows": round(len(kept_predictions) / max(1, len(kept)), 4)},
        "offered_fps": (None if scenario.mode == "saturated"
                        else round(config.capture_fps() * scenario.streams, 3)),
        "e2e_latency_ms": percentiles(p["latency_ms"]["total"] for p in kept_predictions),
        "frame_latency_ms": percentiles(f["latency_ms"]["total"] for f in kept),
        "dropped": sum(s["dropped"] for s in by_stream.values()),
        "lost": sum(s["lost"] for s in by_stream.values()),
        "streams": by_stream,
        "stage_split_ms": stage_breakdown(
            kept, [p["latency_ms"].get("classify", 0.0) for p in kept_predictions]),
        "stages": stages,
        "restarts": {k: v for k, v in summary.get("restarts", {}).items() if v},
        "cpu": resources.get("stages", {}),
        "total_cpu_s": resources.get("total_cpu_s"),
        "total_peak_rss_mb": resources.get("total_peak_rss_mb"),
        "timeline": _timeline(kept, kept_predictions, resources),
    }


def _detector_name(summary: dict[str, Any]) -> str | None:
    status = summary.get("stages", {}).get("detect[0]", {})
    return status.get("extra", {}).get("detector")


def _window_seconds(config: RunConfig) -> float:
    from engines.profiles import get_profile

    return get_profile(config.profile).classifier.window_seconds


def _timeline(frames: list[dict[str, Any]], predictions: list[dict[str, Any]],
              resources: dict[str, Any]) -> dict[str, Any]:
    """Latency and memory over time, on one clock: seconds since the resource sampling
    started (the moment the captures were started)."""
    origin = resources.get("origin") or min((f["arrival"] for f in frames), default=0.0)
    series = resources.get("series", [])
    return {
        "frame_t": [round(f["arrival"] - origin, 3) for f in frames],
        "frame_latency_ms": [f["latency_ms"]["total"] for f in frames],
        "prediction_t": [round(p["emit_time"] - origin, 3) for p in predictions],
        "e2e_latency_ms": [p["latency_ms"]["total"] for p in predictions],
        "resource_t": [s["t"] for s in series],
        "rss_mb": [round(sum(s["rss_mb"].values()), 2) for s in series],
        "rss_mb_by_stage": _by_label(series, "rss_mb"),
        "cpu_s_by_stage": _by_label(series, "cpu_s"),
    }


def _by_label(series: list[dict[str, Any]], key: str) -> dict[str, list[float | None]]:
    labels = sorted({label for s in series for label in s[key]})
    return {label: [s[key].get(label) for s in series] for label in labels}
