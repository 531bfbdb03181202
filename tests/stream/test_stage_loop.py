"""The batch loop outlives its input: bad items are dropped and counted, never fatal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream.config import ClassifyConfig, StageConfig
from stream.stages.classify import ClassifyMemory, ClassifyStage
from stream.stages.loop import BatchStage, _process
from stream.transport.status import Counters, FailedItems
from stream.transport.wire import FrameMeta, Header, Kind, Message, Person, WireError


def frame(seq: int, **changes: object) -> Message:
    fields = {"stream": "a", "seq": seq, "generation": 1, "capture_time": 1.0,
              "media_time": seq / 10}
    fields.update(changes)
    return Message(Header(**fields), {})  # type: ignore[arg-type]


class Picky(BatchStage):
    """Raises on odd sequence numbers, echoes the rest."""

    name = "picky"

    def process(self, batch: list[Message]) -> list[Message]:
        if any(m.header.seq % 2 for m in batch):
            raise KeyError("odd")
        return batch


class Sink:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, message: Message) -> bool:
        self.sent.append(message)
        return True


def test_one_failing_item_costs_only_itself() -> None:
    counters, sink = Counters(), Sink()
    failures = FailedItems(counters, "picky")
    config = StageConfig(max_batch=8)
    _process(Picky(), [frame(i) for i in range(6)], config, counters, sink, failures)
    assert [m.header.seq for m in sink.sent] == [0, 2, 4]
    assert counters.failed == {"KeyError": 3}
    assert counters.processed == 6


@pytest.mark.parametrize("size", [1, 2, 5])
def test_a_batch_of_failing_items_of_any_size_is_dropped_and_counted(size: int) -> None:
    """A batch of one that fails (an engine error on a lone frame) must not kill the stage
    any more than a bigger one does."""
    counters, sink = Counters(), Sink()
    failures = FailedItems(counters, "picky")
    _process(Picky(), [frame(2 * i + 1) for i in range(size)], StageConfig(max_batch=8),
             counters, sink, failures)
    assert sink.sent == []
    assert counters.failed == {"KeyError": size} and counters.processed == size


class FakeClassifier:
    window_seconds = 2.0
    image_rate = 2.0
    keypoint_rate = 5.0
    image_dim = 4
    text_dim = 4
    random_weights = True


class NullSinks:
    def __init__(self) -> None:
        self.errors: dict[str, int] = {}

    def emit(self, prediction: object) -> None:
        pass

    def close(self) -> None:
        pass


def classify_stage(**config: object) -> ClassifyStage:
    return ClassifyStage(FakeClassifier(), NullSinks(), ClassifyConfig(**config))  # type: ignore[arg-type]


def test_a_stride_is_found_by_arithmetic_and_an_absurd_time_does_not_silence_the_stream() -> None:
    stage = classify_stage(stride_s=0.5)
    state = stage._stream("a")
    assert not stage._stride_due(state, 10.0)  # the first frame sets the clock
    assert stage._stride_due(state, 10.5)
    assert not stage._stride_due(state, 10.6)
    assert stage._stride_due(state, 9e8)  # one step, not 1.8e9 loop turns
    assert math.isclose(state.next_due % 0.5, 0.0, abs_tol=1e-6) and state.next_due > 9e8
    assert not stage._stride_due(state, 11.0)  # the clock went back: strides restart here
    assert stage._stride_due(state, 11.5)


@pytest.mark.parametrize("arrays", [
    {"image": np.zeros((1, 3), np.float32)},
    {"image": np.zeros((1, 4), np.float64)},
    {"keypoints": np.zeros((1, 137, 2), np.float32)},
    {"crop0": np.zeros((4, 4, 3), np.uint8)},
    {"image": np.zeros((0, 4), np.float32)},  # person 0 points at row 0 of an empty array
])
def test_classify_refuses_arrays_it_cannot_use(arrays: dict[str, np.ndarray]) -> None:
    meta = FrameMeta(persons=(Person(track_id=1, image=0),))
    message = Message(Header(stream="a", seq=0, generation=1, capture_time=1.0,
                             media_time=0.0, meta=meta), arrays)
    with pytest.raises(WireError) as caught:
        classify_stage().admit(message)
    assert caught.value.reason == "arrays"


def test_a_restarted_classify_keeps_numbering_and_accounting(tmp_path) -> None:
    path = tmp_path / "state.json"
    first = classify_stage()
    first.memory = ClassifyMemory(path)
    first.process([frame(i) for i in range(5)])
    first._streams["a"].predictions = 7
    first.memory.save(first._streams)
    again = ClassifyStage(FakeClassifier(), NullSinks(), ClassifyConfig(),  # type: ignore[arg-type]
                          memory=ClassifyMemory(path))
    again.process([frame(8)])  # frames 5-7 died with the first process: lost, no more
    state = again._streams["a"]
    assert state.predictions == 7 and state.book.frames == 6 and state.book.lost == 3
    path.write_text("{not json")
    assert ClassifyMemory(path).streams == {}  # unreadable: start afresh, never crash


def test_a_false_end_of_stream_is_contradicted_by_the_frames_after_it() -> None:
    stage = classify_stage()
    stage.process([frame(0), frame(1)])
    eos = Message(Header(stream="a", seq=2, generation=1, capture_time=1.0, media_time=0.2,
                         kind=Kind.EOS), {})
    stage.on_control(eos)
    assert stage._streams["a"].ended
    stage.process([frame(1)])  # late from a replica: sent before the end, consistent
    assert stage._streams["a"].ended
    stage.process([frame(5)])  # the end said 2 frames were sent: it was false
    assert not stage._streams["a"].ended
