"""Video sources (camera, file, RTSP/HTTP URL, demo) behind one small interface.

A :class:`FrameSource` opens, reads ``(frame, media_time)`` and closes. ``media_time`` is the
frame's time on the source's own timeline: a file's position, the demo clip's clock, or the
seconds since a live source was opened. :class:`SourceReader` is the state machine the
capture stage drives: it opens the source, reports the end of a file, and reopens a live
source that dropped, with exponential backoff, starting a new session generation each time.

Reading is split in two, as OpenCV splits it: ``grab`` advances to the next frame and says
its media time, ``retrieve`` converts and copies the grabbed frame. A reader given a
:class:`FramePolicy` (the capture's :class:`~engines.adapters.rates.RateSampler`) asks it
after the grab whether the frame is kept, and retrieves only the kept ones: at 10 of 50
frames a second the other 40 never pay for the colour conversion and the copy (for the
demo clip: the rendering). :class:`DecodeCost` counts what grabbing and retrieving cost.

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
from typing import Protocol

import cv2
import numpy as np

from stream.config import SourceConfig
from stream.media.demo import DemoClip


class FrameSource(ABC):
    """One video source. ``fps`` is its nominal rate (0 when unknown); ``frame_count`` the
    frames a file says it holds (0: unknown or live), ``frames_read`` those read since the
    last open (a file that ends well short of its count was truncated or is corrupt)."""

    fps: float = 0.0
    live: bool = True
    frame_count: int = 0
    frames_read: int = 0
    _grabbed: np.ndarray | None = None

    @abstractmethod
    def open(self) -> bool:
        """Open (or reopen) the source; False when it cannot be opened now."""

    @abstractmethod
    def read(self) -> tuple[np.ndarray, float] | None:
        """The next BGR frame and its media time, or None at the end or on a failure."""

    def grab(self) -> float | None:
        """Advance to the next frame and return its media time (None: the end, or a
        failure); :meth:`retrieve` then gives its pixels. This fallback reads (decodes and
        converts) the whole frame: a source that can skip cheaper overrides both."""
        got = self.read()
        self._grabbed = None if got is None else got[0]
        return None if got is None else got[1]

    def retrieve(self) -> np.ndarray | None:
        """The BGR frame the last :meth:`grab` reached (None: it cannot be decoded)."""
        frame, self._grabbed = self._grabbed, None
        return frame

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the source."""


class SkippingSource(FrameSource):
    """A source whose :meth:`grab` is cheaper than a read: it implements ``grab`` and
    ``retrieve``, and ``read`` is the two together."""

    @abstractmethod
    def grab(self) -> float | None:
        """Advance to the next frame without converting it; its media time, or None."""

    @abstractmethod
    def retrieve(self) -> np.ndarray | None:
        """Convert and copy the grabbed frame (BGR); None when it cannot be decoded."""

    def read(self) -> tuple[np.ndarray, float] | None:
        media_time = self.grab()
        frame = None if media_time is None else self.retrieve()
        return None if frame is None or media_time is None else (frame, media_time)


class DemoSource(SkippingSource):
    """The animated demo clip, endless; frames are produced on demand at ``fps`` (a grab
    only advances the clock: a skipped frame is never rendered)."""

    live = True

    def __init__(self, fps: float = 30.0, width: int = 640, height: int = 480) -> None:
        self.fps = fps
        self._size = (width, height)
        self._clip: DemoClip | None = None
        self._index = 0
        self._time = 0.0

    def open(self) -> bool:
        if self._clip is None:
            self._clip = DemoClip(*self._size)
        self._index = 0
        return True

    def grab(self) -> float | None:
        assert self._clip is not None, "open() first"
        self._time = self._index / self.fps
        self._index += 1
        return self._time

    def retrieve(self) -> np.ndarray | None:
        assert self._clip is not None, "open() first"
        return self._clip.frame(self._time)


class OpenCVSource(SkippingSource):
    """A camera index, a video file or a URL through ``cv2.VideoCapture``.

    A URL opens through OpenCV's FFmpeg backend with ``timeouts_s`` (open, read): a stream
    that stalls without closing then reads as ended, and the reader reconnects, instead of
    blocking the capture for FFmpeg's 30 s default.

    ``grab`` is ``VideoCapture.grab``: the FFmpeg backend demuxes and decodes there (a
    compressed stream cannot skip decoding a frame the next ones refer to), and
    ``retrieve`` does the conversion to BGR and the copy, the part a skipped frame saves.
    On a camera or stream a grab still takes the frame off the device or socket, so
    skipping never lets a backlog of old frames build up. A file frame's time is its index
    over the container's frame rate, as :mod:`training.features.video` reads files (the
    frame index is right after a grab as after a read).
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

    def grab(self) -> float | None:
        if self._capture is None:
            return None
        ok = self._capture.grab()
        if not ok and not self.live and self.loop:
            self._loop_offset = self._last_media + 1.0 / max(self.fps, 1.0)
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok = self._capture.grab()
        if not ok:
            return None
        self.frames_read += 1
        if self.live:
            media_time = time.monotonic() - self._opened_at
        else:
            index = self._capture.get(cv2.CAP_PROP_POS_FRAMES) - 1
            media_time = self._loop_offset + index / max(self.fps, 1e-6)
        self._last_media = media_time
        return media_time

    def retrieve(self) -> np.ndarray | None:
        if self._capture is None:
            return None
        ok, frame = self._capture.retrieve()
        return frame if ok else None

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
    """What one :meth:`SourceReader.next` call gave: a frame, a frame grabbed but
    ``skipped`` (its media time, no pixels), or a state with no frame."""

    state: SourceState
    frame: np.ndarray | None = None
    media_time: float = 0.0
    generation: int = 0
    skipped: bool = False
    deferred: bool = False
    """Kept, but not yet retrieved (``next(defer=True)``): :meth:`SourceReader.retrieve`
    gives its pixels until the next grab."""


class FramePolicy(Protocol):
    """Decides, frame by frame in time order, whether a frame is kept; :meth:`reset` at
    each new session (a reconnected source starts its clock again).
    :class:`engines.adapters.rates.RateSampler` is one."""

    def reset(self) -> None: ...

    def take(self, time: float) -> bool: ...


class KeepAll:
    """The null :class:`FramePolicy`: every frame is kept (and retrieved)."""

    def reset(self) -> None:
        pass

    def take(self, time: float) -> bool:
        return True


@dataclass
class DecodeCost:
    """What reading cost: frames grabbed and retrieved, and the process CPU seconds spent
    in each (FFmpeg's decoder threads included; a live source blocked waiting for its next
    frame costs no CPU, so wall time would mislead there). A skipped frame costs one grab;
    a kept one a grab and a retrieve: :meth:`report` says so per frame."""

    grabbed: int = 0
    retrieved: int = 0
    grab_s: float = 0.0
    retrieve_s: float = 0.0

    def report(self) -> dict[str, int | float]:
        """The counts, and CPU milliseconds per grab, per retrieve and per kept frame (all
        the grabs it took to reach it plus its retrieve): what a status report carries."""
        per_kept = (self.grab_s + self.retrieve_s) / self.retrieved if self.retrieved else 0.0
        return {"grabbed": self.grabbed, "retrieved": self.retrieved,
                "skipped": self.grabbed - self.retrieved,
                "grab_cpu_s": round(self.grab_s, 4), "retrieve_cpu_s": round(self.retrieve_s, 4),
                "grab_ms": round(1000 * self.grab_s / max(1, self.grabbed), 3),
                "retrieve_ms": round(1000 * self.retrieve_s / max(1, self.retrieved), 3),
                "ms_per_kept": round(1000 * per_kept, 3)}


class SourceReader:
    """Opens, reads, ends or reconnects one source: the capture stage's state machine.

    A file that ends gives ``ENDED`` (final). A live source that fails to open or stops
    giving frames goes ``RECONNECTING``: the reader waits (without blocking the caller
    for longer than ``max_wait_s`` per call) and retries with backoff doubling from
    ``backoff_min_s`` to ``backoff_max_s``. Each successful open starts a new
    ``generation`` (downstream resets its windows and trackers for the stream) and resets
    ``policy``. Every frame is grabbed; only those ``policy`` keeps are retrieved, the
    others come out as ``skipped`` events (one per grab, so the caller can keep
    reporting while a low rate skips many). A kept frame that cannot be retrieved ends
    the session as a failed read always did.
    """

    def __init__(self, source: FrameSource, *, live: bool | None = None,
                 policy: FramePolicy | None = None, backoff_min_s: float = 0.5,
                 backoff_max_s: float = 8.0, max_wait_s: float = 0.2) -> None:
        self.source = source
        self.live = source.live if live is None else live
        self.policy: FramePolicy = KeepAll() if policy is None else policy
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.max_wait_s = max_wait_s
        self.state = SourceState.OPENING
        self.generation = 0
        self.reconnects = 0
        self.cost = DecodeCost()
        self.grabs = 0
        """Grabs so far: names the frame a deferred retrieve is for."""
        self._backoff = backoff_min_s
        self._retry_at = 0.0

    def next(self, defer: bool = False) -> SourceEvent:
        """Grab the next frame; retrieve it if the policy keeps it, unless ``defer`` (then
        the event is ``deferred`` and :meth:`retrieve` gives the pixels if still wanted: a
        live capture that may replace the frame before sending it pays no conversion)."""
        if self.state is SourceState.ENDED:
            return SourceEvent(SourceState.ENDED, generation=self.generation)
        opening = self.state in (SourceState.OPENING, SourceState.RECONNECTING)
        if opening and not self._try_open():
            return SourceEvent(self.state, generation=self.generation)
        media_time = self._grab()
        if media_time is None:
            return self._lost()
        self._backoff = self.backoff_min_s
        if not self.policy.take(media_time):
            return SourceEvent(SourceState.STREAMING, None, media_time, self.generation,
                               skipped=True)
        if defer:
            return SourceEvent(SourceState.STREAMING, None, media_time, self.generation,
                               deferred=True)
        frame = self._retrieve()
        if frame is None:
            return self._lost()
        return SourceEvent(SourceState.STREAMING, frame, media_time, self.generation)

    def retrieve(self, grab: int) -> np.ndarray | None:
        """The pixels of a ``deferred`` frame, if ``grab`` (:attr:`grabs` when it came) is
        still the last grab; None when a later grab replaced it, or when it cannot be
        decoded (then the session ends, as a failed read of a kept frame does)."""
        if grab != self.grabs or self.state is not SourceState.STREAMING:
            return None
        frame = self._retrieve()
        if frame is None:
            self._lost()
        return frame

    def _grab(self) -> float | None:
        self.grabs += 1
        started = time.process_time()
        media_time = self.source.grab()
        self.cost.grab_s += time.process_time() - started
        self.cost.grabbed += media_time is not None
        return media_time

    def _retrieve(self) -> np.ndarray | None:
        started = time.process_time()
        frame = self.source.retrieve()
        self.cost.retrieve_s += time.process_time() - started
        self.cost.retrieved += frame is not None
        return frame

    def _lost(self) -> SourceEvent:
        """The source gave no frame: a file has ended, a live source will be reopened."""
        self.source.close()
        if not self.live:
            self.state = SourceState.ENDED
        else:
            self._schedule_retry()
        return SourceEvent(self.state, generation=self.generation)

    def _try_open(self) -> bool:
        now = time.monotonic()
        if now < self._retry_at:
            time.sleep(min(self.max_wait_s, self._retry_at - now))
            return False
        if self.source.open():
            if self.state is SourceState.RECONNECTING:
                self.reconnects += 1
            self.generation += 1
            self.policy.reset()
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
