"""One video's sampled frames -> time-stamped image embeddings and keypoints.

Frames arrive in time order, each marked with what it is due for (:class:`Due`: an image
embedding at the image rate, keypoints at the keypoint rate). They are detected in
batches of ``batch_size`` (one engine call); the main person is chosen frame by frame with
:class:`MainPersonSelector` and cropped with :func:`crop_with_margin`, exactly as the live
detect stage does; crops due for an embedding go through the image embedder as one batch,
and crops due for keypoints through MediaPipe (one tracker per video).

A frame with no person:

- ``NoPerson.SKIP`` (the default): no image embedding at that time (the window masks the
  slot) and an all-zero keypoint frame, so the keypoint timeline stays regular and says
  "nobody here" (windows mask all-zero frames too), as iMiGUE's own skeletons do.
- ``NoPerson.FULL_FRAME``: the whole frame stands in for the crop. For single-speaker
  video (interviews) this keeps features flowing when the detector misses, and it makes
  extraction useful with a random-weights detector (which finds nobody): MediaPipe's
  real models still find the keypoints.

Only the embeddings and keypoints are kept, never the frames, so a 20-minute video needs
no more memory than a batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from engines.adapters.detector import MainPersonSelector, crop_with_margin
from engines.adapters.keypoints import MediaPipeKeypoints
from engines.adapters.openpose_layout import DTYPE, NUM_CHANNELS, NUM_KEYPOINTS, empty_keypoints
from engines.adapters.rates import RateSampler
from training.features.perception import Perception
from training.features.video import SampledFrame

CROP_MARGIN = 0.15
"""Fraction of the box added on each side; the live detect stage's default margin."""


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
    :meth:`finish`; one instance per video (the selector and tracker carry state)."""

    def __init__(self, perception: Perception, *, batch_size: int = 16,
                 no_person: NoPerson = NoPerson.SKIP, crop_margin: float = CROP_MARGIN,
                 keypoints: MediaPipeKeypoints | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size is {batch_size}; it must be at least 1")
        self.perception = perception
        self.batch_size = batch_size
        self.no_person = NoPerson(no_person)
        self.crop_margin = crop_margin
        self.keypoints = keypoints
        self.selector = MainPersonSelector()
        self.person_frames = 0
        self.no_person_frames = 0
        self._pending: list[SampledFrame[Due]] = []
        self._image_times: list[float] = []
        self._image: list[np.ndarray] = []
        self._keypoint_times: list[float] = []
        self._keypoints: list[np.ndarray] = []

    def add(self, frame: SampledFrame[Due]) -> None:
        """Queue one sampled frame; a full batch is processed at once."""
        if frame.want.keypoints and self.keypoints is None:
            raise ValueError("a frame is due for keypoints but no keypoint tracker was given")
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
        found = self.perception.detector.detect([f.image for f in frames])
        crops: list[np.ndarray] = []
        for frame, detections in zip(frames, found, strict=True):
            index = self.selector.select(detections, frame.image.shape)
            crop, offset = self._crop(frame.image, None if index is None
                                      else detections.xyxy[index])
            if frame.want.keypoints and self.keypoints is not None:
                self._keypoint_times.append(frame.time)
                self._keypoints.append(empty_keypoints() if crop is None
                                       else self.keypoints.process(crop, offset))
            if frame.want.image and crop is not None:
                crops.append(crop)
                self._image_times.append(frame.time)
        if crops:
            self._image.append(self.perception.image_embedder.embed(crops).cls)

    def _crop(self, image: np.ndarray,
              box: np.ndarray | None) -> tuple[np.ndarray | None, tuple[int, int]]:
        """The person crop and its offset, the whole frame (FULL_FRAME), or None (nobody)."""
        if box is not None:
            crop, offset = crop_with_margin(image, box, self.crop_margin)
            if crop.size:
                self.person_frames += 1
                return crop, offset
        self.no_person_frames += 1
        if self.no_person is NoPerson.FULL_FRAME:
            return image, (0, 0)
        return None, (0, 0)
