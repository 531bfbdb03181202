"""Where predictions go: a PUB socket (JSON), an append-only JSONL log, anything else.

A prediction is one JSON object (schema ``hidemo.prediction/1``, documented in the README
and built by :func:`prediction_record`). Sinks are independent: one that fails (a full
disk, a closed socket) is counted and reported, never allowed to stop the pipeline.

Example:
    >>> sinks = Sinks([JsonlSink(Path("out/predictions.jsonl"))])  # doctest: +SKIP
    >>> sinks.emit(record)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import zmq

from stream.wire import Header, Stamp

log = logging.getLogger(__name__)

SCHEMA = "hidemo.prediction/1"


class Sink(Protocol):
    name: str

    def emit(self, record: dict[str, Any], line: bytes) -> None: ...

    def close(self) -> None: ...


class PubSink:
    """Publishes ``[stream id, JSON]`` on a bound PUB socket (subscribe to a stream id, or "")."""

    name = "pub"

    def __init__(self, socket: zmq.Socket) -> None:
        self.socket = socket

    def emit(self, record: dict[str, Any], line: bytes) -> None:
        self.socket.send_multipart([record["stream"].encode(), line], flags=zmq.NOBLOCK)

    def close(self) -> None:
        self.socket.close(linger=0)


class JsonlSink:
    """Appends one JSON line per record and flushes it, so a crash loses nothing written."""

    def __init__(self, path: Path, name: str = "jsonl") -> None:
        self.name = name
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = path.open("ab")

    def emit(self, record: dict[str, Any], line: bytes) -> None:
        self._file.write(line + b"\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class Sinks:
    """Fans a record out to every sink; counts failures per sink instead of raising."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.errors: dict[str, int] = {}
        self.emitted = 0

    def emit(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")).encode()
        self.emitted += 1
        for sink in self.sinks:
            try:
                sink.emit(record, line)
            except (OSError, zmq.ZMQError) as error:
                count = self.errors[sink.name] = self.errors.get(sink.name, 0) + 1
                if count == 1:
                    log.warning("sink %s failed (counted, not fatal): %s", sink.name, error)

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except (OSError, zmq.ZMQError) as error:
                log.warning("closing sink %s: %s", sink.name, error)


def stage_latency_ms(header: Header, t_in: float, done: float,
                     stage: str = "classify") -> dict[str, float]:
    """Milliseconds per stage (its own work) and in between (``queues``: waiting and
    transport) for the frame behind ``header``; this ``stage`` took it in at ``t_in`` and
    finished at ``done``; ``total`` is from its capture to ``done``."""
    out: dict[str, float] = {}
    stamps = [*header.stamps, Stamp(stage, t_in, done)]
    queued = 0.0
    for before, stamp in zip([None, *stamps[:-1]], stamps, strict=True):
        if before is not None:
            queued += max(0.0, stamp.t_in - before.t_out)
        out[stamp.stage] = round((stamp.t_out - stamp.t_in) * 1000.0, 2)
    out["queues"] = round(queued * 1000.0, 2)
    out["total"] = round((done - header.capture_time) * 1000.0, 2)
    return out
