"""One MP4 written with PyAV: frames with their times in, a whole, playable file out.

The file is written under a hidden ``.NAME.partial`` name beside its final one and renamed
when it is closed, so a file with the final name is always whole (an MP4 is playable only
once its index is written at the end). Each frame is placed at its own time (milliseconds
from the stream's first frame, always increasing), so a frame the recorder never received
leaves the previous one on screen for longer and the video keeps the source's pace.
H.264 (libx264) when PyAV's FFmpeg has it, else MPEG-4 part 2; frames are cropped to even
sizes (4:2:0 chroma needs them) and later frames scaled to the first frame's size.

Example:
    >>> writer = VideoWriter(Path("out.mp4"), fps=5.0, codec="auto")  # doctest: +SKIP
    >>> writer.write(image, seconds=0.0); writer.close()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

TIME_BASE = Fraction(1, 1000)
CODECS = ("libx264", "mpeg4")


def choose_codec(asked: str) -> str:
    """The encoder for ``asked`` (``auto``, ``libx264`` or ``mpeg4``), or ValueError when
    PyAV's FFmpeg lacks it."""
    available = av.codecs_available
    if asked == "auto":
        found = [codec for codec in CODECS if codec in available]
        if not found:
            raise ValueError("PyAV's FFmpeg has neither libx264 nor mpeg4: install PyAV "
                             "from its wheels (pip install av), which include both")
        return found[0]
    if asked not in available:
        raise ValueError(f"record.codec {asked}: PyAV's FFmpeg has no such encoder; use "
                         f"record.codec=auto")
    return asked


def partial_path(path: Path) -> Path:
    """Where ``path`` is written until it is closed."""
    return path.with_name(f".{path.name}.partial")


class VideoWriter:
    """An MP4 at ``path``, opened at the first frame (its size sets the video's)."""

    def __init__(self, path: Path, fps: float, codec: str = "auto") -> None:
        self.path = path
        self.fps = fps
        self.codec = choose_codec(codec)
        self.frames = 0
        self.size: tuple[int, int] | None = None
        self.first_s: float | None = None
        self.last_s: float | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream: av.VideoStream | None = None
        self._last_pts = -1

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(partial_path(self.path)), mode="w", format="mp4")
        try:
            stream = container.add_stream(self.codec, rate=Fraction(self.fps).limit_denominator(
                1001))
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = TIME_BASE
            if self.codec == "libx264":
                # no B-frames nor lookahead: each frame leaves the encoder at once; one
                # thread and a fast preset: the recorder shares the pipeline's cores
                stream.options = {"preset": "superfast", "tune": "zerolatency", "crf": "23",
                                  "threads": "1"}
            else:
                stream.bit_rate = 4_000_000
        except BaseException:
            container.close()
            raise
        self._container, self._stream, self.size = container, stream, (width, height)

    def write(self, image: np.ndarray, seconds: float) -> None:
        """Add ``image`` (BGR, H x W x 3) at ``seconds`` on the stream's own timeline."""
        if self.size is None:
            height, width = image.shape[:2]
            self._open(width - width % 2, height - height % 2)
        assert self._stream is not None and self._container is not None and self.size
        width, height = self.size
        if image.shape[1] - width not in (0, 1) or image.shape[0] - height not in (0, 1):
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        image = np.ascontiguousarray(image[:height, :width])
        if self.first_s is None:
            self.first_s = seconds
        pts = max(self._last_pts + 1, round((seconds - self.first_s) * 1000))
        frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        frame.pts = pts
        frame.time_base = TIME_BASE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self._last_pts = pts
        self.last_s = self.first_s + pts / 1000
        self.frames += 1

    @property
    def seconds(self) -> float:
        """The video's length so far (its last frame shown for one frame period)."""
        if self.first_s is None or self.last_s is None:
            return 0.0
        return self.last_s - self.first_s + 1.0 / self.fps

    def close(self) -> Path | None:
        """Flush the encoder, write the index, rename to ``path``; None when no frame
        came (no file is left)."""
        container, stream = self._container, self._stream
        self._container = self._stream = None
        if container is None or stream is None:
            return None
        try:
            for packet in stream.encode(None):
                container.mux(packet)
        finally:
            container.close()
        os.replace(partial_path(self.path), self.path)
        return self.path

    def abandon(self) -> None:
        """Close without keeping anything (a failed write)."""
        container = self._container
        self._container = self._stream = None
        if container is not None:
            with contextlib.suppress(Exception):
                container.close()
        with contextlib.suppress(OSError):
            partial_path(self.path).unlink()
