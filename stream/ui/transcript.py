"""The transcript topic: each text line classify accepted, echoed for the web view.

Text publishers (ASR, subtitles) connect to classify's bound text SUB, so nobody else can
read their lines; classify re-publishes each line it accepted (already validated, for one of
the run's streams) as ``[stream id, TextLine JSON]`` on a PUB socket, without blocking.
A line keeps the clock it came with: a file's ASR lines their media span (``media_start``,
``media_end``: seconds into the source), any other line the ``time.monotonic()`` it was
spoken (or arrived) at; the web view shows each when the video reaches it. The web server
validates it again with the same record (:class:`stream.transport.text_topic.TextLine`).

Example:
    >>> echo = TranscriptEcho(socket)  # doctest: +SKIP
    >>> echo.publish("demo0", TextLine(text="I am happy with today", time=12.5))  # doctest: +SKIP
"""

from __future__ import annotations

import zmq
from pydantic import ValidationError

from stream.transport.text_topic import TextLine


class TranscriptEcho:
    """Publishes accepted text lines; a line nobody can take now is dropped and counted."""

    def __init__(self, socket: zmq.Socket) -> None:
        self.socket = socket
        self.published = 0
        self.unsent = 0

    def publish(self, stream: str, line: TextLine) -> None:
        try:  # the words and their clock; who sent them (``origin``) stays with classify
            body = TextLine(text=line.text, time=line.time, media_start=line.media_start,
                            media_end=line.media_end).body()
        except ValidationError:  # a time off its clock's range: not worth a crash
            self.unsent += 1
            return
        try:
            self.socket.send_multipart([stream.encode(), body], flags=zmq.NOBLOCK)
            self.published += 1
        except zmq.Again:
            self.unsent += 1
