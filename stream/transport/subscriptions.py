"""Publishers that hold bounded state per subscriber: only subscriptions that can match.

A plain ZeroMQ PUB stores every subscription a peer sends, in a trie with a node per
byte, and keeps it until the peer disconnects: thousands of distinct, kilobyte-long topics
from one local process cost hundreds of megabytes. Every PUB of the pipeline is instead an
XPUB in manual mode (:class:`GatedPub`): subscriptions arrive as messages, and the
publisher applies only those that can ever match what it sends (everything, ``b""``, or
one of the run's stream ids), counting the others in :attr:`GatedPub.rejections` (reason
``subscription``). libzmq still records each subscription message of a connection until
that connection closes (it replays them upstream on termination), so what bounds the cost
of a refused one is its size: a subscription longer than any topic could be (the longest
stream id, or :data:`HANDSHAKE_BYTES` which the handshake needs anyway) drops the
connection that sends it (``ZMQ_MAXMSGSIZE``) before it is stored. The number of short
refused subscriptions one connection may send is not bounded by libzmq; they are counted.

Pending subscriptions are applied before every publish (so a subscriber's first message
is never sent before its subscription is), and by :meth:`GatedPub.admit` whenever the
owner's loop finds the socket readable.

Example:
    >>> context = zmq.Context.instance()
    >>> pub = open_gated_pub(context, topics={"cam0"}, endpoint="predictions",
    ...                      stage="classify")
    >>> pub.topics == frozenset({b"", b"cam0"})
    True
    >>> pub.close()
"""

from __future__ import annotations

from collections.abc import Collection

import zmq

from stream.transport.status import Rejections

SUBSCRIBE_OVERHEAD = 16
"""Bytes a subscription takes on the wire besides its topic: one flag byte as a message,
or ZMTP 3.1's ``SUBSCRIBE`` command (its name and length) as newer peers send it."""
HANDSHAKE_BYTES = 128
"""The bound also applies to the handshake's READY command (its metadata: a default
subscriber's takes a few dozen bytes); CURVE's larger INITIATE is allowed for where CURVE
is on (:data:`stream.transport.endpoints.CURVE_HANDSHAKE_BYTES`)."""
ADMIT_PER_TURN = 1000
"""Subscription messages one :meth:`GatedPub.admit` reads at most: a flood of them costs
the owner's loop a bounded time per turn."""


class GatedPub(zmq.Socket):
    """An XPUB (manual subscriptions) that applies only the subscriptions it can match.

    ``topics`` None admits any topic (tests and tools that publish arbitrary topics);
    otherwise only ``b""`` and the given topics. pyzmq needs a subclass's attributes
    declared on the class, hence the class-level defaults."""

    topics: frozenset[bytes] | None = None
    rejections: Rejections | None = None
    _in_message: bool = False

    def gate(self, topics: Collection[str] | None, endpoint: str, stage: str) -> GatedPub:
        """Turn manual subscriptions on and set what may be subscribed (before binding)."""
        self.setsockopt(zmq.XPUB_MANUAL, 1)
        self.topics = None if topics is None else frozenset(
            {b"", *(topic.encode() for topic in topics)})
        if self.topics is not None:  # a longer subscription cannot match: drop its sender
            longest = max(len(topic) for topic in self.topics)
            self.setsockopt(zmq.MAXMSGSIZE, max(HANDSHAKE_BYTES, longest + SUBSCRIBE_OVERHEAD))
        self.rejections = Rejections(endpoint, stage)
        return self

    def admit(self, limit: int = ADMIT_PER_TURN) -> int:
        """Apply the pending subscriptions that can match, refuse (and count) the others;
        return how many were read."""
        count = 0
        while count < limit:
            try:
                message = zmq.Socket.recv(self, zmq.NOBLOCK)
            except zmq.Again:
                break
            count += 1
            if not message or message[0] not in (0, 1):
                self._refuse("not-subscription", "a message that is not a subscription")
                continue
            topic = message[1:]
            if self.topics is not None and topic not in self.topics:
                self._refuse("subscription", f"subscription to an unknown topic "
                                             f"({len(topic)} bytes)")
                continue
            option = zmq.SUBSCRIBE if message[0] == 1 else zmq.UNSUBSCRIBE
            self.setsockopt(option, topic)  # manual mode: applies to the sender's pipe
        return count

    def send(self, data: object, flags: int = 0, copy: bool = True, track: bool = False,
             **kwargs: object) -> zmq.MessageTracker | None:
        if not self._in_message:  # never between the parts of one message
            self.admit()
        tracker = super().send(data, flags=flags, copy=copy, track=track, **kwargs)
        # only a part that went out starts or ends a message (a NOBLOCK send may not)
        self._in_message = bool(flags & zmq.SNDMORE)
        return tracker

    def _refuse(self, reason: str, detail: str) -> None:
        if self.rejections is not None:
            self.rejections.add(reason, detail)


def open_gated_pub(context: zmq.Context, *, topics: Collection[str] | None, endpoint: str,
                   stage: str) -> GatedPub:
    """A new, unbound :class:`GatedPub` on ``context``."""
    socket = context.socket(zmq.XPUB, socket_class=GatedPub)
    return socket.gate(topics, endpoint, stage)


class PublisherWatch:
    """A :class:`GatedPub` as a stage loop watches a socket: readable means subscriptions
    wait (:meth:`poll` admits them), and its refusals count as the stage's rejections."""

    def __init__(self, socket: GatedPub) -> None:
        if socket.rejections is None:
            raise ValueError("watch a publisher opened gated (open_gated_pub, open_endpoint)")
        self.monitor = socket
        self.rejections = socket.rejections

    def poll(self) -> None:
        self.monitor.admit()


def watch(sockets: Collection[object]) -> list[PublisherWatch]:
    """A :class:`PublisherWatch` for each of ``sockets`` that is a :class:`GatedPub`."""
    return [PublisherWatch(s) for s in sockets if isinstance(s, GatedPub)]
