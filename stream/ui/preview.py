"""The preview topic: a capped stream of small JPEGs of analysed frames, from detect.

Detect (in both placements) hands each analysed frame to a :class:`PreviewPublisher`. It
does nothing unless the stream's rate cap (``ui.preview_fps``) says a preview is due, so a
skipped frame costs one dictionary look-up; a due one is shrunk to ``ui.preview_width``,
JPEG-encoded and sent with its persons (box, track id, keypoints) on a PUB socket with a
queue of one, without blocking: a subscriber that is slow, stalled or absent only misses
previews, and the stage never waits. What it published, skipped and could not send, and the
time it spent encoding, go into detect's status (``extra.preview``). Without ``--ui`` detect
gets a :class:`NullPreview` and pays nothing.

Example:
    >>> preview = NullPreview()
    >>> preview.status()
    {}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

import cv2
import numpy as np
import zmq

from engines.adapters.perception import Percept, persons_on_picture
from stream.strictjson import JsonDict
from stream.transport.wire import Header
from stream.ui.records import PreviewHeader, PreviewPerson, encode_preview


class Previews(Protocol):
    def offer(self, header: Header, image: np.ndarray, percepts: Sequence[Percept],
              analysed_time: float, detector: str | None) -> None: ...

    def status(self) -> JsonDict: ...

    def close(self) -> None: ...


class NullPreview:
    """No view: nothing is encoded or sent."""

    def offer(self, header: Header, image: np.ndarray, percepts: Sequence[Percept],
              analysed_time: float, detector: str | None) -> None:
        pass

    def status(self) -> JsonDict:
        return {}

    def close(self) -> None:
        pass


class PreviewPublisher:
    """Publishes at most ``fps`` previews per second per stream on ``socket`` (a PUB)."""

    def __init__(self, socket: zmq.Socket, *, fps: float, width: int, quality: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.socket = socket
        self.period = 1.0 / fps
        self.width = width
        self.quality = quality
        self.clock = clock
        self._due: dict[str, float] = {}
        self.published = 0
        self.skipped = 0
        self.unsent = 0
        self.failed = 0
        self.encode_s = 0.0

    def offer(self, header: Header, image: np.ndarray, percepts: Sequence[Percept],
              analysed_time: float, detector: str | None) -> None:
        now = self.clock()
        if now < self._due.get(header.stream, 0.0):
            self.skipped += 1
            return
        self._due[header.stream] = now + self.period
        try:
            parts = self._parts(header, image, percepts, analysed_time, detector)
        except (cv2.error, ValueError):  # a preview is never worth a frame
            self.failed += 1
            return
        finally:
            self.encode_s += self.clock() - now
        try:
            self.socket.send_multipart(parts, flags=zmq.NOBLOCK)
            self.published += 1
        except zmq.Again:  # a PUB drops rather than blocks; counted should that ever change
            self.unsent += 1

    def _parts(self, header: Header, image: np.ndarray, percepts: Sequence[Percept],
               analysed_time: float, detector: str | None) -> list[bytes]:
        height, width = image.shape[:2]
        scale = min(1.0, self.width / width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = image if scale == 1.0 else cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        ok, jpeg = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError("JPEG encoding failed")
        people, keypoints = persons_on_picture(percepts, scale)
        persons = tuple(PreviewPerson(**person._asdict()) for person in people)
        record = PreviewHeader(
            stream=header.stream, seq=header.seq, generation=header.generation,
            capture_time=header.capture_time, analysed_time=analysed_time,
            media_time=header.media_time, frame_hw=(int(height), int(width)),
            size_hw=(size[1], size[0]),
            persons=persons, keypoint_rows=0 if keypoints is None else len(keypoints),
            detector=detector)
        parts = [header.stream.encode(), encode_preview(record), jpeg.tobytes()]
        if keypoints is not None:
            parts.append(np.ascontiguousarray(keypoints, np.float32).tobytes())
        return parts

    def status(self) -> JsonDict:
        """Counts for detect's status: ``published``, ``skipped`` (rate cap), ``unsent``
        (the socket refused without waiting), ``failed`` (encoding), ``encode_ms`` (mean
        time per published preview, the view's cost to the stage)."""
        done = self.published + self.unsent
        return {"published": self.published, "skipped": self.skipped, "unsent": self.unsent,
                "failed": self.failed,
                "encode_ms": round(1000.0 * self.encode_s / done, 3) if done else 0.0}

    def close(self) -> None:
        self.socket.close(linger=0)
