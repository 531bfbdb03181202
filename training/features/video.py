"""Decode a video file with OpenCV and hand out only the frames some modality wants.

Interviews run 4-23 minutes at 25 fps, and analysis rates are far lower, so every frame is
``grab()``-bed (demuxed and decoded, which seeking could not avoid for most codecs) but
only the wanted ones are ``retrieve()``-d into BGR arrays. A frame's time is
``index / fps`` from the container's frame rate, the clock that skeleton frame numbers and
labels use too.

Anything wrong with the file (missing, not a video, no frame rate, no frame decodes) is a
:class:`VideoError` whose message says what to do; extraction reports it and moves on.

Example:
    >>> with VideoReader(Path("talk.mp4")) as video:  # doctest: +SKIP
    ...     for frame in video.frames(lambda t: t < 1.0):
    ...         print(frame.time, frame.image.shape)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Generic, TypeVar

import cv2
import numpy as np

Want = TypeVar("Want")


class VideoError(Exception):
    """A video that cannot be used; the message names the file and the remedy."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says: frame rate, frame count (an estimate for some codecs), size."""

    fps: float
    frame_count: int
    width: int
    height: int


@dataclass(frozen=True)
class SampledFrame(Generic[Want]):
    """One retrieved frame: its index and time in the video, the BGR image, and why it was
    wanted (whatever the selector returned)."""

    index: int
    time: float
    image: np.ndarray
    want: Want


class VideoReader:
    """One video file opened with OpenCV's FFmpeg backend. Iterate once; close after."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"video {self.path} not found: fix the manifest's path or remove "
                             "the row")
        self._capture: cv2.VideoCapture | None = cv2.VideoCapture(str(self.path))
        if not self._capture.isOpened():
            self.close()
            raise VideoError(f"video {self.path} cannot be opened (not a video, or a codec "
                             "OpenCV's FFmpeg lacks): re-encode it, e.g. `ffmpeg -i IN -c:v "
                             "libx264 OUT.mp4`")
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        if not math.isfinite(fps) or fps <= 0:
            self.close()
            raise VideoError(f"video {self.path} does not state its frame rate, so frame "
                             "times are unknown: re-encode it with a constant rate "
                             "(`ffmpeg -i IN -r 25 OUT.mp4`)")
        self.info = VideoInfo(
            fps=fps,
            frame_count=max(0, int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))),
            width=int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)),
            height=int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
        )
        self.decoded = 0
        """Frames decoded so far (after iterating: the video's real length in frames)."""

    def frames(self, select: Callable[[float], Want | None],
               progress: Callable[[int], object] | None = None) -> Iterator[SampledFrame[Want]]:
        """Every frame for which ``select(time)`` is not None, in order.

        ``select`` is called once per decoded frame, in time order (so it may be stateful,
        like :class:`engines.adapters.rates.RateSampler`). ``progress(n)`` is told each
        decoded frame. Raises :class:`VideoError` when not one frame decodes.
        """
        capture = self._require_open()
        index = -1
        while capture.grab():
            index += 1
            self.decoded = index + 1
            if progress is not None:
                progress(1)
            time = index / self.info.fps
            want = select(time)
            if want is None:
                continue
            ok, image = capture.retrieve()
            if not ok or image is None:
                continue  # a damaged frame: its slot stays empty, the next one may fill it
            yield SampledFrame(index, time, image, want)
        if self.decoded == 0:
            raise VideoError(f"video {self.path}: no frame could be decoded (corrupt or "
                             "truncated file): re-encode or re-download it")

    @property
    def duration(self) -> float:
        """Seconds decoded so far, or the container's estimate before iterating."""
        frames = self.decoded or self.info.frame_count
        return frames / self.info.fps

    def _require_open(self) -> cv2.VideoCapture:
        if self._capture is None:
            raise VideoError(f"video {self.path} was closed")
        return self._capture

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
