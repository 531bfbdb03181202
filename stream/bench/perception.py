"""The MediaPipe models alone: the person finder (BlazePose) and Holistic keypoints.

They are engines of the pipeline too (not ONNX: MediaPipe runs them on the CPU, one image
at a time), and on a CPU they are often its bottleneck, so the efficiency figure needs
their own throughput, measured here the same way as :mod:`stream.bench.engines`: after a
warm-up, on consecutive frames of the demo clip (video mode tracks from frame to frame,
as in the pipeline), median/p95/p99 of one call.

Example:
    >>> rows = bench_mediapipe(BenchSettings(iters=5))  # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import numpy as np

from engines.adapters.detector import crop_with_margin
from stream.bench.engines import BenchRow, BenchSettings, sample_stats, time_case
from stream.media.demo import DemoClip

log = logging.getLogger(__name__)

FINDER = "person_finder"
KEYPOINTS = "keypoints"


def _row(engine: str, model: str, samples: list[float]) -> BenchRow:
    return BenchRow(engine=engine, model=model, backend="mediapipe:cpu", device="cpu", batch=1,
                    sequence=None, **sample_stats(samples, 1), random_weights=False)


def bench_mediapipe(settings: BenchSettings, width: int = 640, height: int = 480,
                    fps: float = 10.0) -> list[BenchRow]:
    """Time MediaPipe Pose on demo frames and Holistic on the person crops it finds."""
    try:
        from engines.adapters.keypoints import MediaPipeKeypoints
        from engines.adapters.pose_detector import MediaPipePersonDetector
    except ImportError as error:
        log.warning("skipping MediaPipe: %s", error)
        return []
    clip = DemoClip(width, height)
    frames = [clip.frame(i / fps) for i in range(int(4 * fps))]
    pose = MediaPipePersonDetector()
    try:
        cycle = itertools.cycle(frames)
        rows = [_row(FINDER, MediaPipePersonDetector.name,
                     time_case(lambda: pose.detect([next(cycle)]), settings))]
        crops = []
        for frame in frames:
            found = pose.detect([frame])[0]
            if len(found.xyxy):
                crop, offset = crop_with_margin(frame, np.asarray(found.xyxy[0]))
                crops.append((np.ascontiguousarray(crop), offset))
    finally:
        pose.close()
    if not crops:
        log.warning("MediaPipe Pose found nobody in the demo clip; keypoints not timed")
        return rows
    with MediaPipeKeypoints() as holistic:
        crop_cycle = itertools.cycle(crops)

        def keypoints() -> None:
            crop, offset = next(crop_cycle)
            holistic.process(crop, offset)

        rows.append(_row(KEYPOINTS, "mediapipe-holistic", time_case(keypoints, settings)))
    return rows


HOLISTIC_BACKENDS = ("onnxruntime", "tflite", "torch", "tensorrt")
"""Bench variants :class:`EngineKeypoints` can take as its ``backend`` (the onnxruntime
provider variants are the engines' own rows)."""


def bench_holistic_engines(engine_dir: Any, settings: BenchSettings,
                           stream_counts: tuple[int, ...] = (1, 4), width: int = 640,
                           height: int = 480, fps: float = 10.0) -> list[BenchRow]:
    """Holistic on the keypoint engines (:class:`EngineKeypoints`), per backend, for one
    call over ``n`` streams of the demo clip (one person each, tracked: the detector runs
    only at the start): the figure to set against MediaPipe Holistic's ``keypoints`` row,
    which is what ``keypoints: auto`` weighs. ``batch`` is the number of persons per call.
    """
    from engines.adapters.holistic import EngineKeypoints
    from engines.manifest import EngineRefused

    clip = DemoClip(width, height)
    frames = [clip.frame(i / fps) for i in range(int(4 * fps))]
    variants = [v for v in (settings.backends or HOLISTIC_BACKENDS) if v in HOLISTIC_BACKENDS]
    rows = []
    for variant in variants:
        try:
            estimator = EngineKeypoints.from_engine_dir(engine_dir, backend=variant,
                                                        threads=settings.threads)
        except (EngineRefused, RuntimeError, ImportError, ValueError) as error:
            log.warning("skipping holistic engines on %s: %s", variant,
                        str(error).splitlines()[0])
            continue
        with estimator:
            for streams in stream_counts:
                cycle = itertools.cycle(range(len(frames)))

                def step(streams: int = streams, cycle: Any = cycle,
                         estimator: EngineKeypoints = estimator) -> None:
                    index = next(cycle)
                    estimator.process([(f"s{k}", frames[(index + 7 * k) % len(frames)])
                                       for k in range(streams)])

                samples = time_case(step, settings)
                rows.append(BenchRow(engine=KEYPOINTS, model="holistic-engines",
                                     backend=estimator.backend, device=estimator.device,
                                     batch=streams, sequence=None,
                                     **sample_stats(samples, streams), random_weights=False))
    return rows
