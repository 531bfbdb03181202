"""Where predictions go: a PUB socket (JSON), an append-only JSONL log, anything else.

A prediction is a :class:`stream.prediction.Prediction` (schema ``hidemo.prediction/2``,
``docs/prediction.schema.json``), built by the classify stage. :class:`Sinks` serializes it
once (:func:`json_line`) and hands every sink the object and its line. Sinks are
independent: one that fails (a full disk, a closed socket) is counted and reported, never
allowed to stop the pipeline.

Example:
    >>> sinks = Sinks([JsonlSink(Path("out/predictions.jsonl"))])  # doctest: +SKIP
    >>> sinks.emit(prediction)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import zmq
from pydantic import BaseModel

from stream.files import LineAppender
from stream.prediction import Prediction
from stream.transport.wire import Header, Stamp

log = logging.getLogger(__name__)

PROBLEM_CHARS = 200
"""Longest error text a status report carries for one sink."""

class Sink(Protocol):
    """Takes each prediction and its JSON line (serialized once, by :class:`Sinks`)."""

    name: str

    def emit(self, prediction: Prediction, line: bytes) -> None: ...

    def close(self) -> None: ...


class PubSink:
    """Publishes ``[stream id, JSON]`` on a bound PUB socket (subscribe to a stream id, or "")."""

    name = "pub"

    def __init__(self, socket: zmq.Socket) -> None:
        self.socket = socket

    def emit(self, prediction: Prediction, line: bytes) -> None:
        self.socket.send_multipart([prediction.stream.encode(), line], flags=zmq.NOBLOCK)

    def close(self) -> None:
        self.socket.close(linger=0)


RESULTS_LINGER_MS = 1000
"""How long a closing classify keeps its last records for the supervisor (which reads
them as it stops the stages); bounded, so an absent supervisor cannot hold it."""


class ResultsSink:
    """Hands each record to the supervisor over the private ``results`` hop (its view, its
    metrics, its MQTT publisher). Never waits and never fails the run: a record the hop
    has no room for (a supervisor that stopped reading) is counted in ``unsent``, and the
    pipeline goes on."""

    name = "results"

    def __init__(self, socket: zmq.Socket) -> None:
        self.socket = socket
        self.unsent = 0

    def emit(self, prediction: Prediction, line: bytes) -> None:
        try:
            self.socket.send(line, flags=zmq.NOBLOCK)
        except zmq.Again:
            self.unsent += 1

    def close(self) -> None:
        self.socket.close(linger=RESULTS_LINGER_MS)


class JsonlSink:
    """Appends one JSON line per record (a prediction, a frame trace, a transcript line)
    through :class:`stream.files.LineAppender`: each line is written whole or not at all,
    unbuffered, so a crash loses nothing written and a full disk never leaves half a line.

    A write that fails (a full disk: ENOSPC, an I/O error) is cut back to the last whole
    line and disables the sink: that error is raised once, for the caller to report, and
    every later record is only counted in ``skipped``. Retrying each record would cost a
    failing write per prediction and, when space came back, leave a gap in the middle of
    the file that nothing marks; disabled, the file is valid JSONL up to the failure, and
    ``skipped`` says how much is missing after it. :meth:`close` never raises.
    """

    def __init__(self, path: Path, name: str = "jsonl") -> None:
        self.name = name
        self.path = path
        self.error: OSError | None = None
        self.skipped = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = LineAppender(path)

    @property
    def failed(self) -> int:
        """Records that did not reach the file: the failed write and those skipped since."""
        return (self.error is not None) + self.skipped

    def emit(self, record: BaseModel, line: bytes) -> None:
        """Append ``line`` (``record`` serialized by :func:`json_line`)."""
        if self.error is not None:
            self.skipped += 1
            return
        try:
            self._file.append(line)
        except OSError as error:
            if error.filename is None:  # os.write names no file: say which
                error.filename = str(self.path)
            self.error = error
            self.close()  # the next write would fail the same way
            raise

    def close(self) -> None:
        self._file.close()


class Sinks:
    """Fans a prediction out to every sink; counts failures per sink instead of raising."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self._raised: dict[str, int] = {}
        self.problems: dict[str, str] = {}
        """Per sink that failed, its first error (``No space left on device: PATH``)."""
        self.emitted = 0

    def unsent(self, name: str) -> int:
        """Records sink ``name`` had no room for (0 for a sink that never drops)."""
        return sum(getattr(sink, "unsent", 0) for sink in self.sinks if sink.name == name)

    @property
    def errors(self) -> dict[str, int]:
        """Per sink that failed, the records that did not reach it (its failed writes, and
        those a disabled sink skipped); the run's summary reports them as a failure."""
        out = dict(self._raised)
        for sink in self.sinks:
            skipped = getattr(sink, "skipped", 0)
            if skipped:
                out[sink.name] = out.get(sink.name, 0) + skipped
        return out

    def emit(self, prediction: Prediction) -> None:
        line = json_line(prediction)
        self.emitted += 1
        for sink in self.sinks:
            try:
                sink.emit(prediction, line)
            except (OSError, zmq.ZMQError) as error:
                count = self._raised[sink.name] = self._raised.get(sink.name, 0) + 1
                self.problems.setdefault(sink.name, problem_text(error))
                if count == 1:
                    log.warning("sink %s failed (counted, not fatal; the other sinks go on): "
                                "%s", sink.name, error)

    def close(self) -> None:
        """Close every sink; never raises (a sink's error never kills the stage)."""
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as error:  # noqa: BLE001 - closing must go on, whatever failed
                log.warning("closing sink %s: %s", sink.name, error)


def problem_text(error: BaseException) -> str:
    """A sink's error as the run's verdict shows it: ``No space left on device: PATH``."""
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror + (f": {error.filename}" if error.filename else "")
    else:
        text = str(error)
    return text[:PROBLEM_CHARS]


def json_line(record: BaseModel) -> bytes:
    """``record`` as one line of JSON, the one place a record leaving a stage is serialized.
    Its model already bounds it: counts saturate at :data:`stream.transport.wire.MAX_COUNT`
    (:data:`stream.transport.wire.Tally`), a prediction refuses a non-finite number, and any other
    record's NaN or infinity is written as null (JSON has none; a strict reader would reject
    the whole line)."""
    return record.model_dump_json(by_alias=True).encode()


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
