"""Capture: one process per source; frames out at the analysis rate, paced, never queued.

The source is read at its own rate (a file or the demo is paced to real time unless
``realtime`` is off; a live source paces itself) and decimated to ``capture_fps`` with the
same slot rule the features stage and training use (:class:`RateSampler`). The decision
is made after the grab and before the frame is converted (:class:`SourceReader`'s
policy): a skipped frame is never retrieved, and the status's ``decode`` figures say what
grabbing and retrieving cost per frame. Pacing waits only for kept frames. Each emitted
frame gets the next sequence number of its session generation and its capture time on the
monotonic clock. At the end of a file the stage sends an end-of-stream marker and exits 0;
a live source that drops is reopened with backoff by :class:`SourceReader`.

What goes out is paced by classify's acknowledgements (:mod:`stream.transport.credits`). An offline
source (``realtime: false``) simply waits for a credit before reading on. A live one (a
camera, a URL, the demo, a file in real time) keeps reading on time, since a camera's
buffer must be drained and its pacing kept, and sends through :class:`LiveSend`: at once
while fewer than ``in_flight`` of its frames are unacknowledged, else only the newest
waits, and the frames it replaces are the stream's drops, made here, before any stage has
worked on them (``dropped_in`` of capture's status, and ``Header.dropped`` of the next
frame sent).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np
import zmq

from engines.adapters.rates import RateSampler
from stream.config import RunConfig
from stream.media.sources import DemoSource, SourceReader, SourceState, ended_early, make_source
from stream.stages.generations import GenerationLedger
from stream.stages.loop import StopFlag
from stream.stages.placement import worker_of, worker_streams
from stream.transport.credits import CREDIT_TIMEOUT_S, CreditWindow, LiveWindow
from stream.transport.endpoints import Endpoints, open_endpoint
from stream.transport.inbox import Sender
from stream.transport.status import StatusReporter
from stream.transport.wire import FrameMeta, Header, Kind, Message

log = logging.getLogger(__name__)

UNPACED_SNDBUF = 64 * 1024


END_BUDGET = 0.8
"""Share of ``supervisor.stop_timeout_s`` a capture spends getting its end of stream out."""


def run_capture(config: RunConfig, index: int, endpoints: Endpoints, stop: StopFlag,
                context: zmq.Context, state_dir: Path | None = None) -> int:
    """Read source ``index`` until it ends or ``stop``; returns the process exit code.
    ``state_dir`` (the run's private folder) keeps the stream's generation counter."""
    source_config = config.sources[index]
    stream_id = config.stream_ids()[index]
    capture_fps = config.capture_fps()
    source = make_source(source_config)
    if isinstance(source, DemoSource):  # a synthetic clip need not render frames it skips
        source.fps = min(source.fps, capture_fps)
    # a file or the demo is paced to its frame rate unless ``realtime`` is off (saturated:
    # as fast as the pipeline takes frames); a camera or URL paces itself
    self_paced = source.live and not isinstance(source, DemoSource)
    paced = source_config.realtime and not self_paced
    offline = not source_config.realtime and not self_paced
    sampler = RateSampler(capture_fps)  # reset by the reader at each new generation
    reader = SourceReader(source, policy=sampler, backoff_min_s=source_config.reconnect_min_s,
                          backoff_max_s=source_config.reconnect_max_s)
    # fused: this stream's worker takes its frames and grants its credits
    streams_in_turn = 1
    if config.placement == "fused":
        worker = worker_of(index, config.fused.workers)
        endpoints = endpoints.for_worker(worker, config.endpoints)
        streams_in_turn = len(worker_streams(config, worker))
    # offline: frames wait in this process until detect has room, not in ZeroMQ or kernel
    # buffers, so the source reads only about as fast as detect takes
    output = open_endpoint(context, endpoints, "detect_in", "connect", config.endpoints,
                           hwm=1 if offline else config.endpoints.high_water_mark,
                           sndbuf=UNPACED_SNDBUF if offline else None)
    # as fast as the pipeline classifies, not as fast as detect drains
    credits = open_endpoint(context, endpoints, "credits", "connect", config.endpoints)
    credits.setsockopt(zmq.SUBSCRIBE, stream_id.encode())
    in_flight = source_config.in_flight
    # fused: the worker grants credits stream by stream (stream.stages.grants), so a stream's next
    # credit comes once per round of the worker's streams, not once per chain run
    timeout_s = CREDIT_TIMEOUT_S * streams_in_turn
    window = (CreditWindow(credits, stream_id, in_flight=in_flight, timeout_s=timeout_s)
              if offline else LiveWindow(credits, stream_id, in_flight=in_flight,
                                         timeout_s=timeout_s))
    status = open_endpoint(context, endpoints, "status", "connect", config.endpoints)
    reporter = StatusReporter(status, "capture", index,
                              interval_s=config.supervisor.status_interval_s,
                              stall_after_s=config.supervisor.stall_after_s)
    sender = Sender(output)
    live = LiveSend(window, sender) if isinstance(window, LiveWindow) else None
    counters = reporter.counters
    # the run's private folder keeps the last generation, so a restarted capture goes on
    # counting (stream.stages.generations); downstream resets on each new one
    ledger = GenerationLedger(None if state_dir is None else state_dir / f"generation-{index}")
    generation, opened, seq, origin, last_media = -1, -1, 0, 0.0, 0.0
    state = SourceState.OPENING
    early: dict[str, int] | None = None  # a file that ended well short of its frame count

    def extra() -> dict[str, object]:
        return {"stream": stream_id, "source": source_config.spec, "source_state": str(state),
                "generation": generation, "reconnects": reader.reconnects,
                "source_fps": source.fps, "capture_fps": capture_fps, "next_seq": seq,
                "in_flight": window.in_flight, "credit_timeouts": window.timeouts,
                "held": live is not None and live.held is not None,
                "dropped_before_send": 0 if live is None else live.dropped,
                "ended_early": early,
                "decode": reader.cost.report()}

    reporter.ready()
    try:
        while not stop:
            if live is not None and live.held is not None:  # before a grab takes its pixels
                source_fps = source.fps or capture_fps
                _before_grab(live, paced=paced, due=origin + last_media + 1.0 / source_fps,
                             every_frame_kept=source_fps <= capture_fps + 1e-6,
                             heartbeat=lambda: reporter.maybe_send(extra()))
            event = reader.next(defer=live is not None)
            state = event.state
            if event.state is SourceState.ENDED:
                break
            if event.frame is None and not event.skipped and not event.deferred:
                reporter.maybe_send(extra())
                continue
            if event.generation != opened or event.media_time < last_media:
                # the source (re)opened in this process, or its clock went back: a new
                # generation, so time never goes backwards within one
                if event.generation == opened:
                    sampler.reset()
                opened, generation, seq = event.generation, ledger.next(), 0
                origin = time.monotonic() - event.media_time
            last_media = event.media_time
            counters.received += 1
            if event.skipped:
                reporter.saw_input(time.monotonic())
                reporter.maybe_send(extra())
                continue
            if paced:
                _pace(origin + event.media_time, live, lambda: reporter.maybe_send(extra()))
            now = time.monotonic()
            reporter.saw_input(now)
            if offline:  # as fast as the pipeline takes them, not as fast as we can read;
                window.wait(generation, seq, lambda: bool(stop))  # at most in_flight ahead
                # captured when there is room, as a camera would; still reporting (the
                # supervisor reads reports as a heartbeat, and a wait is not a hang)
                _wait_for_room(output, stop, lambda: reporter.maybe_send(extra()))
                now = time.monotonic()
            header = Header(stream=stream_id, seq=seq, generation=generation,
                            capture_time=now, media_time=max(0.0, event.media_time),
                            source_fps=min(source.fps or capture_fps, capture_fps, 1000.0),
                            meta=FrameMeta(source=source_config.spec[:4096]))
            if live is not None:
                live.offer(Held(header, partial(reader.retrieve, reader.grabs)), now)
            else:
                sender.send(Message(header.stamped("capture", now, time.monotonic()),
                                    {"frame": event.frame}))
            seq += 1
            counters.processed += 1
            counters.busy_s = reader.cost.grab_s + reader.cost.retrieve_s  # decoding (CPU)
            counters.sent, counters.dropped_out = sender.sent, sender.blocked
            counters.dropped_in = 0 if live is None else live.dropped
            reporter.last_blocked = sender.last_blocked
            reporter.maybe_send(extra())
        if live is not None:  # a frame still held: dropped, its count rides on the end
            live.discard()
            counters.dropped_in = live.dropped
        if state is SourceState.ENDED and ended_early(source):
            early = {"read": source.frames_read, "expected": source.frame_count}
            log.warning("capture %s: %s ended early, after %d of its %d frames (truncated or "
                        "corrupt?)", stream_id, source_config.spec, source.frames_read,
                        source.frame_count)
        end = Header(stream=stream_id, seq=seq, generation=max(generation, 0),
                     capture_time=time.monotonic(), media_time=0.0, kind=Kind.EOS,
                     meta=FrameMeta(reason="end of file" if state is SourceState.ENDED
                                    else "stopped"))
        sender.send(Message(end, {}))
        # the supervisor kills a capture that takes longer than stop_timeout_s to go
        deadline = time.monotonic() + config.supervisor.stop_timeout_s * END_BUDGET
        while sender.backlog and time.monotonic() < deadline:  # the end must get out
            time.sleep(0.01)
            sender.flush()
        # A sent end may still wait in ZeroMQ's queue until detect reads (it reads between
        # batches, and a batch can take seconds under load): closing with a linger keeps it
        # deliverable until the deadline instead of discarding it with the process.
        output.close(linger=max(0, int((deadline - time.monotonic()) * 1000)))
        counters.sent = sender.sent
        log.info("capture %s: %s after %d frames", stream_id, end.meta.reason, seq)
    finally:
        reporter.stopping(extra())
        reader.close()
    return 0


def _wait_for_room(socket: zmq.Socket, stop: StopFlag, heartbeat: Callable[[], None],
                   poll_ms: int = 100) -> None:
    """Block until ``socket`` can take a message (or ``stop``): an unpaced source then
    reads only as fast as detect drains, instead of spinning a core on frames it drops."""
    while not stop and not socket.poll(poll_ms, zmq.POLLOUT):
        heartbeat()


def _pace(until: float, live: LiveSend | None, heartbeat: Callable[[], None],
          poll_ms: int = 100) -> None:
    """Wait until ``until`` (monotonic), the media time of the next frame; a held frame
    meanwhile goes out as soon as an acknowledgement frees a slot (it is still the newest
    frame: the next one is not due yet)."""
    while (left := until - time.monotonic()) > 0:
        if live is None or live.held is None:
            time.sleep(left)
            return
        live.window.listen(live.held.header.generation, max(1, min(int(left * 1000), poll_ms)))
        live.release(time.monotonic())
        heartbeat()


def _before_grab(live: LiveSend, *, paced: bool, due: float, every_frame_kept: bool,
                 heartbeat: Callable[[], None]) -> None:
    """Give the held frame its chance before the next grab replaces its pixels. A paced
    source (the demo, a file in real time) waits for the next frame's due time listening
    for a credit (the held frame is the newest until then). If it is still held then, and
    the next frame will be kept anyway, it is left to be replaced unconverted; otherwise
    (a camera, whose grab waits for the device; frames the rate skips) it is converted now
    so that it survives the grab."""
    live.release(time.monotonic())
    if paced:
        _pace(due, live, heartbeat)
    if live.held is not None and not (paced and every_frame_kept):
        live.materialize()


@dataclass(frozen=True)
class Held:
    """A kept frame waiting for a credit: its header, and how to get its pixels (the
    source's retrieve of the last grab: None once a later grab replaced it)."""

    header: Header
    pixels: Callable[[], np.ndarray | None]


class LiveSend:
    """A live capture's sending side: demand-driven, newest first, drops before work.

    A kept frame goes out at once while the credit window has room. Otherwise it waits
    here, alone and not yet converted (:class:`Held`): a newer frame replaces it, and the
    replaced one is a drop made before any work, even the conversion to BGR, counted in
    ``dropped`` and carried in ``Header.dropped`` of the stream's next message (classify
    tells it from a lost frame by that count; its sequence number is the gap). The held
    frame goes as soon as a credit frees a slot (fused placement grants one just before
    the stream's turn: :mod:`stream.stages.grants`), so the frame that enters the pipeline is the
    newest read at that moment; its ``capture_time`` stays the time it was read, and the
    hold shows as capture's queue wait (its stamp's arrival to start).

    Example:
        >>> live = LiveSend(LiveWindow(None, "cam0", in_flight=1), sender)  # doctest: +SKIP
        >>> live.offer(Held(header, reader_retrieve), now=time.monotonic())  # doctest: +SKIP
    """

    def __init__(self, window: LiveWindow, sender: Sender) -> None:
        self.window = window
        self.sender = sender
        self.held: Held | None = None
        self.dropped = 0

    def offer(self, held: Held, now: float) -> None:
        """Take the newest kept frame: send it if there is room, else hold it."""
        if self.held is not None:  # an older generation's frame is not carried into a new one
            self._drop(carry=self.held.header.generation == held.header.generation)
        self.held = held
        self.release(now)

    def release(self, now: float) -> bool:
        """Send the held frame if the window has room now; whether it left (a frame the
        Sender could not place, detect being gone or full, is its counted drop; one whose
        pixels are gone, replaced by a later grab or undecodable, is a drop here)."""
        held = self.held
        if held is None or not self.window.has_room(held.header.generation, now):
            return False
        frame = held.pixels()
        if frame is None:
            self._drop(carry=True)
            return False
        self.held = None
        header = held.header
        sending = time.monotonic()  # the hold shows as capture's queue wait
        if self.sender.send(Message(header.stamped("capture", sending, sending,
                                                   t_arrive=header.capture_time),
                                    {"frame": frame})):
            self.window.sent(header.generation, header.seq, now)
        return True

    def materialize(self) -> None:
        """Convert the held frame now, so it outlives the next grab."""
        held = self.held
        if held is None:
            return
        frame = held.pixels()
        if frame is None:
            self._drop(carry=True)
            return
        self.held = replace(held, pixels=lambda: frame)

    def discard(self) -> None:
        """At the end: a held frame is dropped, its count carried by the end of stream."""
        if self.held is not None:
            self._drop(carry=True)

    def _drop(self, carry: bool) -> None:
        old, self.held = self.held, None
        if old is None:
            return
        self.dropped += 1
        if carry:
            stream = old.header.stream
            pending = self.sender.pending_dropped
            pending[stream] = pending.get(stream, 0) + old.header.dropped + 1
