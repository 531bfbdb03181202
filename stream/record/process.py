"""The recorder's process: ``python -m stream.record.process SPEC_JSON [PART]``.

Started by :mod:`stream.record.launcher`. It subscribes to the record topic (every fused
worker's too), the predictions and the transcript topic, hands each message to a
:class:`~stream.record.recorder.Recorder` (a refused one is counted per topic and reason,
never raised) and writes the frames held long enough, doing bounded work per turn. On
SIGTERM or SIGINT, or when ``hidemo run`` is gone, it writes what it holds, closes its
files (so they are playable) and leaves its figures in ``record-stats-PART.json``. It runs
at a lower CPU priority than the pipeline (:data:`NICENESS`).
Exit status 0, or 1 when a file could not be written (the launcher then warns and may
start a new part).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import zmq
from pydantic import ValidationError

from stream.files import write_document
from stream.prediction import Prediction
from stream.record.launcher import RecorderSpec, record_paths, stats_path
from stream.record.recorder import Recorder
from stream.record.wire import decode_record
from stream.transport.endpoints import connect_address, open_endpoint
from stream.transport.text_topic import TextLine
from stream.transport.wire import WireError, WireRules, refusal

log = logging.getLogger(__name__)

POLL_MS = 100
PER_TURN = 64
"""Messages taken from one socket per turn, so the timers run whatever arrives."""
PARENT_CHECK_S = 1.0
TOPICS = ("record", "predictions", "transcript")
NICENESS = 10
"""How much lower than the pipeline's the recorder's CPU priority is: where the cores are
short, the recorder falls behind and drops frames (counted), the pipeline does not slow."""


def subscribe(context: zmq.Context, spec: RecorderSpec) -> dict[str, zmq.Socket]:
    """A SUB per topic, connected as the layout declares it (the predictions with the run's
    CURVE client keys when they are secured); the record SUB also connects to every further
    fused worker's record endpoint."""
    sockets = {}
    for topic in TOPICS:
        socket = open_endpoint(context, spec.endpoints, topic, "connect", spec.endpoint_config)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        sockets[topic] = socket
    for worker in range(1, spec.publishers):
        address = spec.endpoints.for_worker(worker, spec.endpoint_config).record
        sockets["record"].connect(connect_address(address))
    return sockets


class Receiver:
    """Validates each message of a topic and hands it to the recorder."""

    def __init__(self, recorder: Recorder, spec: RecorderSpec) -> None:
        self.recorder = recorder
        self.streams = set(spec.streams)
        self.rules = WireRules(streams=frozenset(spec.streams),
                               max_bytes=spec.endpoint_config.max_frame_bytes)
        self.rejected: Counter[str] = Counter()

    def take(self, topic: str, parts: list, now: float) -> None:
        try:
            if topic == "record":
                self.recorder.frame(decode_record(parts, self.rules), now)
            elif topic == "predictions":
                self.recorder.prediction(self._prediction(parts))
            else:
                stream, line = self._line(parts)
                if line.media_start is not None:
                    end = line.media_start if line.media_end is None else line.media_end
                    self.recorder.line(stream, line.text, media=(line.media_start, end))
                else:
                    self.recorder.line(stream, line.text,
                                       spoken=now if line.time is None else line.time)
        except WireError as error:
            self.rejected[f"{topic}:{error.reason}"] += 1

    def _prediction(self, parts: list) -> Prediction:
        if len(parts) != 2:
            raise WireError(f"{len(parts)} parts; expected [stream, JSON]", "parts")
        try:
            record = Prediction.model_validate_json(bytes(parts[1]))
        except ValidationError as error:
            raise refusal(error, "prediction") from None
        if record.stream not in self.streams or bytes(parts[0]) != record.stream.encode():
            raise WireError("not one of this run's streams", "unknown-stream")
        return record

    def _line(self, parts: list) -> tuple[str, TextLine]:
        if len(parts) != 2:
            raise WireError(f"{len(parts)} parts; expected [stream, JSON]", "parts")
        stream = bytes(parts[0]).decode(errors="replace")
        if stream not in self.streams:
            raise WireError("not one of this run's streams", "unknown-stream")
        try:
            return stream, TextLine.model_validate_json(bytes(parts[1]))
        except ValidationError as error:
            raise refusal(error, "transcript line") from None


def run(spec: RecorderSpec, part: int, stop: threading.Event) -> int:
    recorder = Recorder(record_paths(spec.path, spec.streams, part), fps=spec.fps,
                        codec=spec.codec, delay_s=spec.delay_s)
    receiver = Receiver(recorder, spec)
    context = zmq.Context()
    code = 0
    try:
        sockets = subscribe(context, spec)
        poller = zmq.Poller()
        for socket in sockets.values():
            poller.register(socket, zmq.POLLIN)
        parent = os.getppid()
        check_at = time.monotonic() + PARENT_CHECK_S
        while not stop.is_set():
            ready = dict(poller.poll(POLL_MS))
            for topic, socket in sockets.items():
                if socket not in ready:
                    continue
                for _ in range(PER_TURN):
                    try:
                        parts = socket.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    receiver.take(topic, parts, time.monotonic())
            now = time.monotonic()
            recorder.flush(now)
            if now >= check_at:
                check_at = now + PARENT_CHECK_S
                if os.getppid() != parent:
                    log.warning("hidemo run is gone; the recorder closes its files")
                    break
    except Exception:
        log.exception("the recorder failed")
        code = 1
    finally:
        stats = recorder.close()
        context.destroy(linger=0)
    if stats["failed"]:
        code = 1
    stats["rejected"] = dict(receiver.rejected)
    if receiver.rejected:
        log.warning("refused messages (topic:reason): %s", dict(receiver.rejected))
    try:  # whole or not at all: the run's summary then says its figures are missing
        write_document(stats_path(spec.stats_dir, part), json.dumps(stats, indent=2),
                       durable=False)
    except OSError as error:
        log.warning("record stats not written: %s", error)
    for stream, figures in stats["streams"].items():
        log.info("recorded %s: %s frames to %s (%s dropped on the way)", stream,
                 figures["frames"], figures["path"], figures["dropped"])
    return code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m stream.record.process SPEC_JSON [PART]", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s recorder %(name)s: "
                                                   "%(message)s")
    spec = RecorderSpec.model_validate_json(Path(args[0]).read_text())
    with contextlib.suppress(OSError):  # the pipeline first: a short CPU drops frames here
        os.nice(NICENESS)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    return run(spec, int(args[1]) if len(args) == 2 else 0, stop)


if __name__ == "__main__":
    sys.exit(main())
