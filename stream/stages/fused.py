"""Fused placement's worker: detect and features in one process, frames handed on in memory.

On a small CPU the split stages only take turns on the same cores, and every hop costs a
serialisation, a copy, a poll and sometimes a frame one stage finished and the next then
dropped (:mod:`stream.stages.placement`). Here one loop takes its streams' frames from the
captures on the worker's own input endpoint (latest-wins, as detect's inbox: a frame waits
there, unworked, or is dropped unworked) and runs each batch through detect and features
before it takes the next: work starts only on a frame the chain will finish, so nothing
is processed and then dropped between stages. What features makes goes to classify, one
process for every worker, as in split placement (small messages: embeddings and
keypoints, no pixels). End-of-stream markers go through each stage's ``on_control`` in
the same order, after the frames that came before them.

Several workers share the streams out (``fused.workers``): each has its own engines on its
share of the cores, so two frames go through at once on two cores.

Which frame comes next is decided here: the captures send only on credit, and in fused
placement the credits are granted by this loop, one of its streams at a time, as the
current frame's chain ends (:mod:`stream.stages.grants`), instead of by classify as each frame
finishes; so a frame starts its chain as soon as it arrives, and frames are dropped only
at capture.

The stage objects are the split stages' own (built by :mod:`stream.stages.build`). The
process reports two statuses, ``detect[i]`` and ``features[i]``, each with that stage's
own counters (busy time, batches, items, failures) and figures: the run summary and the
bench's stage breakdown read them exactly as in split mode. Each hand-off stamps the
message's arrival, so a frame's trace shows the stages back to back (transfer and queue
near zero).

Example:
    >>> chain = FusedChain([Link(detect, detect_config, detect_reporter),
    ...                     Link(features, features_config, features_reporter)],
    ...                    classify_in)  # doctest: +SKIP
    >>> run_fused(chain, FusedIO(inbound, rules), stop)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import zmq

from stream.config import StageConfig
from stream.stages.grants import TurnGrants
from stream.stages.loop import BatchStage, StopFlag, _guarded, run_inbox_loop
from stream.strictjson import JsonDict
from stream.transport.inbox import BatchPolicy, LatestInbox, Sender
from stream.transport.status import FailedItems, Rejections, StatusReporter
from stream.transport.wire import ANY_STREAM, Message, WireRules


@dataclass
class Link:
    """One logical stage inside a fused worker: the stage, its resolved batching (only
    ``slow_ms`` and, for the head, the input's batching are used) and its own status."""

    stage: BatchStage
    config: StageConfig
    reporter: StatusReporter

    def __post_init__(self) -> None:
        self.failures = FailedItems(self.reporter.counters, self.stage.name)

    def frames(self, batch: list[Message], *, head: bool, tail: bool = False) -> list[Message]:
        """``batch`` through this stage; its results, each stamped as arriving now at the
        next stage. One item that raises costs only itself (counted), as in split mode."""
        counters = self.reporter.counters
        started = time.monotonic()
        if not head:  # the head counts what arrives on the socket instead
            counters.received += len(batch)
            self.reporter.saw_input(started)
        if self.config.slow_ms:
            time.sleep(self.config.slow_ms / 1000.0)
        results = _guarded(lambda: self.stage.process(batch),
                           self.failures if len(batch) == 1 else None)
        if results is None and len(batch) > 1:
            results = []
            for item in batch:
                results.extend(_guarded(lambda m=item: self.stage.process([m]),
                                        self.failures) or [])
        done = time.monotonic()
        counters.busy_s += done - started
        counters.batches += 1
        counters.processed += len(batch)
        if not tail:  # the tail's ``sent`` is what its socket took (FusedChain.flush)
            counters.sent += len(results or [])
        return [replace(m, arrived=done) for m in results or []]

    def control(self, messages: list[Message]) -> list[Message]:
        """What this stage passes on for ``messages`` (ends of stream), in order."""
        out: list[Message] = []
        for message in messages:
            out.extend(_guarded(lambda m=message: self.stage.on_control(m),
                                self.failures) or [])
        return out


class FusedChain:
    """The logical stages in pipeline order, run one after another on each batch; the last
    one's results go out on ``output`` (classify's input; None: nowhere, in tests)."""

    def __init__(self, links: list[Link], output: zmq.Socket | None = None) -> None:
        if not links:
            raise ValueError("a fused chain needs at least one stage")
        self.links = links
        self.sender = Sender(output) if output is not None else None
        self.chain_done: Callable[[], None] = _nothing
        """Called as a batch's chain ends, before its results go out (:mod:`stream.stages.grants`:
        the next stream is asked for its frame then)."""
        self.head_status: Callable[[], JsonDict] = dict
        """More figures for the head's (detect's) status: the grants."""
        self.input_rejections = Rejections("detect_in", links[0].stage.name)
        """What the head's input socket refused, by reason (set by :func:`run_fused`)."""

    @property
    def head(self) -> Link:
        return self.links[0]

    @property
    def tail(self) -> Link:
        return self.links[-1]

    def frames(self, batch: list[Message]) -> None:
        """``batch`` through every stage; the last one's results go out."""
        for index, link in enumerate(self.links):
            if not batch:
                break
            batch = link.frames(batch, head=index == 0, tail=link is self.tail)
        self.chain_done()
        self._send(batch)

    def control(self, messages: list[Message]) -> None:
        for link in self.links:
            messages = link.control(messages)
        self._send(messages)

    def _send(self, messages: list[Message]) -> None:
        if self.sender is None:
            return
        for message in messages:
            self.sender.send(message)

    def flush(self) -> None:
        """Retry what the output refused (classify restarting), and count what went out
        and what was dropped on the tail's status."""
        if self.sender is None:
            return
        self.sender.flush()
        counters = self.tail.reporter.counters
        counters.sent = self.sender.sent
        counters.dropped_out = self.sender.blocked
        self.tail.reporter.last_blocked = self.sender.last_blocked

    def ready(self) -> None:
        for link in self.links:
            link.reporter.ready()

    def report(self, force: bool = False) -> None:
        """Each stage's status (every ``status_interval_s``, or now with ``force``)."""
        for link in self.links:
            Rejections.report_to(link.reporter.counters, self._rejections(link))
            link.reporter.maybe_send(self._extra(link), force=force)

    def stopping(self) -> None:
        for link in self.links:
            Rejections.report_to(link.reporter.counters, self._rejections(link))
            link.reporter.stopping(self._extra(link))

    def _extra(self, link: Link) -> JsonDict:
        extra = link.stage.extra_status()
        if link is self.head:
            extra = {**extra, "turns": self.head_status()}
        return extra

    def _rejections(self, link: Link) -> list[Rejections]:
        own = [self.input_rejections] if link is self.head else []
        return own + link.stage.extra_rejections()

    def extra_sockets(self) -> list[tuple[zmq.Socket, Callable[[], None], Link]]:
        """Sockets the stages poll themselves (none of detect's and features' today)."""
        return [(socket, handler, link) for link in self.links
                for socket, handler in link.stage.extra_sockets()]

    def close(self) -> None:
        """Close every stage, the last first (a stage's outputs flush before the engines
        upstream go), each even when another's close fails."""
        errors: list[BaseException] = []
        for link in reversed(self.links):
            try:
                link.stage.close()
            except Exception as error:  # noqa: BLE001 - close the others, then report
                errors.append(error)
        if errors:
            raise errors[0]


def _nothing() -> None:
    return None


class OfflineInbox(LatestInbox):
    """The head's inbox: latest-wins, an offline stream keeping its ``in_flight`` frames
    (:attr:`LatestInbox.keep`, as in split), and every arrival told to the turns.

    With several streams served in turn, an offline stream's waiting frame would otherwise
    be pushed out by the next one its credit let through while another stream's frame was
    in the chain."""

    def __init__(self, depth: int, offline: dict[str, int] | None = None,
                 grants: TurnGrants | None = None) -> None:
        super().__init__(depth, offline)
        self.grants = grants
        """Told of every arrival, so a stream's grant counts as answered."""

    def offer(self, message: Message, now: float | None = None) -> None:
        header = message.header
        if self.grants is not None:
            if message.is_control:
                self.grants.ended(header.stream)
            else:
                self.grants.arrived(header.stream, header.generation, header.seq)
        super().offer(message, now)


@dataclass
class FusedIO:
    """A fused worker's input: its detect endpoint, its wire rules and name, and the
    offline streams with their ``in_flight`` (see :class:`OfflineInbox`)."""

    input: zmq.Socket
    rules: WireRules = ANY_STREAM
    endpoint: str = "detect_in"
    offline: dict[str, int] = field(default_factory=dict)
    grants: TurnGrants | None = None
    """The captures' credits, granted at each stream's turn (:mod:`stream.stages.grants`); None:
    classify acknowledges each frame as it finishes, as in split placement."""


def run_fused(chain: FusedChain, io: FusedIO, stop: StopFlag) -> None:
    """The fused loop, until ``stop`` is set: the stage loop (:func:`run_inbox_loop`) with
    the head's (detect's) inbox and batch policy, each batch run through the chain."""
    head = chain.head
    chain.input_rejections = Rejections(io.endpoint, head.stage.name)
    inbox = OfflineInbox(head.config.queue_depth, io.offline, io.grants)
    grants = io.grants

    def grant() -> None:
        if grants is not None:
            grants.grant(inbox.frames, time.monotonic())

    def after_turn() -> None:
        grant()  # an idle turn: the stream asked last may not have a frame yet
        chain.flush()
        chain.report()

    chain.chain_done = grant
    if grants is not None:
        chain.head_status = grants.report
    chain.ready()
    run_inbox_loop(
        io.input, inbox, BatchPolicy(head.config.batch, head.config.max_delay_ms),
        admit=head.stage.admit, rules=io.rules, rejections=chain.input_rejections,
        reporter=head.reporter,
        handlers=[(socket, handler, link.failures)
                  for socket, handler, link in chain.extra_sockets()],
        on_frames=chain.frames, on_control=chain.control, after_turn=after_turn, stop=stop)
    chain.stopping()
