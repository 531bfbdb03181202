"""Video sources (camera, file, RTSP/HTTP URL, demo) behind one small interface.

A :class:`FrameSource` opens, reads ``(frame, media_time)`` and closes. ``media_time`` is the
frame's time on the source's own timeline: a file's position, the demo clip's clock, or the
seconds since a live source was opened. :class:`SourceReader` is the state machine the
capture stage drives: it opens the source, reports the end of a file, and reopens a live
source that dropped, with exponential backoff, starting a new session generation each time.

Example:
    >>> reader = SourceReader(DemoSource(fps=30), live=True)
    >>> event = reader.next()  # doctest: +SKIP
"""

from __future__ import annotations

import enum
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import cv2
import numpy as np

from stream.config import SourceConfig
from stream.demo import DemoClip


class FrameSource(ABC):
    """One video source. ``fps`` is its nominal rate (0 when unknown); ``frame_count`` the
    frames a file says it holds (0: unknown or live), ``frames_read`` those read since the
    last open (a file that ends well short of its count was truncated or is corrupt)."""

    fps: float = 0.0
    live: bool = True
    frame_count: int = 0
    frames_read: int = 0

    @abstractmethod
    def open(self) -> bool:
        """Open (or reopen) the source; False when it cannot be opened now."""

    @abstractmethod
    def read(self) -> tuple[np.ndarray, float] | None:
        """The next BGR frame and its media time, or None at the end or on a failure."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the source."""


class DemoSource(FrameSource):
    """The animated demo clip, endless; frames are produced on demand at ``fps``."""

    live = True

    def __init__(self, fps: float = 30.0, width: int = 640, height: int = 480) -> None:
        self.fps = fps
        self._size = (width, height)
        self._clip: DemoClip | None = None
        self._index = 0

    def open(self) -> bool:
        if self._clip is None:
            self._clip = DemoClip(*self._size)
        self._index = 0
        return True

    def read(self) -> tuple[np.ndarray, float] | None:
        assert self._clip is not None, "open() first"
        media_time = self._index / self.fps
        self._index += 1
        return self._clip.frame(media_time), media_time


class OpenCVSource(FrameSource):
    """A camera index, a video file or a URL through ``cv2.VideoCapture``.

    A URL opens through OpenCV's FFmpeg backend with ``timeouts_s`` (open, read): a stream
    that stalls without closing then reads as ended, and the reader reconnects, instead of
    blocking the capture for FFmpeg's 30 s default.
    """

    def __init__(self, target: int | str, *, live: bool, fps_hint: float = 30.0,
                 loop: bool = False, timeouts_s: tuple[float, float] | None = None) -> None:
        self.target = target
        self.live = live
        self.loop = loop
        self.fps = fps_hint
        self.timeouts_s = timeouts_s
        self._capture: cv2.VideoCapture | None = None
        self._opened_at = 0.0
        self._loop_offset = 0.0
        self._last_media = 0.0

    def open(self) -> bool:
        self.close()
        if self.timeouts_s is None:
            capture = cv2.VideoCapture(self.target)
        else:
            open_s, read_s = self.timeouts_s
            capture = cv2.VideoCapture(self.target, cv2.CAP_FFMPEG, [
                cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, round(open_s * 1000),
                cv2.CAP_PROP_READ_TIMEOUT_MSEC, round(read_s * 1000)])
        if not capture.isOpened():
            capture.release()
            return False
        self._capture = capture
        fps = capture.get(cv2.CAP_PROP_FPS)
        if fps and 1.0 <= fps <= 240.0:
            self.fps = float(fps)
        count = capture.get(cv2.CAP_PROP_FRAME_COUNT) if not self.live else 0.0
        self.frame_count = int(count) if 0 < count < 2**31 else 0
        self.frames_read = 0
        self._opened_at = time.monotonic()
        return True

    def read(self) -> tuple[np.ndarray, float] | None:
        if self._capture is None:
            return None
        ok, frame = self._capture.read()
        if not ok and not self.live and self.loop:
            self._loop_offset = self._last_media + 1.0 / max(self.fps, 1.0)
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, frame = self._capture.read()
        if not ok or frame is None:
            return None
        self.frames_read += 1
        if self.live:
            media_time = time.monotonic() - self._opened_at
        else:
            index = self._capture.get(cv2.CAP_PROP_POS_FRAMES) - 1
            media_time = self._loop_offset + index / max(self.fps, 1e-6)
        self._last_media = media_time
        return frame, media_time

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


def make_source(config: SourceConfig) -> FrameSource:
    """The source a ``--source`` spec names (see :func:`stream.config.source_kind`)."""
    kind = config.kind
    if kind == "demo":
        return DemoSource(config.fps, config.width, config.height)
    if kind == "camera":
        return OpenCVSource(int(config.spec), live=True, fps_hint=config.fps)
    if kind == "url":
        return OpenCVSource(config.spec, live=True, fps_hint=config.fps,
                            timeouts_s=(config.open_timeout_s, config.read_timeout_s))
    return OpenCVSource(config.spec, live=False, fps_hint=config.fps, loop=config.loop)


SHORT_FILE_TOLERANCE = 0.05
"""A file may hold a few frames less than its header says (an estimated count): it ended
early only when it gave fewer than this fraction below its count (and 3 frames) less."""


def ended_early(source: FrameSource) -> bool:
    """Whether a file that reached its end gave clearly fewer frames than it says it holds:
    truncated (a copy cut short, a recording that crashed) or corrupt part-way."""
    if source.live or source.frame_count <= 0:
        return False
    missing = source.frame_count - source.frames_read
    return missing > max(3, SHORT_FILE_TOLERANCE * source.frame_count)


@dataclass(frozen=True)
class SourceProbe:
    """What opening a source once found (:func:`probe_source`); ``problem`` says what is
    wrong and what to do, None when the source gave what it should."""

    spec: str
    problem: str | None = None
    frame_count: int = 0


def probe_source(config: SourceConfig) -> SourceProbe:
    """Open ``config``'s source once, as the capture will, and for a file read its first
    frame: the errors a run would otherwise meet only as a capture that ends at once with
    no frame, or a camera that never delivers."""
    kind, spec = config.kind, config.spec
    if kind == "demo":
        return SourceProbe(spec)
    if kind == "file":
        problem = _file_problem(spec)
        if problem is not None:
            return SourceProbe(spec, problem)
    source = make_source(config)
    try:
        if not source.open():
            return SourceProbe(spec, _open_problem(config))
        if kind == "file" and source.read() is None:
            return SourceProbe(spec, "OpenCV opens it but it gives no frame: the file is empty, "
                                     "truncated or corrupt; check it plays (e.g. ffprobe "
                                     f"{spec}) or re-export it", source.frame_count)
        return SourceProbe(spec, None, source.frame_count)
    finally:
        source.close()


def _file_problem(spec: str) -> str | None:
    if not os.path.exists(spec):
        return "no such file: check the path"
    if os.path.isdir(spec):
        return "is a folder, not a video file"
    if not os.access(spec, os.R_OK):
        return "cannot be read: check its permissions"
    return None


def _open_problem(config: SourceConfig) -> str:
    if config.kind == "camera":
        return (f"no camera at index {config.spec}: check the device / permissions, or use "
                "--source demo")
    if config.kind == "url":
        return (f"cannot be opened within open_timeout_s={config.open_timeout_s:g} s: check "
                "the address and that the server or camera is up and reachable (a slow "
                "server: raise the source's open_timeout_s)")
    return ("OpenCV cannot open it as a video: not a video, corrupt or truncated, or in a "
            f"codec this OpenCV build lacks; check it plays (e.g. ffprobe {config.spec})")


class SourceState(enum.StrEnum):
    OPENING = "opening"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    ENDED = "ended"


@dataclass(frozen=True)
class SourceEvent:
    """What one :meth:`SourceReader.next` call gave: a frame, or a state with no frame."""

    state: SourceState
    frame: np.ndarray | None = None
    media_time: float = 0.0
    generation: int = 0


class SourceReader:
    """Opens, reads, ends or reconnects one source: the capture stage's state machine.

    A file that ends gives ``ENDED`` (final). A live source that fails to open or stops
    giving frames goes ``RECONNECTING``: the reader waits (without blocking the caller
    for longer than ``max_wait_s`` per call) and retries with backoff doubling from
    ``backoff_min_s`` to ``backoff_max_s``. Each successful open starts a new
    ``generation`` (downstream resets its windows and trackers for the stream).
    """

    def __init__(self, source: FrameSource, *, live: bool | None = None,
                 backoff_min_s: float = 0.5, backoff_max_s: float = 8.0,
                 max_wait_s: float = 0.2) -> None:
        self.source = source
        self.live = source.live if live is None else live
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.max_wait_s = max_wait_s
        self.state = SourceState.OPENING
        self.generation = 0
        self.reconnects = 0
        self._backoff = backoff_min_s
        self._retry_at = 0.0

    def next(self) -> SourceEvent:
        if self.state is SourceState.ENDED:
            return SourceEvent(SourceState.ENDED, generation=self.generation)
        opening = self.state in (SourceState.OPENING, SourceState.RECONNECTING)
        if opening and not self._try_open():
            return SourceEvent(self.state, generation=self.generation)
        got = self.source.read()
        if got is None:
            self.source.close()
            if not self.live:
                self.state = SourceState.ENDED
            else:
                self._schedule_retry()
            return SourceEvent(self.state, generation=self.generation)
        self._backoff = self.backoff_min_s
        return SourceEvent(SourceState.STREAMING, got[0], got[1], self.generation)

    def _try_open(self) -> bool:
        now = time.monotonic()
        if now < self._retry_at:
            time.sleep(min(self.max_wait_s, self._retry_at - now))
            return False
        if self.source.open():
            if self.state is SourceState.RECONNECTING:
                self.reconnects += 1
            self.generation += 1
            self.state = SourceState.STREAMING
            return True
        if not self.live:
            self.state = SourceState.ENDED
            return False
        self._schedule_retry()
        return False

    def _schedule_retry(self) -> None:
        self.state = SourceState.RECONNECTING
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(self.backoff_max_s, self._backoff * 2)

    def close(self) -> None:
        self.source.close()
