"""Transcript lines held until the video reaches them, stamped on the stream's own clock.

A file's ASR transcribes ahead of its video (its lines carry their media span), and a
subtitle feed or a live ASR publishes on the monotonic clock, after the words or before the
frame that shows them has been analysed. The page shows one clock per stream, that of the
video it draws: a line waits here until the stream's newest preview frame has reached it,
then goes out stamped with the time a viewer can check against the video: seconds into the
source (``media``) for a file, wall-clock seconds (``wall``) for a live source. A line is
never shown with a time later than the frame on screen, nor with the time it happened to
arrive at.

One offset joins the two clocks, the preview's ``capture_time - media_time`` (what classify
converts its windows with): a monotonic time ``t`` is media time ``t - offset``.

Example:
    >>> held = HeldLines(media=True)
    >>> held.add(TextLine(text="hello", media_start=2.0, media_end=3.0))
    >>> held.release(VideoClock(capture_time=101.0, media_time=1.0), lambda t: t)
    []
    >>> [line["text"] for line in held.release(VideoClock(102.5, 2.5), lambda t: t)]
    ['hello']
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from stream.strictjson import JsonDict
from stream.transport.text_topic import MAX_LINE_CHARS, MAX_MEDIA_LINES_PER_STREAM, TextLine

MAX_HELD = MAX_MEDIA_LINES_PER_STREAM
"""Lines held per stream (a file's ASR may run far ahead of an unpaced video); beyond it
the oldest go first, counted."""


@dataclass(frozen=True)
class VideoClock:
    """Where a stream's video is: its newest preview frame's capture (``time.monotonic()``)
    and media times."""

    capture_time: float
    media_time: float

    @property
    def offset(self) -> float:
        return self.capture_time - self.media_time


class HeldLines:
    """One stream's lines not yet reached by its video; ``media``: stamp them with media
    time (a file), else with wall time (a live source)."""

    def __init__(self, media: bool, keep: int = MAX_HELD) -> None:
        self.media = media
        self.lines: deque[TextLine] = deque(maxlen=keep)
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.lines)

    def add(self, line: TextLine) -> None:
        """Hold ``line``; one on no clock at all is timed by its arrival."""
        if line.time is None and line.media_start is None:
            line = line.model_copy(update={"time": time.monotonic()})
        if len(self.lines) == self.lines.maxlen:
            self.dropped += 1
        self.lines.append(line)

    def release(self, clock: VideoClock,
                to_wall: Callable[[float], float]) -> list[JsonDict]:
        """The lines ``clock`` has reached, in the order they were said, as the page shows
        them (``{"text", "clock": "media", "media_start", "media_end"}`` or ``{"text",
        "clock": "wall", "time_wall"}``); the others stay held."""
        due: list[tuple[float, TextLine]] = []
        kept: list[TextLine] = []
        for line in self.lines:
            start = self._media_start(line, clock)
            (due.append((start, line)) if start <= clock.media_time else kept.append(line))
        if not due:
            return []
        self.lines = deque(kept, maxlen=self.lines.maxlen)
        due.sort(key=lambda item: item[0])
        return [self._entry(start, line, clock, to_wall) for start, line in due]

    @staticmethod
    def _media_start(line: TextLine, clock: VideoClock) -> float:
        if line.media_start is not None:
            return line.media_start
        return (line.time or 0.0) - clock.offset  # add() gave it one

    def _entry(self, start: float, line: TextLine, clock: VideoClock,
               to_wall: Callable[[float], float]) -> JsonDict:
        text = line.text[:MAX_LINE_CHARS]
        if self.media:
            end = line.media_end if line.media_start is not None else None
            start = max(0.0, start)  # words before the first frame: the source's start
            return {"text": text, "clock": "media", "media_start": _ms(start),
                    "media_end": _ms(max(start, end if end is not None else start))}
        return {"text": text, "clock": "wall", "time_wall": _ms(to_wall(start + clock.offset))}


def _ms(seconds: float) -> float:
    """Down to the millisecond: never later than the frame that reached it."""
    return math.floor(seconds * 1000.0) / 1000.0
