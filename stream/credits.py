"""End-to-end flow control for sources read as fast as the pipeline takes them.

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
from collections.abc import Callable

import zmq
from pydantic import TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from stream.wire import WIRE_CONFIG, Count

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
