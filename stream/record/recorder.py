"""The recorder's state: frames held for their predictions, then drawn and written.

:class:`Recorder` takes what the process receives (record frames, predictions, transcript
lines) and writes each stream's video. A frame is held ``delay_s`` seconds (wall clock)
before it is drawn, so that the prediction made on the window ending at that frame, which
reaches the recorder a little after the frame, is drawn on it: each person's tag shows the
newest prediction whose ``capture_time`` (its window's newest frame) is not later than the
frame's. The subtitle is the newest transcript line said at or before the frame, for its
span or a few seconds: a line timed on the media clock (``media_start``, ``media_end``) is
placed by the frame's media time, one timed by ``time.monotonic()`` by its capture time.
Nothing here waits on a socket; memory is bounded (at most :data:`MAX_PENDING` held
frames, :data:`KEEP_PREDICTIONS` predictions for each of at most :data:`KEEP_PERSONS`
persons, :data:`KEEP_LINES` lines per stream).

Frames lost on the way are counted from the publisher's count in each message
(:mod:`stream.record.wire`): a gap is frames never received; a count lower than the last
one is a restarted publisher (a restarted detect), which starts again from 0.

Example:
    >>> recorder = Recorder({"demo0": Path("run.mp4")}, fps=5.0)  # doctest: +SKIP
    >>> recorder.frame(record, now=time.monotonic())  # doctest: +SKIP
    >>> recorder.close()["streams"]["demo0"]["frames"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from stream.prediction import Prediction
from stream.record.draw import Tag, annotate
from stream.record.wire import RecordFrame
from stream.record.writer import VideoWriter
from stream.strictjson import JsonDict

log = logging.getLogger(__name__)

MAX_PENDING = 256
"""Frames held at most (all streams): past it the oldest is written at once."""
KEEP_PREDICTIONS = 64
KEEP_PERSONS = 1024
"""Persons whose predictions are kept; past it, those not seen for longest are forgotten."""
KEEP_LINES = 32
SUBTITLE_MIN_S = 3.0
SUBTITLE_MAX_S = 8.0
SUBTITLE_S_PER_CHAR = 0.07
RANDOM_WARNING = "RANDOM WEIGHTS"


@dataclass(frozen=True)
class Line:
    """A transcript line and when it was said: ``spoken`` (monotonic) or ``media``."""

    text: str
    spoken: float | None
    media: tuple[float, float] | None


@dataclass(frozen=True)
class Held:
    arrived: float
    record: RecordFrame


class Recorder:
    """Writes one MP4 per stream of ``paths`` from the frames it is given."""

    def __init__(self, paths: Mapping[str, Path], fps: float, codec: str = "auto",
                 delay_s: float = 2.0,
                 writer: Callable[[Path, float, str], VideoWriter] = VideoWriter) -> None:
        self.paths = dict(paths)
        self.fps = fps
        self.codec = codec
        self.delay_s = delay_s
        self._writer = writer
        self.writers: dict[str, VideoWriter] = {}
        self.pending: deque[Held] = deque()
        self.tags: dict[tuple[str, int], deque[tuple[float, Tag]]] = {}
        self.lines: dict[str, deque[Line]] = {s: deque(maxlen=KEEP_LINES) for s in self.paths}
        self.random: dict[str, bool] = dict.fromkeys(self.paths, False)
        self.last_count: dict[str, int] = {}
        self.received = Counter[str]()
        self.dropped = Counter[str]()
        self.predictions = 0
        self.transcript_lines = 0
        self.media_shift: dict[str, float] = {}
        self.last_media: dict[str, float] = {}

    # -- what arrives -------------------------------------------------------------------

    def frame(self, record: RecordFrame, now: float) -> None:
        """A frame to draw once its predictions had ``delay_s`` to arrive."""
        stream = record.header.stream
        last = self.last_count.get(stream)
        if last is None or record.count <= last:  # the first, or a restarted publisher's
            self.dropped[stream] += record.count
        else:
            self.dropped[stream] += record.count - last - 1
        self.last_count[stream] = record.count
        self.received[stream] += 1
        self.pending.append(Held(now, record))
        while len(self.pending) > MAX_PENDING:
            self._write(self.pending.popleft().record)

    def prediction(self, record: Prediction) -> None:
        key = (record.stream, record.person)
        tags = self.tags.pop(key, None)  # re-inserted: the dict's order is by last seen
        if tags is None:
            tags = deque(maxlen=KEEP_PREDICTIONS)
            if len(self.tags) >= KEEP_PERSONS:
                del self.tags[next(iter(self.tags))]
        self.tags[key] = tags
        tags.append((record.capture_time, Tag(record.label, record.probs.get("positive", 0.0))))
        if record.random_weights:
            self.random[record.stream] = True
        self.predictions += 1

    def line(self, stream: str, text: str, spoken: float | None = None,
             media: tuple[float, float] | None = None) -> None:
        """A transcript line, said at ``spoken`` (monotonic seconds, the frames' capture
        clock) or over ``media`` (start and end on the stream's media clock)."""
        if stream in self.lines and (spoken is not None or media is not None):
            self.lines[stream].append(Line(text, spoken, media))
            self.transcript_lines += 1

    # -- writing ------------------------------------------------------------------------

    def flush(self, now: float) -> None:
        """Write every frame held ``delay_s`` or longer."""
        while self.pending and self.pending[0].arrived <= now - self.delay_s:
            self._write(self.pending.popleft().record)

    def _write(self, record: RecordFrame) -> None:
        header = record.header
        stream = header.stream
        writer = self.writers.get(stream)
        if writer is None:
            writer = self.writers[stream] = self._writer(self.paths[stream], self.fps,
                                                         self.codec)
        tags = {}
        for person in header.meta.persons:
            tag = self._tag(stream, person.track_id, header.capture_time)
            if tag is not None:
                tags[person.track_id] = tag
        media = self._media_time(stream, header.media_time)
        minutes, seconds = divmod(header.media_time, 60.0)
        image = annotate(record.image, header.meta.persons, record.keypoints, tags,
                         self._subtitle(stream, header.capture_time, header.media_time),
                         f"{stream} {int(minutes):02d}:{seconds:04.1f}",
                         RANDOM_WARNING if self.random.get(stream) else None)
        writer.write(image, media)

    def _media_time(self, stream: str, media: float) -> float:
        """The frame's media time, kept increasing across a reopened source (whose media
        time starts again): it then follows on one frame period after the last."""
        shift = self.media_shift.get(stream, 0.0)
        last = self.last_media.get(stream)
        if last is not None and media + shift <= last:
            shift = last + 1.0 / self.fps - media
            self.media_shift[stream] = shift
        self.last_media[stream] = media + shift
        return media + shift

    def _tag(self, stream: str, person: int, capture_time: float) -> Tag | None:
        tags = self.tags.get((stream, person))
        if not tags:
            return None
        at = bisect_right([t for t, _ in tags], capture_time + 1e-6)
        return tags[at - 1][1] if at else None

    def _subtitle(self, stream: str, capture_time: float, media_time: float) -> str | None:
        """The line said most recently at or before the frame, while it is on: for its
        span (a media-timed line) or a time for its length, at least
        :data:`SUBTITLE_MIN_S`."""
        best: tuple[float, str] | None = None
        for line in self.lines.get(stream, ()):
            if line.media is not None:
                ago, span = media_time - line.media[0], line.media[1] - line.media[0]
            else:
                assert line.spoken is not None
                ago, span = capture_time - line.spoken, 0.0
            shown = max(span, min(SUBTITLE_MAX_S, max(SUBTITLE_MIN_S,
                                                      SUBTITLE_S_PER_CHAR * len(line.text))))
            if 0.0 <= ago <= shown and (best is None or ago < best[0]):
                best = (ago, line.text)
        return None if best is None else best[1]

    def close(self) -> JsonDict:
        """Write every held frame, close every video; what was written, per stream
        (``failed``: the streams whose file could not be finished)."""
        failed: list[str] = []
        try:
            while self.pending:
                self._write(self.pending.popleft().record)
        except Exception:  # the files already begun still get closed
            log.exception("the recorder could not write the frames it held")
            self.pending.clear()
        for stream, writer in self.writers.items():
            try:
                writer.close()
            except Exception as error:  # noqa: BLE001 - each file closes on its own
                log.error("recording %s: %s could not be closed: %s", stream,
                          writer.path, error)
                failed.append(stream)
                writer.abandon()
        return self.stats(failed)

    def stats(self, failed: list[str] | None = None) -> JsonDict:
        streams: JsonDict = {}
        for stream, path in self.paths.items():
            writer = self.writers.get(stream)
            kept = writer is not None and writer.frames > 0 and stream not in (failed or [])
            streams[stream] = {
                "path": str(path) if kept else None,
                "frames": writer.frames if writer is not None else 0,
                "received": self.received[stream], "dropped": self.dropped[stream],
                "seconds": round(writer.seconds, 3) if writer is not None else 0.0,
                "size": list(writer.size) if writer is not None and writer.size else None,
                "codec": writer.codec if writer is not None else None}
        return {"streams": streams, "failed": list(failed or []),
                "predictions": self.predictions,
                "transcript_lines": self.transcript_lines, "held": len(self.pending),
                "time": time.time()}
