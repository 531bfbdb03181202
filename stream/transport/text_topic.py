"""Live text for the text modality: lines published on a topic by an outside process.

Classify binds a SUB socket at the pipeline's text endpoint (so no stranger can stand in
for the topic; CURVE-secured outside loopback), and an ASR engine or a subtitle feed
connects a PUB to it and publishes ``[stream id, JSON]`` with ``{"text": "..."}`` and
optionally ``"time"``, the ``time.monotonic()`` at which the words were spoken (default:
arrival). Each window gets the text of its time span, embedded by the text engine; a
stream with no text in its window has the text modality masked. See
:mod:`stream.text_client` for a minimal publisher.

A line from hidemo's own ASR stage says ``"origin": "asr"``. The user's own publisher
comes first: from the first line of a stream without that tag, the ASR's lines for that
stream are dropped (counted in ``superseded``), so a user who publishes their own text
gets their words alone, as before the ASR existed.

A line may instead be timed on the stream's media clock, the clock the frames' windows
are cut on: ``"media_start"`` and ``"media_end"``, seconds from the start of the file (the
ASR stage times a file's lines this way, :mod:`stream.stages.asr`; it reads the audio on
its own, so it cannot know when the capture read the frames). Such a line belongs to every
window its span overlaps, however far ahead of the video it was published; the topic
needs ``clock``, each stream's offset from media time to the monotonic time classify
converts its windows with.

Example:
    >>> topic = TextTopic(socket, embed=lambda texts: vectors)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import Annotated, Literal

import numpy as np
import zmq
from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError, model_validator

from stream.transport.status import Rejections
from stream.transport.wire import WIRE_CONFIG, Seconds, WireError, refusal

log = logging.getLogger(__name__)

KEEP_S = 120.0
MAX_LINE_CHARS = 4096
"""A line longer than this is refused (a sentence is far shorter)."""
MAX_LINES_PER_STREAM = 512
"""Lines kept per stream, whatever their times say: memory stays bounded."""
MAX_WINDOW_CHARS = 8192
"""A window's text is cut to its newest this many characters before embedding."""
MAX_MEDIA_LINES_PER_STREAM = 4096
"""Media-timed lines kept per stream (an ASR publishes a file's ahead of its video: about
3 hours of speech at one line per 3 s); the oldest go first."""

StreamClock = Callable[[str], float | None]
"""A stream's current ``capture_time - media_time`` (None: no frame seen yet)."""


class TextLine(BaseModel):
    """The body of one text message: the words, and when they were spoken
    (``time.monotonic()`` seconds; None: when the line arrived). Every reader validates with
    it (``TextLine.model_validate_json``) and every writer builds one and sends
    :meth:`body`."""

    model_config = ConfigDict(**WIRE_CONFIG, frozen=True)

    text: Annotated[str, StringConstraints(min_length=1, max_length=MAX_LINE_CHARS)]
    time: Seconds | None = None
    origin: Literal["asr"] | None = None
    """``asr``: hidemo's ASR stage; None: an outside publisher, which supersedes it."""
    media_start: Seconds | None = None
    media_end: Seconds | None = None

    @model_validator(mode="after")
    def _one_clock(self) -> TextLine:
        if self.media_start is None:
            if self.media_end is not None:
                raise ValueError("media_end without media_start")
            return self
        if self.time is not None:
            raise ValueError("a line is timed by time or by media_start, not both")
        if self.media_end is not None and self.media_end < self.media_start:
            raise ValueError("media_end is before media_start")
        return self

    def body(self) -> bytes:
        """The message body: JSON without the fields left unset (None)."""
        return self.model_dump_json(exclude_none=True).encode()


class TextTopic:
    """Receives text lines per stream and gives the embedding of a window's text.

    ``embed`` turns a list of texts into (N, D) vectors; it is created on first use by
    ``embed_factory`` (so a run without any text never loads the text engine). Messages are
    untrusted: exactly ``[stream id, JSON]``, a stream of this run (``streams``; None:
    any), a :class:`TextLine` body; anything else is counted in ``rejections`` and dropped.
    ``on_line(stream, line)`` is told of each accepted line (the web view's transcript
    topic, :mod:`stream.ui.transcript`) on the clock it came with: a media-timed line as it
    is (its media span), any other with its ``time`` (the arrival time where it had none);
    it must not block.
    """

    def __init__(self, socket: zmq.Socket,
                 embed_factory: Callable[[], Callable[[Sequence[str]], np.ndarray]], *,
                 streams: Collection[str] | None = None, endpoint: str = "text",
                 on_line: Callable[[str, TextLine], None] | None = None,
                 clock: StreamClock | None = None) -> None:
        self.socket = socket
        self.embed_factory = embed_factory
        self.known_streams = None if streams is None else frozenset(streams)
        self.clock = clock
        self.rejections = Rejections(endpoint, "classify")
        self._embed: Callable[[Sequence[str]], np.ndarray] | None = None
        self._lines: dict[str, deque[tuple[float, str]]] = {}
        self._media: dict[str, deque[tuple[float, float, str]]] = {}
        self._outside: set[str] = set()
        """Streams an outside publisher has sent a line for: the ASR's are dropped."""
        self.superseded = 0
        """ASR lines dropped because the user publishes their own for the stream."""
        self._cache: tuple[str, np.ndarray] | None = None
        self.received = 0
        self.on_line = on_line

    @property
    def malformed(self) -> int:
        return self.rejections.total

    def poll(self, limit: int = 10_000) -> None:
        """Read the lines waiting on the socket (at most ``limit``, so a flood cannot
        keep the stage from its frames)."""
        for _ in range(limit):
            try:
                parts = self.socket.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                stream, line = self._parse(parts)
            except ValueError as error:
                self.rejections.add(getattr(error, "reason", "schema"), error)
                continue
            if line.origin == "asr" and stream in self._outside:
                self.superseded += 1
                continue
            if line.origin is None and stream not in self._outside:
                self._outside.add(stream)  # the user's own text from now on, alone
                self._lines.pop(stream, None)
                self._media.pop(stream, None)
            if line.media_start is not None:
                self._add_media(stream, line)
                continue
            lines = self._lines.get(stream)
            if lines is None:
                lines = self._lines[stream] = deque(maxlen=MAX_LINES_PER_STREAM)
            spoken = time.monotonic() if line.time is None else line.time
            lines.append((spoken, line.text))
            while lines and lines[0][0] < spoken - KEEP_S:
                lines.popleft()
            self.received += 1
            if self.on_line is not None:
                self.on_line(stream, TextLine(text=line.text, time=spoken))

    def _add_media(self, stream: str, line: TextLine) -> None:
        assert line.media_start is not None
        lines = self._media.get(stream)
        if lines is None:
            lines = self._media[stream] = deque(maxlen=MAX_MEDIA_LINES_PER_STREAM)
        end = line.media_start if line.media_end is None else line.media_end
        lines.append((line.media_start, end, line.text))
        self.received += 1
        if self.on_line is not None:  # on the media clock: a viewer shows it when the video
            self.on_line(stream, TextLine(text=line.text, media_start=line.media_start,
                                          media_end=end))  # reaches media_start

    def _parse(self, parts: list[bytes]) -> tuple[str, TextLine]:
        if len(parts) != 2:
            raise WireError(f"{len(parts)} parts; expected [stream, JSON]", "parts")
        try:
            stream = parts[0].decode()
        except UnicodeDecodeError:
            raise WireError("stream id is not UTF-8", "schema") from None
        if self.known_streams is not None and stream not in self.known_streams:
            raise WireError(f"stream {stream[:32]!r} is not one of this run's", "unknown-stream")
        try:
            return stream, TextLine.model_validate_json(parts[1])
        except ValidationError as error:
            raise refusal(error, "text line") from None

    def window_text(self, stream: str, start: float, end: float) -> str | None:
        """The lines of ``stream`` spoken in [start, end] (monotonic seconds), joined in
        time order: lines timed on the monotonic clock inside it, and media-timed lines
        whose span overlaps it once the stream's ``clock`` offset maps it to media time."""
        timed = [(spoken, text) for spoken, text in self._lines.get(stream, ())
                 if start <= spoken <= end]
        offset = None if self.clock is None or stream not in self._media else self.clock(stream)
        if offset is not None:
            media = self._media[stream]
            low, high = start - offset, end - offset
            timed += [(begin + offset, text) for begin, finish, text in media
                      if begin <= high and finish >= low]
            while media and media[0][1] < low - KEEP_S:  # long behind every window now
                media.popleft()
        if not timed:
            return None
        timed.sort(key=lambda item: item[0])
        return " ".join(text for _, text in timed)[-MAX_WINDOW_CHARS:]

    def vector(self, stream: str, start: float, end: float) -> np.ndarray | None:
        text = self.window_text(stream, start, end)
        if text is None:
            return None
        if self._cache is not None and self._cache[0] == text:
            return self._cache[1]
        if self._embed is None:
            self._embed = self.embed_factory()
        vector = np.asarray(self._embed([text]), np.float32)[0]
        self._cache = (text, vector)
        return vector

    @property
    def streams(self) -> list[str]:
        return sorted({*self._lines, *self._media})

