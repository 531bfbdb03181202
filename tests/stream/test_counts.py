"""Every count in a record stays within the schema's bound
(:data:`stream.transport.wire.MAX_COUNT`), whatever a peer sends; the wire's ``version``
is an integer, not something equal to one.

Frames with the run's real stream id but absurd sequence numbers, drop counts and
generation jumps are accepted (they are well-formed), and classify's accounting sums them:
past ``2**53`` after a few generations. The property drives the real classify stage with
any such sequence and checks every record it puts out: each prediction against the
published JSON Schema, each frame-trace line, and its status report as the supervisor
validates it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engines.adapters.classifier import WindowPredictions
from engines.adapters.windows import WindowBatch
from stream.config import ClassifyConfig
from stream.prediction import FrameCounts, Prediction
from stream.stages.classify import ClassifyStage
from stream.stages.sinks import JsonlSink, Sinks
from stream.transport.status import StatusReporter, decode_status, encode_status
from stream.transport.wire import (
    MAX_COUNT,
    FrameMeta,
    Header,
    Message,
    Person,
    WireError,
    decode,
    encode,
    saturated,
)

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs"
                     / "prediction.schema.json").read_text())


PREDICTION = {
    "schema": "hidemo.prediction/2", "stream": "cam", "seq": 0, "person": 1, "generation": 1,
    "frame_seq": 0, "label": "positive", "probs": {"negative": 0.5, "positive": 0.5},
    "window": {"start": 0.0, "end": 1.0, "seconds": 1.0}, "modalities": ["image"],
    "slots": {"image": 1, "keypoints": 0, "text": 0}, "smoothing": 0.0, "capture_time": 1.0,
    "emit_time": 1.0, "latency_ms": {"total": 1.0},
    "frames": {"received": 1, "dropped": 0, "lost": 0}, "detector": None,
    "random_weights": True, "random_engines": []}


class EvenClassifier:
    """The classifier's interface with a fixed answer: these tests attack the accounting
    around it, not the model (the pipeline tests run the real engines)."""

    window_seconds = 1.0
    image_rate = 2.0
    keypoint_rate = 5.0
    image_dim = 4
    text_dim = 4
    random_weights = True

    def classify(self, batch: WindowBatch) -> WindowPredictions:
        return WindowPredictions(np.full((len(batch.image_mask), 2), 0.5, np.float32))


class Lines:
    name = "lines"

    def __init__(self) -> None:
        self.records: list[Any] = []

    def emit(self, record: Prediction, line: bytes) -> None:
        self.records.append(json.loads(line))

    def close(self) -> None:
        pass


def integers(value: Any) -> list[int]:
    if isinstance(value, dict):
        return [n for v in value.values() for n in integers(v)]
    if isinstance(value, list | tuple):
        return [n for v in value for n in integers(v)]
    return [value] if isinstance(value, int) and not isinstance(value, bool) else []


def hostile_frame(index: int, generation: int, seq: int, dropped: int) -> Message:
    meta = FrameMeta(persons=(Person(track_id=3, image=0),))
    header = Header(stream="cam", seq=seq, generation=generation, capture_time=1.0 + index,
                    media_time=0.6 * index, dropped=dropped, meta=meta)
    return Message(header, {"image": np.ones((1, 4), np.float32)})


SEGMENTS = st.lists(st.tuples(st.sampled_from([0, 1, 2, 7, 2**31]),
                              st.integers(0, MAX_COUNT), st.integers(0, MAX_COUNT),
                              st.integers(1, 4)), min_size=1, max_size=8)
"""Runs of frames: (generation, first seq, dropped, frames in the run): a run of two or
more frames in one generation makes predictions."""


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segments=SEGMENTS)
@example(segments=[(g, MAX_COUNT - 1, 0, 2) for g in (1, 2, 7, 2**31)])  # lost > 3 * 2**53
@example(segments=[(1, 0, MAX_COUNT, 3), (2, 0, MAX_COUNT, 3)])  # dropped > 2**53
def test_every_count_classify_reports_stays_within_the_bound(
        tmp_path: Path, segments: list[tuple[int, int, int, int]]) -> None:
    predictions = Lines()
    trace_path = tmp_path / "frames.jsonl"
    trace_path.unlink(missing_ok=True)
    trace = JsonlSink(trace_path, name="frames")
    stage = ClassifyStage(EvenClassifier(), Sinks([predictions]),  # type: ignore[arg-type]
                          ClassifyConfig(stride_s=0.5), trace=trace)
    index = 0
    for generation, seq, dropped, count in segments:
        for i in range(count):
            stage.process([hostile_frame(index, generation, min(seq + i, MAX_COUNT),
                                         dropped)])
            index += 1
    trace.close()
    reporter = StatusReporter(None, "classify", 0)
    reporter.maybe_send(stage.extra_status(), force=True)
    raw = encode_status(reporter.status)
    status = decode_status(raw)  # the supervisor accepts it, figures included
    assert set(status.extra["streams"]) == {"cam"}, status.extra
    traced = [json.loads(line) for line in trace_path.read_bytes().splitlines()]
    assert len(traced) == index
    if any(count >= 2 for *_, count in segments):
        assert predictions.records  # the prediction path was exercised
    for record in predictions.records:
        jsonschema.validate(record, SCHEMA)  # maximum 2**53 on every count
    for record in [*predictions.records, *traced, json.loads(raw)]:
        assert all(n <= MAX_COUNT for n in integers(record)), record


def test_a_prediction_saturates_its_counts_and_says_so_in_its_schema() -> None:
    counts = FrameCounts(received=5, dropped=2**60, lost=99079191816256241)
    assert (counts.dropped, counts.lost) == (MAX_COUNT, MAX_COUNT)
    frames = Prediction.model_json_schema()["$defs"]["FrameCounts"]["properties"]
    assert {name: spec["maximum"] for name, spec in frames.items()} == \
        dict.fromkeys(("received", "dropped", "lost"), MAX_COUNT)
    with pytest.raises(ValueError):
        FrameCounts(received=-1, dropped=0, lost=0)  # below the bound is a bug: refused


@pytest.mark.parametrize(("field", "value"), [
    ("seq", "true"), ("seq", '"3"'), ("seq", "3.0"), ("generation", "false"),
    ("person", '"1"'), ("capture_time", "true"), ("frames", '{"received": true, '
                                                    '"dropped": 0, "lost": 0}')])
def test_a_prediction_reader_takes_no_look_alike_for_a_number(field: str, value: str) -> None:
    """What the supervisor's view and the web view read: ``true`` is not the count 1."""
    record = json.loads(json.dumps(PREDICTION))
    assert Prediction.model_validate_json(json.dumps(record)).seq == 0
    body = json.dumps({**record, field: "__X__"}).replace('"__X__"', value)
    with pytest.raises(ValueError):
        Prediction.model_validate_json(body)


def test_saturated_caps_every_integer_and_leaves_the_rest() -> None:
    record = {"a": 2**60, "b": [1, 2**54, {"c": MAX_COUNT + 1}], "d": True, "e": 1.5e300,
              "f": "9" * 30, "g": -2**60}
    assert saturated(record) == {"a": MAX_COUNT, "b": [1, MAX_COUNT, {"c": MAX_COUNT}],
                                 "d": True, "e": 1.5e300, "f": "9" * 30, "g": -2**60}


@pytest.mark.parametrize("version", [4.0, "4", True, 4.5, None, 5, [4]])
def test_the_wire_version_must_be_the_integer_itself(version: Any) -> None:
    header = json.loads(encode(Header(stream="s", seq=0, generation=1, capture_time=1.0,
                                      media_time=0.0))[0])
    assert decode([json.dumps(header).encode()]).header.version == 4
    header["header"]["version"] = version
    with pytest.raises(WireError) as refused:
        decode([json.dumps(header).encode()])
    assert refused.value.reason == "version"
