"""Per (stream, person) rings of time-stamped features, and per-stream bookkeeping.

The classifier needs the last ``window_seconds`` of each person; a :class:`PersonRing`
keeps exactly that (plus a second of slack) as time-stamped image embeddings and keypoint
frames, and hands them to :func:`engines.adapters.windows.build_window`, the one function
that turns features into classifier inputs for both training and serving.
:class:`StreamBook` follows one stream's sequence numbers: a gap that the in-band
``dropped`` count does not explain is a lost frame (a crashed stage, a dead peer).

Example:
    >>> book = StreamBook("demo0")
    >>> book.account(generation=1, seq=0, dropped=0)
    0
    >>> book.account(generation=1, seq=3, dropped=1)
    1
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from engines.adapters.windows import WindowBatch, build_window

SLACK_S = 1.0


@dataclass
class PersonRing:
    """The recent features of one person of one stream (media-time stamps)."""

    window_seconds: float
    image: deque[tuple[float, np.ndarray]] = field(default_factory=deque)
    keypoints: deque[tuple[float, np.ndarray]] = field(default_factory=deque)
    last_seen: float = 0.0
    smoothed: np.ndarray | None = None

    def add(self, media_time: float, image: np.ndarray | None,
            keypoints: np.ndarray | None) -> None:
        self.last_seen = max(self.last_seen, media_time)
        if image is not None:
            self.image.append((media_time, image))
        if keypoints is not None:
            self.keypoints.append((media_time, keypoints))
        horizon = self.last_seen - self.window_seconds - SLACK_S
        for ring in (self.image, self.keypoints):
            while ring and ring[0][0] < horizon:
                ring.popleft()

    def window(self, end: float, *, image_rate: float, keypoint_rate: float,
               image_dim: int, text_dim: int, text: np.ndarray | None) -> WindowBatch:
        image_times = np.array([t for t, _ in self.image], np.float64)
        image = (np.stack([v for _, v in self.image]) if self.image
                 else np.zeros((0, image_dim), np.float32))
        kp_times = np.array([t for t, _ in self.keypoints], np.float64)
        keypoints = (np.stack([v for _, v in self.keypoints]) if self.keypoints
                     else np.zeros((0, 137, 3), np.float32))
        return build_window(end=end, window_seconds=self.window_seconds,
                            image_rate=image_rate, keypoint_rate=keypoint_rate,
                            image_times=image_times, image=image, keypoint_times=kp_times,
                            keypoints=keypoints, text=text, image_dim=image_dim,
                            text_dim=text_dim)


@dataclass
class StreamBook:
    """Sequence accounting of one stream at the classifier."""

    stream: str
    generation: int = -1
    last_seq: int = -1
    frames: int = 0
    dropped: int = 0
    lost: int = 0
    generations: int = 0

    def account(self, generation: int, seq: int, dropped: int) -> int:
        """Record one arrival; return the frames lost just before it (gap minus drops)."""
        if generation != self.generation:
            self.generation, self.last_seq = generation, -1
            self.generations += 1
        gap = max(0, seq - self.last_seq - 1)
        lost = max(0, gap - dropped)
        self.dropped += dropped
        self.lost += lost
        self.frames += 1
        self.last_seq = max(self.last_seq, seq)
        return lost

    def end(self, generation: int, next_seq: int, dropped: int) -> int:
        """Account an end of stream: ``next_seq`` frames were sent in ``generation``; the
        tail not explained by ``dropped`` is lost. Returns the frames lost at the tail."""
        if generation != self.generation:
            return 0
        lost = max(0, next_seq - self.last_seq - 1 - dropped)
        self.dropped += dropped
        self.lost += lost
        self.last_seq = max(self.last_seq, next_seq - 1)
        return lost
