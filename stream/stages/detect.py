"""Detect: person boxes for a batch of frames from all streams, a track id per person, crops.

Frames of every stream are detected in one engine call (YOLO batches; MediaPipe Pose, the
no-download fallback, runs one frame at a time with one instance per stream). Each stream
has its own ByteTrack tracker, reset when its session generation changes. Up to
``max_persons`` persons per frame go on, most prominent first, each as a crop (with a
margin) plus its box; the full frame stays here. A frame with nobody still goes on (with no
crops) so sequence numbers stay contiguous downstream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from engines.adapters.detector import PersonDetector, crop_with_margin, prominence
from engines.adapters.records import Detections
from stream.config import DetectConfig
from stream.stage import BatchStage
from stream.tracking import PersonTracker
from stream.wire import MAX_DIM, Message, Person, WireError

log = logging.getLogger(__name__)


class PersonFinder(Protocol):
    """Finds persons in frames of named streams (strategy: YOLO engine or MediaPipe)."""

    name: str
    random_weights: bool
    device: str
    """Where it computes (``cpu``, ``cuda:0``): sets the stage's automatic batch size."""

    def find(self, streams: Sequence[str], frames: Sequence[np.ndarray]) -> list[Detections]:
        ...


class EngineFinder:
    """The profile's YOLO engine, one batched call for all frames."""

    def __init__(self, detector: PersonDetector) -> None:
        self.detector = detector
        self.name = f"yolo:{detector.manifest.model}"
        self.random_weights = detector.random_weights
        self.device = detector.engine.device

    def find(self, streams: Sequence[str], frames: Sequence[np.ndarray]) -> list[Detections]:
        return self.detector.detect(frames)


class PerStreamFinder:
    """A stateful single-stream detector (MediaPipe Pose in video mode) per stream."""

    def __init__(self, factory: Callable[[], Any], name: str) -> None:
        self.factory = factory
        self.name = name
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


class DetectStage(BatchStage):
    name = "detect"

    def __init__(self, finder: PersonFinder, config: DetectConfig, frame_rate: float) -> None:
        self.finder = finder
        self.config = config
        self.frame_rate = frame_rate
        self._trackers: dict[str, tuple[int, PersonTracker]] = {}
        self.persons_seen = 0

    def _tracker(self, stream: str, generation: int) -> PersonTracker:
        current = self._trackers.get(stream)
        if current is None or current[0] != generation:
            current = (generation, PersonTracker(self.frame_rate))
            self._trackers[stream] = current
        return current[1]

    def admit(self, message: Message) -> None:
        """A frame must be one BGR image (``frame``: uint8, H x W x 3, at least 16 x 16)."""
        frame = message.arrays.get("frame")
        if frame is None or set(message.arrays) != {"frame"}:
            raise WireError("a frame message carries exactly one array, 'frame'", "arrays")
        if (frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3
                or not 16 <= min(frame.shape[:2]) <= max(frame.shape[:2]) <= MAX_DIM):
            raise WireError(f"frame is {frame.dtype} {frame.shape}; expected uint8 H x W x 3",
                            "arrays")

    def process(self, batch: list[Message]) -> list[Message]:
        t_in = time.monotonic()
        frames = [m.arrays["frame"] for m in batch]
        found = self.finder.find([m.header.stream for m in batch], frames)
        out = []
        for message, frame, detections in zip(batch, frames, found, strict=True):
            tracked = self._tracker(message.header.stream, message.header.generation).update(
                detections)
            if tracked:
                boxes = np.stack([p.xyxy for p in tracked])
                order = np.argsort(-prominence(boxes, frame.shape[:2], 0.5))
                tracked = [tracked[i] for i in order[:self.config.max_persons]]
            persons, arrays = [], {}
            for person in tracked:
                crop, offset = crop_with_margin(frame, person.xyxy, self.config.crop_margin)
                if crop.size == 0:
                    continue
                arrays[f"crop{len(persons)}"] = np.ascontiguousarray(crop)
                persons.append(Person(
                    track_id=int(person.track_id),
                    score=min(1.0, max(0.0, float(person.score))),
                    box=tuple(round(float(v), 1) for v in person.xyxy),
                    offset=(int(offset[0]), int(offset[1]))))
            self.persons_seen += len(persons)
            random_weights = set(message.header.meta.random_weights)
            if self.finder.random_weights:
                random_weights.add("detector")
            header = message.header.with_meta(
                persons=tuple(persons), frame_hw=(int(frame.shape[0]), int(frame.shape[1])),
                detector=self.finder.name, random_weights=tuple(sorted(random_weights)),
            ).stamped(self.name, t_in, time.monotonic(), message.arrived)
            out.append(Message(header, arrays))
        return out

    def on_control(self, message: Message) -> list[Message]:
        """An end of stream releases the stream's tracker (and its detector when it has
        one of its own), so state stays bounded by the streams that are live."""
        stream = message.header.stream
        self._trackers.pop(stream, None)
        release = getattr(self.finder, "release", None)
        if release is not None:
            release(stream)
        return [message]

    def extra_status(self) -> dict[str, Any]:
        return {"detector": self.finder.name, "persons": self.persons_seen}


def make_finder(config: DetectConfig, engine_dir: Path, backend: str,
                threads: int) -> PersonFinder:
    """The detector strategy ``config.detector`` names; ``auto`` avoids random weights."""
    if config.detector in ("auto", "yolo"):
        from engines.manifest import read_manifest
        from engines.runtime import load_engine

        manifest = read_manifest(engine_dir, "detector")
        if config.detector == "yolo" or not manifest.random_weights:
            engine = load_engine(engine_dir, "detector", backend, threads=threads,
                                 manifest=manifest)
            return EngineFinder(PersonDetector(engine, manifest))
        log.warning("detector engine %s has random weights (it finds nobody); using "
                    "MediaPipe Pose (real weights, one person per frame) instead",
                    manifest.model)
    from engines.adapters.pose_detector import MediaPipePersonDetector

    return PerStreamFinder(MediaPipePersonDetector, MediaPipePersonDetector.name)
