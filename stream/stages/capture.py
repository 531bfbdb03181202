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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import zmq

from engines.adapters.rates import RateSampler
from stream.config import RunConfig
from stream.credits import CreditWindow
from stream.endpoints import Endpoints, open_endpoint
from stream.hop import Sender
from stream.sources import DemoSource, SourceReader, SourceState, ended_early, make_source
from stream.stage import StopFlag
from stream.status import StatusReporter
from stream.wire import FrameMeta, Header, Kind, Message

log = logging.getLogger(__name__)

UNPACED_SNDBUF = 64 * 1024


END_BUDGET = 0.8
"""Share of ``supervisor.stop_timeout_s`` a capture spends getting its end of stream out."""


def run_capture(config: RunConfig, index: int, endpoints: Endpoints, stop: StopFlag,
                context: zmq.Context) -> int:
    """Read source ``index`` until it ends or ``stop``; returns the process exit code."""
    source_config = config.sources[index]
    stream_id = config.stream_ids()[index]
    capture_fps = config.capture_fps()
    source = make_source(source_config)
    if isinstance(source, DemoSource):  # a synthetic clip need not render frames it skips
        source.fps = min(source.fps, capture_fps)
    # a file or the demo is paced to its frame rate unless ``realtime`` is off (saturated:
    # as fast as the pipeline takes frames); a camera or URL paces itself
    paced = source_config.realtime and (not source.live or isinstance(source, DemoSource))
    sampler = RateSampler(capture_fps)  # reset by the reader at each new generation
    reader = SourceReader(source, policy=sampler, backoff_min_s=source_config.reconnect_min_s,
                          backoff_max_s=source_config.reconnect_max_s)
    # unpaced (saturated): frames wait in this process until detect has room, not in
    # ZeroMQ or kernel buffers, so the source reads only about as fast as detect takes
    output = open_endpoint(context, endpoints, "detect_in", "connect", config.endpoints,
                           hwm=config.endpoints.high_water_mark if paced else 1,
                           sndbuf=None if paced else UNPACED_SNDBUF)
    credits = None
    if not paced:  # as fast as the pipeline classifies, not as fast as detect drains
        credits = open_endpoint(context, endpoints, "credits", "connect", config.endpoints)
        credits.setsockopt(zmq.SUBSCRIBE, stream_id.encode())
    window = CreditWindow(credits, stream_id, in_flight=source_config.in_flight)
    status = open_endpoint(context, endpoints, "status", "connect", config.endpoints)
    reporter = StatusReporter(status, "capture", index,
                              interval_s=config.supervisor.status_interval_s,
                              stall_after_s=config.supervisor.stall_after_s)
    sender = Sender(output)
    counters = reporter.counters
    generation, seq, origin = -1, 0, 0.0
    state = SourceState.OPENING
    early: dict[str, int] | None = None  # a file that ended well short of its frame count

    def extra() -> dict[str, object]:
        return {"stream": stream_id, "source": source_config.spec, "source_state": str(state),
                "generation": generation, "reconnects": reader.reconnects,
                "source_fps": source.fps, "capture_fps": capture_fps, "next_seq": seq,
                "credit_timeouts": window.timeouts, "ended_early": early,
                "decode": reader.cost.report()}

    reporter.ready()
    try:
        while not stop:
            event = reader.next()
            state = event.state
            if event.state is SourceState.ENDED:
                break
            if event.frame is None and not event.skipped:
                reporter.maybe_send(extra())
                continue
            if event.generation != generation:
                generation, seq = event.generation, 0
                origin = time.monotonic() - event.media_time
            counters.received += 1
            if event.skipped:
                reporter.saw_input(time.monotonic())
                reporter.maybe_send(extra())
                continue
            if paced:
                delay = origin + event.media_time - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            now = time.monotonic()
            reporter.saw_input(now)
            if not paced:  # as fast as the pipeline takes them, not as fast as we can read;
                window.wait(generation, seq, lambda: bool(stop))  # at most in_flight ahead
                # captured when there is room, as a camera would; still reporting (the
                # supervisor reads reports as a heartbeat, and a wait is not a hang)
                _wait_for_room(output, stop, lambda: reporter.maybe_send(extra()))
                now = time.monotonic()
            header = Header(stream=stream_id, seq=seq, generation=generation,
                            capture_time=now, media_time=max(0.0, event.media_time),
                            source_fps=min(source.fps or capture_fps, capture_fps, 1000.0),
                            meta=FrameMeta(source=source_config.spec[:4096]))
            header = header.stamped("capture", now, time.monotonic())
            sender.send(Message(header, {"frame": event.frame}))
            seq += 1
            counters.processed += 1
            counters.sent, counters.dropped_out = sender.sent, sender.blocked
            reporter.last_blocked = sender.last_blocked
            reporter.maybe_send(extra())
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
