"""Live hops: bounded latest-wins inboxes, non-blocking sends, dynamic batches.

Real time beats completeness: a stage that falls behind must work on the newest frame,
not on a queue of old ones. ZeroMQ high-water marks alone do not give that (frames hide in
the sender's queue, the receiver's queue and the kernel), so each stage drains its socket
completely on every turn into a :class:`LatestInbox` that keeps at most ``depth`` frames
per stream and counts every frame it pushes out. Control messages (end of stream) are
never dropped. Whatever a hop drops is carried forward in the next message of the same
stream (``Header.dropped``), so the classifier can tell frames dropped on purpose from
frames lost (a crash, a dead peer).

Example:
    >>> inbox = LatestInbox(depth=1)
    >>> _ = [inbox.offer(m) for m in messages]  # doctest: +SKIP
    >>> batch = inbox.take(max_batch=8)  # doctest: +SKIP
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, replace

import zmq

from stream.transport.wire import MAX_COUNT, Message, WireError, encode


class DropPolicy(enum.StrEnum):
    """What a full inbox does with a new frame. Only ``LATEST`` is live-safe."""

    LATEST = "latest"


class LatestInbox:
    """Per stream, the newest ``depth`` frames; control messages kept apart, in order.

    ``dropped`` counts the frames pushed out per stream. A dropped frame's own
    ``Header.dropped`` and the drop itself are added to the next frame kept for that
    stream, so the count travels on with the data.

    Latest-wins is for frames that came while the stage was busy. While it is idle and
    holds frames only to fill a batch (``batching``, set by the stage loop), a frame that
    would push one of them out is set aside instead (``deferred``): the batch closes at
    once (:meth:`BatchPolicy.ready`), and :meth:`take` then puts the frame set aside in its
    stream's queue. Otherwise two frames of one stream arriving within ``max_delay_ms``
    (a capture sending its held frame and the next one as two credits come back) cost a
    frame its capture had already read and sent.
    """

    def __init__(self, depth: int = 1, keep: dict[str, int] | None = None) -> None:
        if depth < 1:
            raise ValueError(f"inbox depth is {depth}; it must be at least 1")
        self.depth = depth
        self.keep = dict(keep or {})
        """Streams that keep more than ``depth`` frames: an offline stream (``realtime:
        false``) keeps its ``in_flight``. Its capture never has more out unacknowledged, so
        keeping them all never grows latency, and a file is meant to be analysed whole."""
        self._frames: OrderedDict[str, deque[Message]] = OrderedDict()
        self._control: deque[Message] = deque()
        self._deferred: deque[Message] = deque()
        self.dropped: dict[str, int] = {}
        self.first_arrival: float | None = None
        self.batching = False
        """The stage is idle, holding its frames to fill a batch: none is pushed out."""

    def offer(self, message: Message, now: float | None = None) -> None:
        """Add ``message``; if its stream is full, drop that stream's oldest frame (or, while
        ``batching``, set ``message`` aside for after the batch)."""
        if self.first_arrival is None:
            self.first_arrival = time.monotonic() if now is None else now
        if message.is_control:
            self._control.append(message)
            return
        self._place(message)

    def depth_of(self, stream: str) -> int:
        """Frames ``stream`` keeps: ``depth``, or more where ``keep`` says so."""
        return max(self.depth, self.keep.get(stream, 0))

    @property
    def deferred(self) -> int:
        """Frames set aside while batching: the batch must close now."""
        return len(self._deferred)

    def _place(self, message: Message) -> None:
        stream = message.header.stream
        queue = self._frames.setdefault(stream, deque())
        depth = self.depth_of(stream)
        if (len(queue) >= depth and self.batching) or any(
                m.header.stream == stream for m in self._deferred):  # after those, in order
            self._deferred.append(message)
            return
        if len(queue) >= depth:
            old = queue.popleft()
            self.dropped[stream] = self.dropped.get(stream, 0) + 1
            carried = old.header.dropped + 1
            if queue:
                queue[0] = _add_dropped(queue[0], carried)
            else:
                message = _add_dropped(message, carried)
        queue.append(message)

    def __len__(self) -> int:
        return (sum(len(q) for q in self._frames.values()) + len(self._control)
                + len(self._deferred))

    @property
    def has_control(self) -> bool:
        return bool(self._control)

    @property
    def frames(self) -> int:
        return sum(len(q) for q in self._frames.values())

    def take_control(self) -> list[Message]:
        """Control messages waiting, oldest first (cleared)."""
        out = list(self._control)
        self._control.clear()
        self._reset_clock()
        return out

    def take(self, max_batch: int) -> list[Message]:
        """Up to ``max_batch`` frames, the oldest kept one of each stream in turn (fair)."""
        batch: list[Message] = []
        while len(batch) < max_batch and any(self._frames.values()):
            for stream in list(self._frames):
                queue = self._frames[stream]
                if queue and len(batch) < max_batch:
                    batch.append(queue.popleft())
                    self._frames.move_to_end(stream)  # the next batch starts elsewhere
        self.batching = False
        deferred, self._deferred = self._deferred, deque()
        self._reset_clock()
        for message in deferred:  # in arrival order; they start the next batch
            if self.first_arrival is None:
                self.first_arrival = message.arrived or time.monotonic()
            stream = message.header.stream
            if len(self._frames[stream]) >= self.depth_of(stream):
                self._deferred.append(message)  # its stream's frame did not fit this batch
            else:
                self._place(message)
        return batch

    def _reset_clock(self) -> None:
        if not len(self):
            self.first_arrival = None


def _add_dropped(message: Message, count: int) -> Message:
    """``message`` carrying ``count`` more drops (saturating: a peer's absurd count must not
    overflow the header's bound and take the stage down)."""
    dropped = min(MAX_COUNT, message.header.dropped + count)
    return replace(message, header=replace(message.header, dropped=dropped))


@dataclass(frozen=True)
class BatchPolicy:
    """Close a batch at ``max_batch`` items or ``max_delay_ms`` after its first item."""

    max_batch: int = 8
    max_delay_ms: float = 10.0

    def ready(self, inbox: LatestInbox, now: float) -> bool:
        if inbox.frames == 0:
            return False
        if inbox.deferred or inbox.frames >= self.max_batch or inbox.first_arrival is None:
            return True
        return (now - inbox.first_arrival) * 1000.0 >= self.max_delay_ms

    def wait_ms(self, inbox: LatestInbox, now: float, idle_ms: float) -> float:
        """How long to poll before the current batch must close (``idle_ms`` when empty)."""
        if inbox.frames == 0 or inbox.first_arrival is None:
            return idle_ms
        left = self.max_delay_ms - (now - inbox.first_arrival) * 1000.0
        return max(0.0, min(idle_ms, left))


def drain(socket: zmq.Socket, inbox: LatestInbox, decode: Callable[[list], Message],
          on_malformed: Callable[[Exception], None], limit: int = 10_000) -> int:
    """Move every message waiting on ``socket`` into ``inbox``, each stamped with its
    arrival time; return how many came."""
    count = 0
    while count < limit:
        try:
            parts = socket.recv_multipart(flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            break
        count += 1
        try:
            message = decode(parts)
        except WireError as error:
            on_malformed(error)
            continue
        except Exception as error:  # noqa: BLE001 - a hostile message must never end a stage
            on_malformed(WireError(f"undecodable: {type(error).__name__}", "undecodable"))
            continue
        inbox.offer(replace(message, arrived=time.monotonic()))
    return count


class Sender:
    """Non-blocking multipart sends; a frame that would block is a counted drop.

    A blocked downstream (its queue at the high-water mark, or no peer connected, e.g.
    while a stage restarts) must not stall this stage: the frame is dropped, counted per
    stream in ``pending_dropped`` and added to that stream's next message. Control
    messages (end of stream) are never dropped: one that finds no room waits in a backlog
    that :meth:`flush` retries on every turn of the stage loop.
    """

    def __init__(self, socket: zmq.Socket) -> None:
        self.socket = socket
        self.sent = 0
        self.blocked = 0
        self.last_blocked: float = 0.0
        self.pending_dropped: dict[str, int] = {}
        self.backlog: deque[Message] = deque()

    def send(self, message: Message) -> bool:
        """Send ``message`` now; False when it was dropped (a frame) or backlogged (control)."""
        if message.is_control:
            self.backlog.append(message)
            self.flush()
            return not self.backlog
        stream = message.header.stream
        carried = self.pending_dropped.pop(stream, 0)
        if carried:
            message = _add_dropped(message, carried)
        if self._try(message):
            return True
        self.blocked += 1
        self.last_blocked = time.monotonic()
        self.pending_dropped[stream] = message.header.dropped + 1
        return False

    def flush(self) -> None:
        """Send backlogged control messages, oldest first, while there is room."""
        while self.backlog:
            message = self.backlog[0]
            carried = self.pending_dropped.pop(message.header.stream, 0)
            if carried:  # frames dropped before an end of stream travel with it
                message = self.backlog[0] = _add_dropped(message, carried)
            if not self._try(message):
                return
            self.backlog.popleft()

    def _try(self, message: Message) -> bool:
        try:
            self.socket.send_multipart(encode(message.header, message.arrays),
                                       flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            return False
        self.sent += 1
        return True
