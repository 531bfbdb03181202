"""Sinks on a full disk, and strict JSON out.

``/dev/full`` accepts an open and fails every write with ENOSPC: a full disk on demand.
A JSONL sink there must report once, skip and count the rest, never raise on close, and
leave the PUB socket and the other sinks untouched; the run then exits non-zero naming the
sink.
"""

from __future__ import annotations

import errno
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq
from pipeline_runs import finish, start_run, write_config
from sample_records import prediction

from stream import strictjson
from stream.prediction import FrameTrace, Prediction
from stream.stages.sinks import JsonlSink, Sinks, json_line

FULL = Path("/dev/full")
needs_dev_full = pytest.mark.skipif(not FULL.exists(), reason="no /dev/full on this system")


def strict_loads(text: str) -> Any:
    """``json.loads`` that rejects NaN and Infinity, as a strict JSON parser does."""
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


class ListSink:
    name = "list"

    def __init__(self) -> None:
        self.predictions: list[Prediction] = []
        self.lines: list[bytes] = []

    def emit(self, prediction: Prediction, line: bytes) -> None:
        self.predictions.append(prediction)
        self.lines.append(line)

    def close(self) -> None:
        pass


@needs_dev_full
def test_a_jsonl_sink_on_a_full_disk_fails_once_then_counts(caplog) -> None:
    full = JsonlSink(FULL)
    other = ListSink()
    sinks = Sinks([other, full])
    with caplog.at_level(logging.WARNING, logger="stream.stages.sinks"):
        for seq in range(5):
            sinks.emit(prediction(seq))
        sinks.close()  # never raises
    assert len(other.lines) == 5  # the other sinks got everything
    assert [p.seq for p in other.predictions] == list(range(5))  # the object, and its line:
    assert [Prediction.model_validate_json(line) for line in other.lines] == other.predictions
    assert sinks.errors == {"jsonl": 5}  # every record the log missed, counted
    assert isinstance(full.error, OSError) and full.error.errno == errno.ENOSPC
    assert sum("sink jsonl failed" in r.getMessage() for r in caplog.records) == 1  # once
    full.close()  # twice: still no error


@needs_dev_full
def test_a_frame_trace_on_a_full_disk_raises_once_only() -> None:
    trace = JsonlSink(FULL, name="frames")  # used without Sinks: the caller logs the raise
    record = prediction(0)
    with pytest.raises(OSError):
        trace.emit(record, json_line(record))
    for _ in range(3):
        trace.emit(record, json_line(record))
    assert trace.skipped == 3
    trace.close()


def test_outputs_are_strict_json() -> None:
    record = {"p": float("nan"), "inf": [float("inf"), 1.5], "n": np.int64(3),
              "f": np.float32(0.25), "deep": {"x": -math.inf}}
    expected = {"p": None, "inf": [None, 1.5], "n": 3, "f": 0.25, "deep": {"x": None}}
    assert strict_loads(strictjson.dumps(record)) == expected
    trace = FrameTrace(stream="s", seq=2**60, generation=1, capture_time=1.0,
                       arrival=float("nan"), age_frames=float("inf"), dropped=0, lost=0,
                       persons=1, latency_ms={"total": -math.inf}, stamps=[("a", 1, 2, 3)])
    line = strict_loads(json_line(trace).decode())
    assert line["arrival"] is None and line["age_frames"] is None
    assert line["latency_ms"] == {"total": None}
    assert line["seq"] == 2**53  # saturated at the bound the records state
    assert line["stamps"] == [["a", 1.0, 2.0, 3.0]]
    one = prediction(7)
    assert Prediction.model_validate_json(json_line(one)) == one
    assert strict_loads(json_line(one).decode())["schema"] == "hidemo.prediction/2"


@pytest.mark.slow
@needs_dev_full
def test_a_full_disk_keeps_predictions_on_pub_and_fails_the_run_naming_the_sink(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "predictions.jsonl").symlink_to(FULL)  # every write: ENOSPC
    config = write_config(tmp_path, [{"spec": "demo", "width": 320, "height": 240}])
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"ipc://{tmp_path}/predictions")
    published: list[dict[str, Any]] = []
    try:
        process = start_run(tmp_path, tiny_engine_dir, config, 8.0)
        while process.poll() is None:
            if sub.poll(100):
                _, body = sub.recv_multipart()
                published.append(json.loads(body))
        output = finish(process)
    finally:
        context.destroy(linger=0)
    assert process.returncode == 1, output
    assert len(published) >= 3, output  # the PUB socket never noticed
    seqs = [r["seq"] for r in published]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    summary = strict_loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 1
    assert not any(summary["restarts"].values()), output  # classify did not crash
    failures = summary["failures"]
    assert len(failures) == 1 and failures[0].startswith("sink jsonl failed"), failures
    assert summary["stages"]["classify[0]"]["extra"]["sink_errors"]["jsonl"] >= len(published)
    assert "FAILED: sink jsonl failed" in output
