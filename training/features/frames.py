"""One video's sampled frames -> time-stamped image embeddings and keypoints.

Frames arrive in time order, each marked with what it is due for (:class:`Due`: an image
embedding at the image rate, keypoints at the keypoint rate). They go through the live
pipeline's perception core in batches of ``batch_size`` (one call; the video is one
stream of it), which gives each frame's persons, tracked and most prominent first, with
their crops, exactly as the live detect stage does; the first person is the video's.
Crops due for an embedding go through the image embedder as one batch; keypoints come from
the core when it makes them, else from MediaPipe on the crop (one video-mode graph per
tracked person, as the live features stage runs it).

A frame with no person:

- ``NoPerson.SKIP`` (the default): no image embedding at that time (the window masks the
  slot) and an all-zero keypoint frame, so the keypoint timeline stays regular and says
  "nobody here" (windows mask all-zero frames too), as iMiGUE's own skeletons do.
- ``NoPerson.FULL_FRAME``: the whole frame stands in for the crop. For single-speaker
  video (interviews) this keeps features flowing when the detector misses, and it makes
  extraction useful with a random-weights detector (which finds nobody): MediaPipe's
  real models still find the keypoints (with ``keypoints: engines`` the core already
  looked at the frame and found nobody: its keypoints are all zero).

Only the embeddings and keypoints are kept, never the frames, so a 20-minute video needs
no more memory than a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

import numpy as np

from engines.adapters.openpose_layout import DTYPE, NUM_CHANNELS, NUM_KEYPOINTS, empty_keypoints
from engines.adapters.perception import PerceptionFrame
from engines.adapters.rates import RateSampler
from training.features.perception import CROP_MARGIN, Perception
from training.features.video import SampledFrame

__all__ = ["CROP_MARGIN", "Due", "FrameFeatures", "NoPerson", "due_selector"]

GENERATION = 0
"""A video is one session of its stream."""
NOBODY = -1
"""The track id under which a FULL_FRAME stand-in's keypoints are kept."""


class NoPerson(StrEnum):
    """What a frame in which the detector finds nobody contributes."""

    SKIP = "skip"
    FULL_FRAME = "full-frame"


@dataclass(frozen=True)
class Due:
    """What a sampled frame is wanted for."""

    image: bool
    keypoints: bool


def due_selector(image_rate: float, keypoint_rate: float | None) -> Callable[[float], Due | None]:
    """A per-frame selector for :meth:`VideoReader.frames`: which rates want this frame.

    ``keypoint_rate`` None: keypoints come from elsewhere (a skeleton folder), so only image
    frames are due. Both samplers see every frame, so each keeps its own slots.
    """
    image = RateSampler(image_rate)
    keypoints = RateSampler(keypoint_rate) if keypoint_rate is not None else None

    def select(time: float) -> Due | None:
        want_image = image.take(time)
        want_keypoints = keypoints.take(time) if keypoints is not None else False
        return Due(want_image, want_keypoints) if want_image or want_keypoints else None

    return select


class FrameFeatures:
    """Accumulates one video's features from its sampled frames. Feed :meth:`add`, then
    :meth:`finish`, then :meth:`close` (or use ``with``); one instance per video, whose
    ``stream`` id keys the video's state (tracks, keypoint graphs) in ``perception``."""

    def __init__(self, perception: Perception, *, stream: str = "video",
                 batch_size: int = 16, no_person: NoPerson = NoPerson.SKIP) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size is {batch_size}; it must be at least 1")
        self.perception = perception
        self.stream = stream
        self.batch_size = batch_size
        self.no_person = NoPerson(no_person)
        self.person_frames = 0
        self.no_person_frames = 0
        self.timeline: list[tuple[float, int, tuple[float, float, float, float]]] = []
        """``(time, track_id, box)`` of the person each frame's features are of."""
        self._pending: list[SampledFrame[Due]] = []
        self._image_times: list[float] = []
        self._image: list[np.ndarray] = []
        self._keypoint_times: list[float] = []
        self._keypoints: list[np.ndarray] = []

    def add(self, frame: SampledFrame[Due]) -> None:
        """Queue one sampled frame; a full batch is processed at once."""
        self._pending.append(frame)
        if len(self._pending) >= self.batch_size:
            self._flush()

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(image_times, image, keypoint_times, keypoints)`` of everything added."""
        self._flush()
        dim = self.perception.image_embedder.dim
        image = np.concatenate(self._image) if self._image else np.zeros((0, dim), np.float32)
        keypoints = (np.stack(self._keypoints) if self._keypoints
                     else np.zeros((0, NUM_KEYPOINTS, NUM_CHANNELS), DTYPE))
        return (np.asarray(self._image_times, np.float64), image,
                np.asarray(self._keypoint_times, np.float64), keypoints)

    def _flush(self) -> None:
        if not self._pending:
            return
        frames, self._pending = self._pending, []
        found = self.perception.core.perceive(
            [PerceptionFrame(self.stream, GENERATION, f.image) for f in frames])
        crops: list[np.ndarray] = []
        for frame, persons in zip(frames, found, strict=True):
            crop = self._crop(frame, persons)
            if frame.want.keypoints:
                self._keypoint_times.append(frame.time)
                self._keypoints.append(self._keypoints_of(frame, persons))
            if frame.want.image and crop is not None:
                crops.append(crop)
                self._image_times.append(frame.time)
        if crops:
            self._image.append(self.perception.image_embedder.embed(crops).cls)

    def _crop(self, frame: SampledFrame[Due], persons: list) -> np.ndarray | None:
        """The first person's crop, the whole frame (FULL_FRAME), or None (nobody)."""
        if persons:
            self.person_frames += 1
            box = tuple(float(v) for v in persons[0].xyxy)
            self.timeline.append((frame.time, persons[0].track_id, box))
            return persons[0].crop
        self.no_person_frames += 1
        return frame.image if self.no_person is NoPerson.FULL_FRAME else None

    def _keypoints_of(self, frame: SampledFrame[Due], persons: list) -> np.ndarray:
        keypoints = self.perception.keypoints
        if persons:
            person = persons[0]
            return keypoints.keypoints((self.stream, GENERATION, person.track_id),
                                       person.crop, person.offset, person.keypoints)
        if self.no_person is NoPerson.FULL_FRAME:
            return keypoints.whole_frame((self.stream, GENERATION, NOBODY), frame.image)
        return empty_keypoints()

    def close(self) -> None:
        """Forget the video's state in the shared core and keypoint strategy."""
        self.perception.core.release(self.stream)
        self.perception.keypoints.release(self.stream)

    def __enter__(self) -> FrameFeatures:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
