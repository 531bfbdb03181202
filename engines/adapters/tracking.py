"""A track id per person, from ultralytics' ByteTrack fed with our own detections.

Windows are kept per (stream, person), so a person must keep one id from frame to frame.
ultralytics' :class:`BYTETracker` does that association (Kalman motion, two-stage IoU
matching) on any object that exposes ``conf``, ``cls`` and ``xywh`` arrays and boolean
indexing; :class:`_Boxes` is that object for a :class:`Detections` record, so detection
stays on our verified engines (ultralytics' ``predict`` is not used).

Example:
    >>> tracker = PersonTracker()
    >>> ids = tracker.update(detections)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np

from engines.adapters.records import Detections


@dataclass(frozen=True)
class _Boxes:
    """The slice of ultralytics' ``Boxes`` API that BYTETracker reads."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray

    @property
    def xywh(self) -> np.ndarray:
        centre = (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2
        size = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return np.concatenate([centre, size], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: np.ndarray) -> _Boxes:
        return _Boxes(self.xyxy[index], self.conf[index], self.cls[index])


@dataclass(frozen=True)
class TrackedPerson:
    """One tracked person in one frame: the index of its detection, its id and box."""

    index: int
    track_id: int
    xyxy: np.ndarray
    score: float


class PersonTracker:
    """ByteTrack for one stream. ``frame_rate`` scales how long a lost track is kept."""

    def __init__(self, frame_rate: float = 10.0, *, high_thresh: float = 0.25,
                 low_thresh: float = 0.1, new_track_thresh: float = 0.25,
                 buffer_s: float = 3.0, match_thresh: float = 0.8) -> None:
        from ultralytics.trackers.byte_tracker import BYTETracker

        args = SimpleNamespace(track_high_thresh=high_thresh, track_low_thresh=low_thresh,
                               new_track_thresh=new_track_thresh,
                               track_buffer=max(1, round(buffer_s * frame_rate)),
                               match_thresh=match_thresh, fuse_score=True)
        self._tracker = BYTETracker(args)

    def update(self, detections: Detections) -> list[TrackedPerson]:
        """Tracked persons in this frame (a new detection gets an id once confirmed)."""
        boxes = _Boxes(np.asarray(detections.xyxy, np.float32),
                       np.asarray(detections.scores, np.float32),
                       np.asarray(detections.class_ids, np.float32))
        rows = self._tracker.update(boxes)
        persons = []
        for row in np.asarray(rows).reshape(-1, 8):
            index = int(row[7])
            persons.append(TrackedPerson(index, int(row[4]), np.asarray(row[:4], np.float32),
                                         float(row[5])))
        return persons

    def reset(self) -> None:
        self._tracker.reset()
