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
        if media_time < self.last_seen - self.window_seconds - SLACK_S:
            # the clock went back past the window (a seek, an absurd time that came
            # before): start over rather than keep a horizon no new feature can pass
            self.image.clear()
            self.keypoints.clear()
            self.last_seen = media_time
            self.smoothed = None
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
    """Sequence accounting of one stream at the classifier.

    Counted, not inferred from the order of arrival: feature replicas deliver a stream's
    frames out of order, and a frame's drops ride on the next frame kept by the *same*
    replica, which can arrive after a later frame of the other one. So per generation the
    frames lost are those the source sent (the highest sequence number seen, or the end
    marker's count) minus those that arrived minus those reported dropped. That total is
    exact once everything has arrived; while frames are in flight it can briefly read
    high, so :meth:`account` and :meth:`end` report only losses above the highest total
    reported so far.
    """

    stream: str
    generation: int = -1
    frames: int = 0
    dropped: int = 0
    generations: int = 0
    settled_lost: int = 0
    """Frames lost in earlier generations."""
    sent: int = 0
    """Frames the source is known to have sent in this generation."""
    arrived: int = 0
    explained: int = 0
    """Frames of this generation reported dropped on purpose."""
    reported: int = 0

    @property
    def lost(self) -> int:
        return self.settled_lost + max(0, self.sent - self.arrived - self.explained)

    def account(self, generation: int, seq: int, dropped: int) -> int:
        """Record one arrival; return the frames newly counted as lost."""
        if generation != self.generation:
            self.settled_lost = self.lost
            self.generation = generation
            self.sent = self.arrived = self.explained = 0
            self.generations += 1
        self.sent = max(self.sent, seq + 1)
        self.arrived += 1
        self.explained += dropped
        self.dropped += dropped
        self.frames += 1
        return self._newly_lost()

    def end(self, generation: int, next_seq: int, dropped: int) -> int:
        """Account an end of stream: ``next_seq`` frames were sent in ``generation``, and
        ``dropped`` more were dropped on purpose. Returns the frames newly counted as lost."""
        if generation != self.generation:
            return 0
        self.sent = max(self.sent, next_seq)
        self.explained += dropped
        self.dropped += dropped
        return self._newly_lost()

    def _newly_lost(self) -> int:
        lost = self.lost
        new = max(0, lost - self.reported)
        self.reported = max(self.reported, lost)
        return new
