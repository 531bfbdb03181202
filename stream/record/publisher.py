"""Detect's side of the record topic: every analysed frame, sent without waiting.

Detect offers each analysed frame to a :class:`RecordPublisher` (beside the web view's
preview publisher, :mod:`stream.ui.preview`). Unlike the preview it sends the frame raw,
not JPEG-encoded (a scaled copy only when the frame is wider than ``record.width``), so the
stage pays a copy at most; the recorder process does the drawing and the encoding. The
send never blocks (``NOBLOCK`` on a PUB with a queue of two): a frame the recorder cannot
take now is dropped, and the count each message carries lets the recorder count it.

Example:
    >>> publisher = RecordPublisher(socket, fps=None, width=960)  # doctest: +SKIP
    >>> publisher.status()  # doctest: +SKIP
    {'published': 0, 'skipped': 0, 'unsent': 0, 'failed': 0, 'send_ms': 0.0, 'send_cpu_ms': 0.0}
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import cv2
import numpy as np
import zmq

from engines.adapters.perception import Percept, persons_on_picture
from stream.record.wire import record_parts
from stream.strictjson import JsonDict
from stream.transport.wire import Header, Person


class RecordPublisher:
    """Publishes each analysed frame (at most ``fps`` per second per stream; None: every
    one) on ``socket`` (a PUB), at most ``width`` pixels wide."""

    def __init__(self, socket: zmq.Socket, *, fps: float | None, width: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.socket = socket
        self.period = 0.0 if fps is None else 1.0 / fps
        self.width = width
        self.clock = clock
        self._due: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self.published = 0
        self.skipped = 0
        self.unsent = 0
        self.failed = 0
        self.send_s = 0.0
        self.send_cpu_s = 0.0

    def offer(self, header: Header, image: np.ndarray, percepts: Sequence[Percept],
              analysed_time: float, detector: str | None) -> None:
        now = self.clock()
        cpu = time.thread_time()
        stream = header.stream
        if self.period:
            due = self._due.get(stream, now)
            if now < due:
                self.skipped += 1
                return
            # the rate holds on average (a late frame moves the next due time back by at
            # most half a period); a pause earns no burst afterwards
            self._due[stream] = max(due + self.period, now + self.period / 2)
        count = self._counts.get(stream, 0)
        self._counts[stream] = count + 1
        try:
            parts = self._parts(count, header, image, percepts, detector)
        except (cv2.error, ValueError):  # a recorded frame is never worth an analysed one
            self.failed += 1
            self._spent(now, cpu)
            return
        try:
            self.socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
            self.published += 1
        except zmq.Again:  # a PUB drops rather than blocks; the recorder counts the gap
            self.unsent += 1
        self._spent(now, cpu)

    def _spent(self, start: float, cpu: float) -> None:
        self.send_s += self.clock() - start
        self.send_cpu_s += time.thread_time() - cpu

    def _parts(self, count: int, header: Header, image: np.ndarray,
               percepts: Sequence[Percept], detector: str | None) -> list[bytes | memoryview]:
        height, width = image.shape[:2]
        scale = min(1.0, self.width / width)
        if scale < 1.0:
            size = (max(16, round(width * scale)), max(16, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        people, keypoints = persons_on_picture(percepts, scale)
        persons = tuple(Person(**person._asdict()) for person in people)
        sent = header.with_meta(persons=persons, frame_hw=(int(height), int(width)),
                                detector=detector)
        return record_parts(count, sent, image, keypoints)

    def status(self) -> JsonDict:
        """Counts for detect's status: ``published``, ``skipped`` (the ``fps`` cap),
        ``unsent`` (the socket refused without waiting), ``failed`` (a frame that could not
        be scaled), ``send_ms`` and ``send_cpu_ms`` (mean wall and CPU time per frame
        offered past the cap: the recording's cost to the stage; on a busy machine the wall
        time also holds the waits for a core)."""
        done = self.published + self.unsent + self.failed

        def mean_ms(seconds: float) -> float:
            return round(1000.0 * seconds / done, 3) if done else 0.0

        return {"published": self.published, "skipped": self.skipped, "unsent": self.unsent,
                "failed": self.failed, "send_ms": mean_ms(self.send_s),
                "send_cpu_ms": mean_ms(self.send_cpu_s)}

    def close(self) -> None:
        self.socket.close(linger=0)
