"""Live text for the text modality: lines published on a topic by an outside process.

An ASR engine or a subtitle feed binds a PUB socket at the pipeline's text endpoint (it is
the long-lived service; classify's SUB connects to it and reconnects by itself whenever
either side restarts) and publishes ``[stream id, JSON]`` with ``{"text": "..."}`` and
optionally ``"time"``, the ``time.monotonic()`` at which the words were spoken (default:
arrival). Each window gets the text of its time span, embedded by the text engine; a
stream with no text in its window has the text modality masked. See
:mod:`stream.text_client` for a minimal publisher.

Example:
    >>> topic = TextTopic(socket, embed=lambda texts: vectors)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

import numpy as np
import zmq

log = logging.getLogger(__name__)

KEEP_S = 120.0


class TextTopic:
    """Receives text lines per stream and gives the embedding of a window's text.

    ``embed`` turns a list of texts into (N, D) vectors; it is created on first use by
    ``embed_factory`` (so a run without any text never loads the text engine).
    """

    def __init__(self, socket: zmq.Socket,
                 embed_factory: Callable[[], Callable[[Sequence[str]], np.ndarray]]) -> None:
        self.socket = socket
        self.embed_factory = embed_factory
        self._embed: Callable[[Sequence[str]], np.ndarray] | None = None
        self._lines: dict[str, deque[tuple[float, str]]] = {}
        self._cache: tuple[str, np.ndarray] | None = None
        self.received = 0
        self.malformed = 0

    def poll(self) -> None:
        """Read every line waiting on the socket."""
        while True:
            try:
                parts = self.socket.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                stream = parts[0].decode()
                body = json.loads(parts[-1])
                text = str(body["text"])
                spoken = float(body.get("time", time.monotonic()))
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
                self.malformed += 1
                continue
            lines = self._lines.setdefault(stream, deque())
            lines.append((spoken, text))
            while lines and lines[0][0] < spoken - KEEP_S:
                lines.popleft()
            self.received += 1

    def window_text(self, stream: str, start: float, end: float) -> str | None:
        """The lines of ``stream`` spoken in [start, end] (monotonic seconds), joined."""
        lines = [text for spoken, text in self._lines.get(stream, ()) if start <= spoken <= end]
        return " ".join(lines) if lines else None

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
        return sorted(self._lines)
