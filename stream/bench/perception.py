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

import numpy as np

from engines.adapters.detector import crop_with_margin
from stream.bench.engines import BenchRow, BenchSettings, sample_stats, time_case
from stream.demo import DemoClip

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
