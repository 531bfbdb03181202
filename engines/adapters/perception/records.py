"""The perception core's contract: frames in, ordered persons out, one frozen record each.

Everything that turns video into per-person features (the live ``detect`` stage, training's
feature extraction, ``hidemo bench baseline``) calls one :class:`PerceptionCore`, so the
same frames give the same persons, crops and keypoints everywhere (no train/serve skew).
Which persons (most prominent first, at most ``max_persons``), their track ids, crops and,
where the core makes them, keypoints: all decided here, never by the caller.

Example:
    >>> frame = PerceptionFrame("cam0", 0, np.zeros((240, 320, 3), np.uint8))
    >>> core.perceive([frame])[0]  # doctest: +SKIP
    [Percept(track_id=1, ...)]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple, Protocol

import numpy as np

from engines.adapters.openpose_layout import DTYPE, empty_keypoints

KEYPOINTS_SHAPE: tuple[int, int] = empty_keypoints().shape


class KeypointSource(StrEnum):
    """Where a person's keypoints come from.

    ``MEDIAPIPE``: MediaPipe Holistic on the person's crop, one graph per (stream, person),
    after the core (the core gives no keypoints). ``ENGINES``: the core itself, Holistic
    rebuilt on batched engines (:class:`engines.adapters.holistic.EngineKeypoints`).
    """

    MEDIAPIPE = "mediapipe"
    ENGINES = "engines"


@dataclass(frozen=True)
class PerceptionFrame:
    """One frame of one stream. ``generation`` changes when the stream's source was
    reopened: per-stream state (tracks) starts afresh."""

    stream: str
    generation: int
    image: np.ndarray
    """(H, W, 3) uint8 BGR."""


@dataclass(frozen=True, eq=False)
class Percept:
    """One person in one frame.

    ``xyxy`` (4,) float32 box in frame pixels; ``crop`` the person's (H, W, 3) uint8 crop
    (the box plus the core's margin, clipped to the frame) whose top-left corner in the frame
    is ``offset``; ``keypoints`` (137, 3) float32 OpenPose layout in frame pixels, or None
    when the core leaves keypoints to MediaPipe on the crop. Arrays are read-only.
    """

    track_id: int
    score: float
    xyxy: np.ndarray
    crop: np.ndarray
    offset: tuple[int, int]
    keypoints: np.ndarray | None = None

    def __post_init__(self) -> None:
        xyxy = np.ascontiguousarray(self.xyxy, np.float32).reshape(4).view()
        xyxy.setflags(write=False)
        object.__setattr__(self, "xyxy", xyxy)
        crop = np.asarray(self.crop)
        if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3 or not crop.size:
            raise ValueError(f"Percept.crop is {crop.dtype} {crop.shape}; expected a "
                             "non-empty (H, W, 3) uint8 image")
        object.__setattr__(self, "offset", (int(self.offset[0]), int(self.offset[1])))
        if self.keypoints is not None:
            keypoints = np.ascontiguousarray(self.keypoints, DTYPE).view()
            if keypoints.shape != KEYPOINTS_SHAPE:
                raise ValueError(f"Percept.keypoints has shape {keypoints.shape}; expected "
                                 f"{KEYPOINTS_SHAPE}")
            keypoints.setflags(write=False)
            object.__setattr__(self, "keypoints", keypoints)


class PersonOnPicture(NamedTuple):
    """A :class:`Percept` drawn on a scaled copy of its frame (a preview, a recording):
    track id, score clamped to [0, 1], box in the copy's pixels, and the row of the
    keypoint array that is this person's (-1: none)."""

    track_id: int
    score: float
    box: tuple[float, float, float, float]
    keypoints: int


def persons_on_picture(percepts: Sequence[Percept], scale: float
                       ) -> tuple[list[PersonOnPicture], np.ndarray | None]:
    """Each percept scaled by ``scale`` (boxes rounded to 0.1 px) and the stacked
    (N, 137, 3) float32 keypoints of those that have them (x and y scaled), or None."""
    persons, rows = [], []
    for percept in percepts:
        row = -1
        if percept.keypoints is not None:
            row = len(rows)
            points = np.array(percept.keypoints, np.float32)
            points[:, :2] *= scale
            rows.append(points)
        box = tuple(round(float(v) * scale, 1) for v in percept.xyxy)
        persons.append(PersonOnPicture(int(percept.track_id),
                                       min(1.0, max(0.0, float(percept.score))),
                                       box, row))  # type: ignore[arg-type]
    return persons, (np.stack(rows) if rows else None)


class PerceptionCore(Protocol):
    """Frames of several streams -> per frame its persons, most prominent first.

    Per-stream state (trackers) is keyed by the stream id and starts afresh when a frame
    brings a new ``generation``; frames of one stream must come in time order.
    """

    name: str
    """What finds the persons (``yolo:yolo11n``, ``mediapipe-pose``, ``holistic-engines``)."""
    keypoints: KeypointSource
    """Whether :class:`Percept` records carry keypoints (``ENGINES``) or not."""
    random_weights: bool
    device: str
    """Where the core's models compute (``cpu``, ``cuda:0``)."""

    def perceive(self, frames: Sequence[PerceptionFrame]) -> list[list[Percept]]:
        """One list per frame: at most ``max_persons`` persons, most prominent first."""
        ...

    def warm_up(self, streams: Sequence[str], frame_hw: tuple[int, int]) -> None:
        """Load models now, so the first live frame of ``streams`` does not wait for them."""
        ...

    def release(self, stream: str) -> None:
        """Forget ``stream`` (it ended); a later frame of it starts afresh."""
        ...

    def identities(self) -> dict[str, str]:
        """Model name -> identity (ONNX sha256, library version) of what the core runs, for
        records that must say what made the features (training's feature store)."""
        ...

    def close(self) -> None:
        """Release the models; the core cannot perceive afterwards."""
        ...
