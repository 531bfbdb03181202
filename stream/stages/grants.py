"""Fused placement's demand: each stream's next frame is asked for just before its turn.

In fused placement one process runs the whole chain, one frame at a time, serving the
streams in turn. If classify acknowledged each frame as it finished (as it does in split
placement), every capture would send its next frame at once, and with four streams that
frame would wait three chain runs in the inbox, ageing, while the others went first.
Instead the head
grants credits itself (:class:`TurnGrants`): while no frame waits, it acknowledges the next
stream in rotation, just before the chain finishes the current frame (before the last
stage, classify, a few milliseconds), so that stream's capture sends its newest frame then
and the frame starts its chain as soon as it arrives. A capture holds only its newest
frame meanwhile (:class:`stream.stages.capture.LiveSend`): the frames it replaces are
dropped before any work, and nothing waits in a queue.

The grant is an ordinary acknowledgement (:class:`stream.transport.credits.Ack`) of the last frame
received from the stream, so captures need no other protocol, and a lost grant is covered
by their ack timeout (in fused placement ``CREDIT_TIMEOUT_S`` times the number of streams:
a stream's credit comes once per round of the streams, and a capture that sent unasked
while its last frame still waited would push that frame out). A grant not answered
within ``patience_s`` (a camera between frames or reconnecting, a file being reopened)
does not hold up the other streams: the next one is granted too. A stream's first frame
needs no grant (the windows start with one frame in flight), and a stream whose end
arrived leaves the rotation until a frame of it comes again.

Example:
    >>> grants = TurnGrants(None, patience_s=0.1)
    >>> grants.arrived("s0", generation=0, seq=0)
    >>> grants.arrived("s1", generation=0, seq=0)
    >>> grants.grant(waiting=0, now=1.0)
    's0'
    >>> grants.grant(waiting=0, now=1.05) is None  # s0 has until 1.1 to answer
    True
    >>> grants.grant(waiting=0, now=1.2)
    's1'
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.transport.credits import CreditPublisher

GRANT_PATIENCE_S = 0.1
"""How long the head waits for a granted stream's frame before granting the next stream:
one frame interval at the usual analysis rate (10 frames/s), so a camera that has just sent
its newest frame costs the others at most its next frame's wait."""

REGRANT_S = 1.0
"""A grant unanswered this long is sent again (the acknowledgement may have been lost);
below the captures' own ack timeout, so a stream is asked again before it sends unasked."""


@dataclass
class _Stream:
    generation: int
    seq: int
    granted_at: float | None = None
    """When the last unanswered grant went out; None: no grant outstanding."""


class TurnGrants:
    """The fused head's credits: one stream at a time asked for its next frame, in turn."""

    def __init__(self, publisher: CreditPublisher | None, *,
                 patience_s: float = GRANT_PATIENCE_S, regrant_s: float = REGRANT_S) -> None:
        self.publisher = publisher
        self.patience_s = patience_s
        self.regrant_s = regrant_s
        self._streams: dict[str, _Stream] = {}
        self._rotation: list[str] = []
        self._next = 0
        self.grants = 0
        self.regrants = 0
        self.unasked = 0
        """Frames that arrived with no grant outstanding for their stream (a stream's
        first frame, one a capture sent after its ack timeout)."""

    def arrived(self, stream: str, generation: int, seq: int) -> None:
        """A frame of ``stream`` reached the inbox: its grant, if any, is answered."""
        state = self._streams.get(stream)
        if state is None:
            self._streams[stream] = _Stream(generation, seq)
            self._rotation.append(stream)
            self.unasked += 1
            return
        if state.granted_at is None:
            self.unasked += 1
        if stream not in self._rotation:
            self._rotation.append(stream)
        state.generation, state.seq, state.granted_at = generation, seq, None

    def ended(self, stream: str) -> None:
        """``stream``'s end of stream arrived: no more grants for it until a frame comes."""
        if stream in self._rotation:
            position = self._rotation.index(stream)
            self._rotation.remove(stream)
            if position < self._next:
                self._next -= 1
        state = self._streams.get(stream)
        if state is not None:
            state.granted_at = None

    def grant(self, waiting: int, now: float) -> str | None:
        """Ask the next stream in rotation for a frame, if none is ``waiting`` in the inbox
        and no grant younger than ``patience_s`` is unanswered; which stream was asked, or
        None."""
        if waiting or not self._rotation or self._answer_due(now):
            return None
        for step in range(len(self._rotation)):
            index = (self._next + step) % len(self._rotation)
            stream = self._rotation[index]
            state = self._streams[stream]
            if state.granted_at is not None and now - state.granted_at < self.regrant_s:
                continue  # asked already; its frame is on its way, or the camera has none yet
            if state.granted_at is not None:
                self.regrants += 1
            self._next = (index + 1) % len(self._rotation)
            self._send(stream, state, now)
            return stream
        return None

    def _answer_due(self, now: float) -> bool:
        """Whether a grant younger than ``patience_s`` is still unanswered."""
        return any(state.granted_at is not None and now - state.granted_at < self.patience_s
                   for state in self._streams.values())

    def _send(self, stream: str, state: _Stream, now: float) -> None:
        state.granted_at = now
        self.grants += 1
        if self.publisher is not None:
            self.publisher.ack(stream, state.generation, state.seq)
            self.publisher.flush()

    def report(self) -> dict[str, int]:
        """For the status: grants sent, sent again, and frames that came unasked."""
        return {"grants": self.grants, "regrants": self.regrants, "unasked": self.unasked}
