"""Perception core (a): a person finder, ByteTrack per stream, prominence order, crops.

The detector strategy (:mod:`engines.adapters.finders`: the YOLO engine over all frames in
one call, or MediaPipe Pose per stream) finds boxes; each stream's ByteTrack tracker (reset
when the stream's generation changes) gives them stable ids; persons are ordered by
:func:`prominence` (area times centrality), the first ``max_persons`` kept and cropped with
:func:`crop_with_margin`. Keypoints are not made here: MediaPipe Holistic runs later on
each person's crop (:mod:`engines.adapters.perception.crop_keypoints`).

Example:
    >>> finder = make_finder("auto", engine_dir, "auto", 1)  # doctest: +SKIP
    >>> core = TrackedCore(finder, frame_rate=10.0)  # doctest: +SKIP
    >>> core.perceive([PerceptionFrame("cam0", 0, frame)])[0][0].track_id  # doctest: +SKIP
    1
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from engines.adapters.detector import crop_with_margin, prominence
from engines.adapters.finders import PersonFinder
from engines.adapters.perception.records import (
    KeypointSource,
    Percept,
    PerceptionFrame,
)
from engines.adapters.tracking import PersonTracker, TrackedPerson

CENTRE_WEIGHT = 0.5
"""How much being off-centre lowers a person's prominence (see :func:`prominence`)."""


class TrackedCore:
    """Detector + ByteTrack + prominence + crop (see the module docstring).

    ``frame_rate``: frames per second each stream delivers (scales how long ByteTrack keeps
    a lost track). ``tracker_factory`` makes one tracker per stream (a test may pass its own).
    """

    keypoints = KeypointSource.MEDIAPIPE

    def __init__(self, finder: PersonFinder, *, frame_rate: float, max_persons: int = 4,
                 crop_margin: float = 0.15,
                 tracker_factory: Callable[[float], PersonTracker] = PersonTracker) -> None:
        if max_persons < 1:
            raise ValueError(f"max_persons is {max_persons}; it must be at least 1")
        self.finder = finder
        self.frame_rate = frame_rate
        self.max_persons = max_persons
        self.crop_margin = crop_margin
        self.tracker_factory = tracker_factory
        self.name = finder.name
        self.random_weights = finder.random_weights
        self.device = finder.device
        self._trackers: dict[str, tuple[int, PersonTracker]] = {}

    def _tracker(self, stream: str, generation: int) -> PersonTracker:
        current = self._trackers.get(stream)
        if current is None or current[0] != generation:
            current = (generation, self.tracker_factory(self.frame_rate))
            self._trackers[stream] = current
        return current[1]

    def perceive(self, frames: Sequence[PerceptionFrame]) -> list[list[Percept]]:
        found = self.finder.find([f.stream for f in frames], [f.image for f in frames])
        out = []
        for frame, detections in zip(frames, found, strict=True):
            tracked = self._tracker(frame.stream, frame.generation).update(detections)
            out.append(self._percepts(frame.image, self._ordered(tracked, frame.image)))
        return out

    def _ordered(self, tracked: list[TrackedPerson], image: np.ndarray) -> list[TrackedPerson]:
        """The most prominent ``max_persons`` persons, most prominent first."""
        if not tracked:
            return []
        boxes = np.stack([p.xyxy for p in tracked])
        order = np.argsort(-prominence(boxes, image.shape[:2], CENTRE_WEIGHT))
        return [tracked[i] for i in order[:self.max_persons]]

    def _percepts(self, image: np.ndarray, tracked: list[TrackedPerson]) -> list[Percept]:
        percepts = []
        for person in tracked:
            crop, offset = crop_with_margin(image, person.xyxy, self.crop_margin)
            if crop.size:  # a box wholly outside the frame has no crop: not a person here
                percepts.append(Percept(int(person.track_id), float(person.score),
                                        person.xyxy, crop, offset))
        return percepts

    def warm_up(self, streams: Sequence[str], frame_hw: tuple[int, int]) -> None:
        self.finder.warm_up(streams, frame_hw)

    def release(self, stream: str) -> None:
        self._trackers.pop(stream, None)
        self.finder.release(stream)

    def identities(self) -> dict[str, str]:
        return {"detector": self.finder.identity}

    def close(self) -> None:
        self._trackers.clear()
        self.finder.close()
