"""Perception core (b): MediaPipe Holistic on batched engines finds, tracks and poses persons.

:class:`engines.adapters.holistic.EngineKeypoints` detects people, keeps a stable track id
per person and stream (its own ROI tracking, MediaPipe's rules), and runs pose, face, iris
and hands over every person of every stream in one engine call per model. This core only
adapts it to :class:`PerceptionCore`: prominence order, the crop (``crop_with_margin`` of
the estimator's box: the crop the image embedder sees), and a fresh start for a stream
whose generation changed. Keypoints come with every :class:`Percept`.

Example:
    >>> core = EstimatorCore(EngineKeypoints.from_engine_dir(engine_dir))  # doctest: +SKIP
    >>> core.perceive([PerceptionFrame("cam0", 0, frame)])[0][0].keypoints.shape  # doctest: +SKIP
    (137, 3)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from engines.adapters.detector import crop_with_margin, prominence
from engines.adapters.holistic import EngineKeypoints, PersonKeypoints
from engines.adapters.perception.records import KeypointSource, Percept, PerceptionFrame
from engines.adapters.perception.tracked import CENTRE_WEIGHT

NAME = "holistic-engines"


class EstimatorCore:
    """Persons, ids and keypoints from an :class:`EngineKeypoints` (see the module docstring).

    ``device``: where its engines run; ``engine_ids``: engine name -> ONNX sha256 (for
    :meth:`identities`). ``max_persons`` and the crop margin are the estimator's own, so
    its keypoints' crop and the image crop agree.
    """

    keypoints = KeypointSource.ENGINES
    name = NAME

    def __init__(self, estimator: EngineKeypoints, *, device: str = "cpu",
                 engine_ids: Mapping[str, str] | None = None) -> None:
        self.estimator = estimator
        self.max_persons = estimator.max_persons
        self.crop_margin = estimator.crop_margin
        self.random_weights = estimator.random_weights
        self.device = device
        self._engine_ids = dict(engine_ids or {})
        self._generations: dict[str, int] = {}

    def perceive(self, frames: Sequence[PerceptionFrame]) -> list[list[Percept]]:
        out: list[list[Percept]] = []
        for fresh, run in self._runs(frames):
            for stream in fresh:
                self.estimator.reset(stream)
            people = self.estimator.process([(f.stream, f.image) for f in run])
            out.extend(self._percepts(frame.image, found)
                       for frame, found in zip(run, people, strict=True))
        return out

    def _runs(self, frames: Sequence[PerceptionFrame]) -> list[tuple[list[str], list]]:
        """``frames`` cut where a stream starts a new generation, each run with the streams
        to reset before it, so no frame sees the tracks of its stream's previous session."""
        runs: list[tuple[list[str], list[PerceptionFrame]]] = [([], [])]
        for frame in frames:
            if self._generations.get(frame.stream) != frame.generation:
                if any(f.stream == frame.stream for f in runs[-1][1]):
                    runs.append(([], []))
                runs[-1][0].append(frame.stream)
                self._generations[frame.stream] = frame.generation
            runs[-1][1].append(frame)
        return [run for run in runs if run[1]]

    def _percepts(self, image: np.ndarray, people: list[PersonKeypoints]) -> list[Percept]:
        if not people:
            return []
        boxes = np.stack([p.xyxy for p in people])
        order = np.argsort(-prominence(boxes, image.shape[:2], CENTRE_WEIGHT), kind="stable")
        percepts = []
        for index in order[:self.max_persons]:
            person = people[index]
            crop, offset = crop_with_margin(image, person.xyxy, self.crop_margin)
            if crop.size:
                percepts.append(Percept(person.track_id, float(person.score), person.xyxy,
                                        crop, offset, person.keypoints))
        return percepts

    def warm_up(self, streams: Sequence[str], frame_hw: tuple[int, int]) -> None:
        """One blank frame through the person detector (engines load on first use), on a
        stream of its own that is forgotten at once."""
        scratch = "\0warm-up"
        self.estimator.process([(scratch, np.zeros((*frame_hw, 3), np.uint8))])
        self.estimator.reset(scratch)

    def release(self, stream: str) -> None:
        self.estimator.reset(stream)
        self._generations.pop(stream, None)

    def identities(self) -> dict[str, str]:
        return dict(self._engine_ids)

    def close(self) -> None:
        self.estimator.close()
