"""Person finders: the strategies that give person boxes for frames of named streams.

Two exist. :class:`EngineFinder` runs the profile's YOLO engine once over all frames (it
batches). :class:`PerStreamFinder` holds one stateful single-stream detector per stream
(MediaPipe Pose in video mode: real weights inside the wheel, one person per frame), the
fallback when the YOLO engine was built with random weights and would find nobody.
:func:`make_finder` makes that choice, the same way for the live pipeline, training's
feature extraction and the benchmark.

Example:
    >>> finder = make_finder("auto", Path("artifacts/engines/edge"), "auto", 1)  # doctest: +SKIP
    >>> finder.find(["cam0"], [frame])[0].xyxy  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engines.runtime import BackendChoice

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from engines.adapters.detector import PersonDetector
from engines.adapters.records import Detections

log = logging.getLogger(__name__)

DetectorChoice = Literal["auto", "yolo", "mediapipe"]


class PersonFinder(Protocol):
    """Finds persons in frames of named streams."""

    name: str
    identity: str
    """What exactly runs (the ONNX sha256, the library version), for feature records."""
    random_weights: bool
    device: str
    """Where it computes (``cpu``, ``cuda:0``): sets a stage's automatic batch size."""

    def find(self, streams: Sequence[str], frames: Sequence[np.ndarray]) -> list[Detections]:
        """One :class:`Detections` per frame (``streams[i]`` is frame ``i``'s stream)."""
        ...

    def warm_up(self, streams: Sequence[str], frame_hw: tuple[int, int]) -> None:
        """Load what the first frame of each of ``streams`` would otherwise wait for."""
        ...

    def release(self, stream: str) -> None:
        """Forget ``stream`` (it ended): state stays bounded by the live streams."""
        ...

    def close(self) -> None:
        """Release what the finder holds; it cannot find afterwards."""
        ...


class EngineFinder:
    """The profile's YOLO engine, one batched call for all frames (stateless per stream)."""

    def __init__(self, detector: PersonDetector) -> None:
        self.detector = detector
        self.name = f"yolo:{detector.manifest.model}"
        self.identity = detector.manifest.onnx_sha256
        self.random_weights = detector.random_weights
        self.device = detector.engine.device

    def find(self, streams: Sequence[str], frames: Sequence[np.ndarray]) -> list[Detections]:
        return self.detector.detect(frames)

    def warm_up(self, streams: Sequence[str], frame_hw: tuple[int, int]) -> None:
        """Nothing per stream: the engine was loaded with the finder."""

    def release(self, stream: str) -> None:
        """Nothing is kept per stream."""

    def close(self) -> None:
        self.detector.close()


class PerStreamFinder:
    """A stateful single-stream detector (made by ``factory``) per stream."""

    def __init__(self, factory: Callable[[], Any], name: str, identity: str = "") -> None:
        self.factory = factory
        self.name = name
        self.identity = identity or name
        self.random_weights = False
        self.device = "cpu"  # MediaPipe's Python API runs on the CPU
        self._by_stream: dict[str, Any] = {}

    def warm_up(self, streams: Sequence[str], frame_hw: tuple[int, int]) -> None:
        """Create and run each stream's detector once, so the first live frame is not the
        one that pays for loading models (over a second for MediaPipe)."""
        blank = np.zeros((*frame_hw, 3), np.uint8)
        for stream in streams:
            self._detector(stream).detect([blank])

    def _detector(self, stream: str) -> Any:
        if stream not in self._by_stream:
            self._by_stream[stream] = self.factory()
        return self._by_stream[stream]

    def release(self, stream: str) -> None:
        """Close ``stream``'s detector (its stream ended); a later frame makes a new one."""
        detector = self._by_stream.pop(stream, None)
        close = getattr(detector, "close", None)
        if close is not None:
            close()

    def find(self, streams: Sequence[str], frames: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for stream, frame in zip(streams, frames, strict=True):
            out.extend(self._detector(stream).detect([frame]))
        return out

    def close(self) -> None:
        for stream in list(self._by_stream):
            self.release(stream)


def make_finder(detector: DetectorChoice, engine_dir: Path, backend: BackendChoice,
                threads: int) -> PersonFinder:
    """The finder ``detector`` names: ``yolo`` (the profile's engine), ``mediapipe``
    (BlazePose per stream) or ``auto``: yolo unless its engine has random weights (it would
    find nobody), then MediaPipe Pose, so a fresh machine still finds the person."""
    if detector in ("auto", "yolo"):
        from engines.manifest import read_manifest
        from engines.runtime import load_engine

        manifest = read_manifest(engine_dir, "detector")
        if detector == "yolo" or not manifest.random_weights:
            engine = load_engine(engine_dir, "detector", backend, threads=threads,
                                 manifest=manifest)
            return EngineFinder(PersonDetector(engine, manifest))
        log.warning("detector engine %s has random weights (it finds nobody); using "
                    "MediaPipe Pose (real weights, one person per frame) instead",
                    manifest.model)
    from engines.adapters.keypoints import mediapipe_version
    from engines.adapters.pose_detector import MediaPipePersonDetector

    return PerStreamFinder(MediaPipePersonDetector, MediaPipePersonDetector.name,
                           f"{mediapipe_version()} pose")
