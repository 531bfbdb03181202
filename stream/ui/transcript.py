"""The transcript topic: each text line classify accepted, echoed for the web view.

Text publishers (ASR, subtitles) connect to classify's bound text SUB, so nobody else can
read their lines; classify re-publishes each line it accepted (already validated, for one of
the run's streams) as ``[stream id, TextLine JSON]`` on a PUB socket, without blocking.
The web server validates it again with the same record
(:class:`stream.transport.text_topic.TextLine`).

Example:
    >>> echo = TranscriptEcho(socket)  # doctest: +SKIP
    >>> echo.publish("demo0", 12.5, "I am happy with today")  # doctest: +SKIP
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

    def publish(self, stream: str, spoken: float, text: str) -> None:
        try:
            body = TextLine(text=text, time=spoken).body()
        except ValidationError:  # a time off its clock's range: not worth a crash
            self.unsent += 1
            return
        try:
            self.socket.send_multipart([stream.encode(), body], flags=zmq.NOBLOCK)
            self.published += 1
        except zmq.Again:
            self.unsent += 1
