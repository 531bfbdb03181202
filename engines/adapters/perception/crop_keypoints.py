"""Keypoints per (stream, generation, person): the second half of perception, two strategies.

A core that gives no keypoints (:class:`KeypointSource.MEDIAPIPE`) leaves them to
:class:`MediaPipeCropKeypoints`: MediaPipe Holistic in video mode on each person's crop,
one graph per person (video mode follows one person from frame to frame). A core that gives
them (:class:`KeypointSource.ENGINES`) pairs with :class:`GivenKeypoints`, which passes
them on. The live ``features`` stage, training's extraction and the benchmark all take one
of these, chosen by :func:`engines.adapters.perception.crop_keypoints_for`, so no caller
branches on where keypoints come from.

Example:
    >>> maker = MediaPipeCropKeypoints()  # doctest: +SKIP
    >>> maker.keypoints(("cam0", 0, 1), crop, offset, None).shape  # doctest: +SKIP
    (137, 3)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from engines.adapters.keypoints import MediaPipeKeypoints, holistic_identity
from engines.adapters.openpose_layout import empty_keypoints
from engines.adapters.perception.records import KEYPOINTS_SHAPE, KeypointSource

PersonKey = tuple[str, int, int]
"""``(stream, generation, track_id)``."""

MAX_GRAPHS_PER_STREAM = 16
"""MediaPipe graphs (about 100 MB each) one stream may hold; beyond it the least recently
used is closed, so memory stays bounded whatever track ids come."""


class HolisticTracker(Protocol):
    def process(self, crop_bgr: np.ndarray, offset_xy: tuple[float, float] = (0, 0)
                ) -> np.ndarray: ...

    def close(self) -> None: ...


class CropKeypoints(Protocol):
    """A person's keypoints in one frame, from its crop or from what the core gave."""

    source: KeypointSource

    def warm_up(self, crop_hw: tuple[int, int] = (256, 192)) -> None:
        """Load models now, not on the first live crop."""
        ...

    def keypoints(self, key: PersonKey, crop: np.ndarray, offset: tuple[int, int],
                  given: np.ndarray | None) -> np.ndarray:
        """(137, 3) float32 in frame pixels for person ``key``; ``given`` is what the
        perception core made (None when it makes none)."""
        ...

    def whole_frame(self, key: PersonKey, image: np.ndarray) -> np.ndarray:
        """Keypoints for a whole frame in which the core found nobody (training's
        ``--no-person full-frame`` stand-in), under ``key``."""
        ...

    def forget(self, key: PersonKey) -> None:
        """Drop what is kept for ``key`` (the person left)."""
        ...

    def release(self, stream: str) -> None:
        """Drop what is kept for every person of ``stream`` (it ended)."""
        ...

    def identity(self) -> str:
        """What makes the keypoints, for feature records."""
        ...

    def close(self) -> None:
        ...


def video_mode_holistic() -> MediaPipeKeypoints:
    """Holistic in video mode, as one person's tracker."""
    return MediaPipeKeypoints(static_image_mode=False)


class MediaPipeCropKeypoints:
    """MediaPipe Holistic on each person's crop, one video-mode graph per person.

    ``factory`` makes one graph; ``per_stream`` bounds the graphs of one stream (least
    recently used closed first). Not thread-safe.
    """

    source = KeypointSource.MEDIAPIPE

    def __init__(self, factory: Callable[[], HolisticTracker] = video_mode_holistic, *,
                 per_stream: int = MAX_GRAPHS_PER_STREAM) -> None:
        if per_stream < 1:
            raise ValueError(f"per_stream is {per_stream}; it must be at least 1")
        self.factory = factory
        self.per_stream = per_stream
        self._graphs: dict[PersonKey, HolisticTracker] = {}  # least recently used first
        self._spare: list[HolisticTracker] = []

    def warm_up(self, crop_hw: tuple[int, int] = (256, 192)) -> None:
        """Load one graph (the first MediaPipe call takes about a second); the first
        person gets it."""
        graph = self.factory()
        graph.process(np.zeros((*crop_hw, 3), np.uint8))
        self._spare.append(graph)

    def keypoints(self, key: PersonKey, crop: np.ndarray, offset: tuple[int, int],
                  given: np.ndarray | None) -> np.ndarray:
        if given is not None:
            raise ValueError("the perception core made keypoints; MediaPipe on the crop "
                             "would replace them with others (pair that core with "
                             "GivenKeypoints)")
        graph = self._graphs.pop(key, None)
        if graph is None:
            self._make_room(key[0])
            graph = self._spare.pop() if self._spare else self.factory()
        self._graphs[key] = graph
        return graph.process(crop, offset)

    def whole_frame(self, key: PersonKey, image: np.ndarray) -> np.ndarray:
        """Holistic on the whole frame: its own pose detector may still find someone."""
        return self.keypoints(key, image, (0, 0), None)

    def _make_room(self, stream: str) -> None:
        mine = [key for key in self._graphs if key[0] == stream]
        for key in mine[:max(0, len(mine) - self.per_stream + 1)]:
            self.forget(key)

    def forget(self, key: PersonKey) -> None:
        graph = self._graphs.pop(key, None)
        if graph is not None:
            graph.close()

    def release(self, stream: str) -> None:
        for key in [key for key in self._graphs if key[0] == stream]:
            self.forget(key)

    def identity(self) -> str:
        return holistic_identity()

    def close(self) -> None:
        for graph in [*self._graphs.values(), *self._spare]:
            graph.close()
        self._graphs.clear()
        self._spare.clear()


class GivenKeypoints:
    """The keypoints the perception core made (``ENGINES``), checked and passed on."""

    source = KeypointSource.ENGINES

    def __init__(self, identity: str = "holistic-engines") -> None:
        self._identity = identity

    def warm_up(self, crop_hw: tuple[int, int] = (256, 192)) -> None:
        """Nothing to load."""

    def keypoints(self, key: PersonKey, crop: np.ndarray, offset: tuple[int, int],
                  given: np.ndarray | None) -> np.ndarray:
        if given is None:
            raise ValueError(f"person {key[2]} of stream {key[0]!r} came without keypoints, "
                             "but this run takes them from the perception core (engines)")
        keypoints = np.asarray(given, np.float32)
        if keypoints.shape != KEYPOINTS_SHAPE:
            raise ValueError(f"keypoints have shape {keypoints.shape}; expected "
                             f"{KEYPOINTS_SHAPE}")
        return keypoints

    def whole_frame(self, key: PersonKey, image: np.ndarray) -> np.ndarray:
        """No keypoints: the core already looked at this frame and found nobody."""
        return empty_keypoints()

    def forget(self, key: PersonKey) -> None:
        """Nothing is kept per person."""

    def release(self, stream: str) -> None:
        """Nothing is kept per stream."""

    def identity(self) -> str:
        return self._identity

    def close(self) -> None:
        """Nothing to release."""
