"""End-to-end flow control: classify's acknowledgements pace what captures send.

A paced source (a camera, a file in real time) must never wait for the pipeline: the hops
drop the older frame instead (latest-wins). An unpaced source (``realtime: false``: a file
processed offline, the benchmark's saturated mode) has no such deadline, and dropping is
waste: the capture reads and detect processes frames that features then throws away, on
the same cores the bottleneck needs. So classify acknowledges, per stream, the highest
sequence number it has accounted, and an unpaced capture keeps at most ``in_flight``
frames between sending and that acknowledgement, like a TCP window.

An acknowledgement can be lost (PUB/SUB joins late, a frame dies with a restarted stage),
so a capture that hears nothing for ``CREDIT_TIMEOUT_S`` sends the next frame anyway: the
window slows a source down, it never stalls it.

A live source (a camera, a URL, the demo, a file in real time) must not wait either: its
capture keeps reading on time, but sends a frame only while :class:`LiveWindow` has room
(fewer than ``in_flight`` sent frames unacknowledged) and otherwise holds just the newest
one, so frames are dropped at capture, before any stage has worked on them, instead of in
a latest-wins inbox after detect or features paid for them.

Example:
    >>> window = CreditWindow(None, "demo0", in_flight=2)
    >>> window.allows(generation=1, seq=1)   # frames 0 and 1 may be in flight
    True
    >>> window.allows(generation=1, seq=2)
    False
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable

import zmq
from pydantic import TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from stream.transport.wire import WIRE_CONFIG, Count

CREDIT_TIMEOUT_S = 2.0
"""Longest a capture waits for an acknowledgement before sending anyway."""


@dataclass(frozen=True, config=WIRE_CONFIG)
class Ack:
    """Classify's acknowledgement: frames up to ``seq`` of ``generation`` are accounted."""

    generation: Count
    seq: Count


_ACK = TypeAdapter(Ack)


class CreditPublisher:
    """Classify's side: the highest accounted sequence number per stream, after a batch."""

    def __init__(self, socket: zmq.Socket) -> None:
        self.socket = socket
        self._pending: dict[str, tuple[int, int]] = {}

    def ack(self, stream: str, generation: int, seq: int) -> None:
        old = self._pending.get(stream)
        if old is None or (generation, seq) > old:
            self._pending[stream] = (generation, seq)

    def flush(self) -> None:
        for stream, (generation, seq) in self._pending.items():
            body = _ACK.dump_json(Ack(generation, seq))
            with contextlib.suppress(zmq.Again):  # no room: the next batch acknowledges more
                self.socket.send_multipart([stream.encode(), body], flags=zmq.NOBLOCK)
        self._pending.clear()


class CreditWindow:
    """A capture's side: may frame ``seq`` go out, given what classify acknowledged?"""

    def __init__(self, socket: zmq.Socket | None, stream: str, *, in_flight: int,
                 timeout_s: float = CREDIT_TIMEOUT_S) -> None:
        if in_flight < 1:
            raise ValueError(f"in_flight is {in_flight}; it must be at least 1")
        self.socket = socket
        self.stream = stream
        self.in_flight = in_flight
        self.timeout_s = timeout_s
        self.generation = -1
        self.acked = -1
        self.timeouts = 0

    def allows(self, generation: int, seq: int) -> bool:
        if generation != self.generation:
            return seq < self.in_flight
        return seq - self.acked <= self.in_flight

    def wait(self, generation: int, seq: int, stop: Callable[[], bool],
             poll_ms: int = 50) -> None:
        """Block until frame ``seq`` of ``generation`` may go out, ``stop()``, or the
        timeout (then counted in ``timeouts``)."""
        deadline = time.monotonic() + self.timeout_s
        self._receive(generation, 0)
        while not self.allows(generation, seq) and not stop():
            if time.monotonic() >= deadline:
                self.timeouts += 1
                return
            self._receive(generation, poll_ms)

    def _receive(self, generation: int, poll_ms: int) -> None:
        if self.socket is None or not self.socket.poll(poll_ms):
            return
        while True:
            try:
                parts = self.socket.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 2 or parts[0].decode(errors="replace") != self.stream:
                continue  # malformed, or a stream whose name starts with ours
            body = parts[1]
            try:
                ack = _ACK.validate_json(body)
            except ValidationError:
                continue  # malformed: the timeout covers a missing acknowledgement
            ack_generation, ack_seq = ack.generation, ack.seq
            if ack_generation == generation:
                if self.generation != generation:
                    self.generation, self.acked = generation, -1
                self.acked = max(self.acked, ack_seq)


class LiveWindow(CreditWindow):
    """A live capture's side: is there room for one more frame, given what classify
    acknowledged? Counted in frames sent, not in sequence numbers: a live capture drops
    frames before sending them (each keeps its number, so classify sees the gap, explained
    by ``Header.dropped``), and a dropped number must not hold a credit.

    A window full for ``timeout_s`` without an acknowledgement (classify restarted, a frame
    died with a stage) presumes its oldest frame lost and lets one more go (counted in
    ``timeouts``): a live source slows down, it never stalls. A new generation (the source
    reconnected) starts with an empty window, and in slow start: one frame in flight until
    classify has acknowledged one of the generation. Until then the hops may not be
    connected yet (a stage still starting), and ZeroMQ would queue every frame sent for the
    next stage to drain at once, where its depth-1 inbox keeps only the last.

    Example:
        >>> window = LiveWindow(None, "cam0", in_flight=1)
        >>> window.has_room(generation=0, now=0.0)
        True
        >>> window.sent(generation=0, seq=0, now=0.0)
        >>> window.has_room(generation=0, now=0.5)
        False
    """

    def __init__(self, socket: zmq.Socket | None, stream: str, *, in_flight: int,
                 timeout_s: float = CREDIT_TIMEOUT_S) -> None:
        super().__init__(socket, stream, in_flight=in_flight, timeout_s=timeout_s)
        self.outstanding: deque[int] = deque()
        """Sequence numbers sent in ``generation`` and not yet acknowledged, oldest first."""
        self._since = 0.0

    def sent(self, generation: int, seq: int, now: float) -> None:
        """Record frame ``seq`` of ``generation`` as sent at ``now`` (monotonic)."""
        if generation != self.generation:
            self.generation, self.acked = generation, -1
            self.outstanding.clear()
        self.outstanding.append(seq)
        self._since = now

    def has_room(self, generation: int, now: float) -> bool:
        """Whether a frame of ``generation`` may go out now; reads waiting acknowledgements
        without blocking."""
        self._receive(generation, 0)
        if generation != self.generation:
            return True
        self._settle(now)
        if len(self.outstanding) < (self.in_flight if self.acked >= 0 else 1):
            return True
        if now - self._since < self.timeout_s:
            return False
        self.timeouts += 1  # nothing heard: the oldest frame is presumed lost
        self.outstanding.popleft()
        self._since = now
        return True

    def listen(self, generation: int, poll_ms: int) -> None:
        """Wait up to ``poll_ms`` for an acknowledgement (returning as one arrives), so a
        capture with a held frame can send it at once instead of after its next read."""
        if self.socket is None:
            time.sleep(poll_ms / 1000.0)
            return
        self._receive(generation, poll_ms)

    def _settle(self, now: float) -> None:
        """Forget the frames acknowledged; an acknowledgement restarts the timeout."""
        freed = False
        while self.outstanding and self.outstanding[0] <= self.acked:
            self.outstanding.popleft()
            freed = True
        if freed:
            self._since = now
