"""What every stage process shares: the stop signal, the status socket, the batch loop.

A stage is a small class with one verb, ``process(batch)``; :func:`run_batch_stage` does
the rest the same way for detect, features and classify: drain the input socket into a
latest-wins inbox, close a batch at ``max_batch`` or ``max_delay_ms``, process it, send
each result without blocking, pass end-of-stream markers on, count everything and report
health.

A stage never dies of its input. A message is decoded and validated against the wire
schema and the stage's own expectations (:meth:`BatchStage.admit`) before it enters the
inbox; one that fails is counted per reason and dropped. An item whose processing still
raises is dropped and counted per exception type (the batch is retried item by item so
the others survive) and the loop goes on; only errors while building the stage (engines,
configuration) end it.

SIGTERM (from the supervisor) stops the loop cleanly; SIGINT is ignored, because Ctrl-C
reaches every process of the terminal and only the supervisor decides the order of shutdown.
A stage whose supervisor died exits on its own.

Example:
    >>> class Echo(BatchStage):
    ...     name = "echo"
    ...     def process(self, batch):
    ...         return batch
"""

from __future__ import annotations

import logging
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import zmq

from stream.config import StageConfig
from stream.strictjson import JsonDict
from stream.transport.inbox import BatchPolicy, LatestInbox, Sender, drain
from stream.transport.status import Counters, FailedItems, Rejections, StatusReporter
from stream.transport.wire import ANY_STREAM, Message, WireError, WireRules

log = logging.getLogger(__name__)
_T = TypeVar("_T")

IDLE_POLL_MS = 100.0


class StopFlag:
    """Set by SIGTERM, or when the parent process (the supervisor) is gone."""

    def __init__(self) -> None:
        self._stop = False
        self._parent = os.getppid()

    def install(self) -> StopFlag:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return self

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stop = True

    def set(self) -> None:
        self._stop = True

    def __bool__(self) -> bool:
        return self._stop or os.getppid() != self._parent


class BatchStage(ABC):
    """One inference stage. ``process`` takes a batch of frames, returns messages to send."""

    name: str = "stage"

    @abstractmethod
    def process(self, batch: list[Message]) -> list[Message]:
        """Results for ``batch`` (frames only), to be sent downstream."""

    def admit(self, message: Message) -> None:  # noqa: B027 - optional hook
        """Raise :class:`WireError` if a well-formed ``message`` still is not one this stage
        can process (a missing buffer, a wrong shape); by default every message is."""

    def on_control(self, message: Message) -> list[Message]:
        """What to send for a control message (end of stream): by default, itself."""
        return [message]

    def extra_status(self) -> JsonDict:
        """Stage-specific figures for the status report."""
        return {}

    def delivered(self) -> int:
        """What the last stage (no output socket) handed on its own way: classify's
        predictions, emitted to its sinks. Its status reports it as ``sent``."""
        return 0

    def extra_sockets(self) -> list[tuple[zmq.Socket, Callable[[], None]]]:
        """More sockets to poll, each with the handler to call when it is readable."""
        return []

    def extra_rejections(self) -> list[Rejections]:
        """What the extra sockets refused, per endpoint and reason, for the status."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release engines and sockets the stage opened itself."""


@dataclass
class StageIO:
    """The sockets the batch loop uses; ``output`` is None for the last stage."""

    input: zmq.Socket
    output: zmq.Socket | None
    reporter: StatusReporter
    extra: JsonDict = field(default_factory=dict)
    rules: WireRules = ANY_STREAM
    """What arriving messages must satisfy beyond the schema (the run's stream ids)."""
    endpoint: str = "input"
    """The input's name in rejection counts."""
    offline: dict[str, int] = field(default_factory=dict)
    """Offline streams (``realtime: false``) and their ``in_flight``: the inbox keeps that
    many of theirs (:class:`~stream.transport.inbox.LatestInbox` ``keep``), so a stage busy with
    another stream's frame never pushes out a frame of a file."""


def run_batch_stage(stage: BatchStage, io: StageIO, config: StageConfig,
                    stop: StopFlag) -> None:
    """The loop of an inference stage, until ``stop`` is set."""
    sender = Sender(io.output) if io.output is not None else None
    counters = io.reporter.counters
    rejections = Rejections(io.endpoint, stage.name)
    failures = FailedItems(counters, stage.name)

    def frames(batch: list[Message]) -> None:
        _process(stage, batch, config, counters, sender, failures)

    def control(messages: list[Message]) -> None:
        for message in messages:
            _send_all(_guarded(lambda m=message: stage.on_control(m), failures) or [],
                      sender)

    def after_turn() -> None:
        if sender is not None:
            sender.flush()
            counters.sent = sender.sent
            counters.dropped_out = sender.blocked
            io.reporter.last_blocked = sender.last_blocked
        else:
            counters.sent = stage.delivered()
        Rejections.report_to(counters, [rejections, *stage.extra_rejections()])
        io.reporter.maybe_send(stage.extra_status())

    io.reporter.ready()
    run_inbox_loop(
        io.input, LatestInbox(config.queue_depth, io.offline),
        BatchPolicy(config.batch, config.max_delay_ms),
        admit=stage.admit, rules=io.rules, rejections=rejections, reporter=io.reporter,
        handlers=[(socket, handler, failures) for socket, handler in stage.extra_sockets()],
        on_frames=frames, on_control=control, after_turn=after_turn, stop=stop)
    if sender is None:
        counters.sent = stage.delivered()
    Rejections.report_to(counters, [rejections, *stage.extra_rejections()])
    io.reporter.stopping(stage.extra_status())


SocketHandler = tuple[zmq.Socket, Callable[[], None], FailedItems]
"""A socket a stage polls itself, what to call when it is readable, and where that
call's failures are counted."""


def run_inbox_loop(input_socket: zmq.Socket, inbox: LatestInbox, policy: BatchPolicy, *,
                   admit: Callable[[Message], None], rules: WireRules,
                   rejections: Rejections, reporter: StatusReporter,
                   handlers: list[SocketHandler],
                   on_frames: Callable[[list[Message]], None],
                   on_control: Callable[[list[Message]], None],
                   after_turn: Callable[[], None], stop: StopFlag) -> None:
    """The turn every stage process repeats until ``stop``: poll, serve the extra sockets,
    drain the input into ``inbox`` (decoded, checked by the wire ``rules`` and ``admit``;
    a refused message is counted in ``rejections``), hand frames that came before an end
    of stream on first, then the ends, close a batch by ``policy``, then ``after_turn``
    (send, report). One loop for a split stage and the fused chain, so both count and
    order the same way."""
    counters = reporter.counters
    poller = zmq.Poller()
    poller.register(input_socket, zmq.POLLIN)
    for socket, _, _ in handlers:
        poller.register(socket, zmq.POLLIN)

    def decode(parts: list) -> Message:
        message = rules.decode(parts)
        if not message.is_control:
            admit(message)
        return message

    def malformed(error: Exception) -> None:
        rejections.add(getattr(error, "reason", "schema"), error)

    while not stop:
        now = time.monotonic()
        events = dict(poller.poll(policy.wait_ms(inbox, now, IDLE_POLL_MS)))
        for socket, handler, failures in handlers:
            if socket in events:
                _guarded(handler, failures)
        before = sum(inbox.dropped.values())
        got = drain(input_socket, inbox, decode, malformed)
        now = time.monotonic()
        if got:
            counters.received += got
            reporter.saw_input(now)
        if inbox.has_control:  # frames that came before an end of stream go first
            while inbox.frames:
                on_frames(inbox.take(policy.max_batch))
            on_control(inbox.take_control())
        if policy.ready(inbox, now):
            on_frames(inbox.take(policy.max_batch))
        # pushed out by the drain, or by a frame set aside while batching (see LatestInbox)
        counters.dropped_in += sum(inbox.dropped.values()) - before
        after_turn()
        # what the inbox holds now waits for a batch to fill, not behind a busy stage
        inbox.batching = inbox.frames > 0 and not policy.ready(inbox, time.monotonic())


def _process(stage: BatchStage, batch: list[Message], config: StageConfig, counters: Counters,
             sender: Sender | None, failures: FailedItems) -> None:
    started = time.monotonic()
    if config.slow_ms:
        time.sleep(config.slow_ms / 1000.0)
    results = _guarded(lambda: stage.process(batch), failures if len(batch) == 1 else None)
    if results is None and len(batch) > 1:  # one bad item must not cost the others
        results = []
        for item in batch:
            results.extend(_guarded(lambda m=item: stage.process([m]), failures) or [])
    counters.busy_s += time.monotonic() - started
    counters.batches += 1
    counters.processed += len(batch)
    _send_all(results or [], sender)  # None: the only item failed (counted, dropped)


def _guarded(call: Callable[[], _T], failures: FailedItems | None) -> _T | None:
    """``call()``, or None when it raised (counted in ``failures`` when given). Only an
    error in the stage's own making (out of memory, a stop) is let through."""
    try:
        return call()
    except (MemoryError, KeyboardInterrupt, SystemExit):
        raise
    except WireError as error:
        if failures is not None:
            failures.add(error)
        return None
    except Exception as error:  # noqa: BLE001 - the stage outlives any one item
        if failures is not None:
            failures.add(error)
        return None


def _send_all(messages: list[Message], sender: Sender | None) -> None:
    if sender is None:
        return
    for message in messages:
        sender.send(message)
