"""Analysis rates: which frames of a stream each modality looks at.

On weak hardware every modality runs at its own rate (say image embeddings at 2 fps and
keypoints at 10 fps) whatever the camera or file delivers. A :class:`RateSampler` keeps the
first frame that falls in each ``1 / rate`` second slot of the stream's clock. These are
the slots :func:`engines.adapters.windows.place_on_grid` lays a window on when the window
starts on a multiple of ``1 / rate``: then every kept frame owns one grid slot and none is
overwritten (a window starting elsewhere can see two frames in one slot and none in the
next when the source rate is not a multiple of ``rate``). Feature extraction and the live
pipeline decimate with this one class, so training sees the frames serving sees.

Example:
    >>> sampler = RateSampler(5.0)
    >>> [t for t in (0.0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.24) if sampler.take(t)]
    [0.0, 0.2]
"""

from __future__ import annotations

import math

import numpy as np

SLOT_EPSILON = 1e-9
"""Added before flooring ``time * rate`` (as ``place_on_grid`` does), so a frame stamped
exactly on a slot boundary (0.2 s at 5 fps, computed as 1 / 25 * 5) is not pushed into the
previous slot by rounding."""


def slot_of(time: float, rate: float) -> int:
    """Index of the ``1 / rate`` second slot that ``time`` (seconds) falls in."""
    return math.floor(time * rate + SLOT_EPSILON)


class RateSampler:
    """Says, frame by frame in time order, whether a frame is due at ``rate`` per second.

    A frame is due when it is the first one in a new slot. A stream slower than ``rate``
    has every frame kept; a jittery one keeps at most one per slot. One instance per
    stream and modality; :meth:`reset` for a new stream.
    """

    def __init__(self, rate: float) -> None:
        if not rate > 0 or not math.isfinite(rate):
            raise ValueError(f"analysis rate is {rate}; it must be a positive number of "
                             "frames per second")
        self.rate = float(rate)
        self.reset()

    def reset(self) -> None:
        """Forget the last slot (a new stream, or a seek)."""
        self._last_slot: int | None = None

    def take(self, time: float) -> bool:
        """True when the frame at ``time`` seconds is due (and remember its slot)."""
        slot = slot_of(time, self.rate)
        if self._last_slot is not None and slot <= self._last_slot:
            return False
        self._last_slot = slot
        return True


def decimate(times: np.ndarray, rate: float) -> np.ndarray:
    """Indices of ``times`` (ascending seconds) that a :class:`RateSampler` would keep."""
    sampler = RateSampler(rate)
    return np.array([i for i, t in enumerate(np.asarray(times, np.float64)) if sampler.take(t)],
                    dtype=np.int64)
