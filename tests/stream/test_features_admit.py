"""The features stage's admission rules for what detect sends, keypoints included.

With ``keypoints: engines`` detect ships every person's keypoints (buffer ``keypoints``,
N x 137 x 3 float32, ``Person.keypoints`` the row); with ``mediapipe`` it ships none and
features makes its own. Whatever arrives, admission either accepts a message the stage
can process or refuses it with a counted reason (``arrays``); hypothesis builds the
hostile variants. No engine runs: a stub embedder and stub keypoint graphs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engines.adapters.perception import GivenKeypoints, MediaPipeCropKeypoints
from engines.adapters.records import ImageEmbeddings
from stream.stages.features import FeaturesStage
from stream.transport.wire import (
    MAX_PIXELS,
    FrameMeta,
    Header,
    Message,
    Person,
    WireError,
    decode,
    encode,
)

DIM = 8


class StubEmbedder:
    random_weights = False

    def embed(self, crops: list[np.ndarray]) -> ImageEmbeddings:
        rows = np.array([[float(c.shape[0])] * DIM for c in crops], np.float32)
        return ImageEmbeddings(rows, rows)

    def close(self) -> None:
        pass


class StubGraph:
    def process(self, crop: np.ndarray, offset: Any = (0, 0)) -> np.ndarray:
        return np.full((137, 3), 0.5, np.float32)

    def close(self) -> None:
        pass


def stage(shipped: bool) -> FeaturesStage:
    keypoints = GivenKeypoints() if shipped else MediaPipeCropKeypoints(StubGraph)
    return FeaturesStage(StubEmbedder(), keypoints, image_rate=2.0, keypoint_rate=5.0)


def message(persons: int, keypoints: np.ndarray | None, slots: list[int] | None = None,
            crops: dict[str, np.ndarray] | None = None) -> Message:
    slots = slots if slots is not None else (
        list(range(persons)) if keypoints is not None else [-1] * persons)
    meta = FrameMeta(persons=tuple(Person(track_id=i, box=(1.0, 1.0, 9.0, 9.0),
                                          keypoints=slot)
                                   for i, slot in enumerate(slots)))
    arrays = crops if crops is not None else {f"crop{i}": np.zeros((8, 6, 3), np.uint8)
                                              for i in range(persons)}
    if keypoints is not None:
        arrays = {**arrays, "keypoints": keypoints}
    header = Header(stream="s", seq=0, generation=0, capture_time=1.0, media_time=0.0,
                    meta=meta)
    return decode(encode(header, arrays))  # through the wire, as a stage receives it


def rows(persons: int, value: float = 0.5) -> np.ndarray:
    return np.full((persons, 137, 3), value, np.float32)


def test_shipped_keypoints_are_admitted_and_used_row_by_row() -> None:
    features = stage(shipped=True)
    shipped = rows(2)
    shipped[1, :, :2] = 42.0
    incoming = message(2, shipped, slots=[1, 0])  # person 0 has row 1
    features.admit(incoming)
    [out] = features.process([incoming])
    assert out.header.meta.keypoints == "engines"
    by_track = {p.track_id: out.arrays["keypoints"][p.keypoints] for p in out.header.meta.persons}
    np.testing.assert_array_equal(by_track[0], shipped[1])
    np.testing.assert_array_equal(by_track[1], shipped[0])
    features.admit(message(0, None))  # nobody: nothing to ship


def test_mediapipe_runs_make_their_own_and_refuse_shipped_ones() -> None:
    features = stage(shipped=False)
    incoming = message(1, None)
    features.admit(incoming)
    [out] = features.process([incoming])
    assert out.header.meta.keypoints == "mediapipe" and out.arrays["keypoints"].shape == (1, 137, 3)
    with pytest.raises(WireError) as refused:
        features.admit(message(1, rows(1)))
    assert refused.value.reason == "arrays"


BAD_SHIPPED = {
    "missing": lambda: message(2, None),
    "float64": lambda: message(2, rows(2).astype(np.float64)),
    "too few rows": lambda: message(2, rows(1), slots=[0, 0]),
    "too many rows": lambda: message(1, rows(2)),
    "136 points": lambda: message(1, np.zeros((1, 136, 3), np.float32)),
    "4 channels": lambda: message(1, np.zeros((1, 137, 4), np.float32)),
    "flat": lambda: message(1, np.zeros((137 * 3,), np.float32), slots=[0]),
    "duplicate rows": lambda: message(2, rows(2), slots=[0, 0]),
    "a person without a row": lambda: message(2, rows(2), slots=[0, -1]),
    "row out of range": lambda: message(1, rows(1), slots=[1]),
    "confidence above 1": lambda: message(1, rows(1, 1.5)),
    "negative confidence": lambda: message(1, rows(1, -0.1)),
    "pixels beyond the bound": lambda: message(1, rows(1, 2 * MAX_PIXELS)),
    "an extra array": lambda: message(1, rows(1), crops={"crop0": np.zeros((8, 6, 3), np.uint8),
                                                         "x": np.zeros(1, np.uint8)}),
}


@pytest.mark.parametrize("case", sorted(BAD_SHIPPED))
def test_bad_shipped_keypoints_are_refused_with_a_reason(case: str) -> None:
    with pytest.raises(WireError) as refused:
        stage(shipped=True).admit(BAD_SHIPPED[case]())
    assert refused.value.reason == "arrays"


@settings(max_examples=300, deadline=None)
@given(persons=st.integers(0, 4), shipped=st.booleans(), data=st.data())
def test_any_message_is_admitted_and_processed_or_refused_with_a_reason(
        persons: int, shipped: bool, data: st.DataObject) -> None:
    """Hostile keypoint arrays (any shape, dtype, values, row numbers): admission accepts
    only what the stage processes without error, and refuses the rest as ``arrays``."""
    dims = data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=3).map(tuple)
                     | st.just((persons, 137, 3)))
    dtype = data.draw(st.sampled_from([np.float32, np.float64, np.uint8]))
    value = data.draw(st.sampled_from([0.0, 0.5, 1.0, -1.0, 3.0, 1e7]))
    ship = data.draw(st.booleans())
    keypoints = np.full(dims, value).astype(dtype) if ship else None
    slots = data.draw(st.lists(st.integers(-1, 5), min_size=persons, max_size=persons))
    features = stage(shipped)
    incoming = message(persons, keypoints, slots)
    try:
        features.admit(incoming)
    except WireError as error:
        assert error.reason == "arrays"
        return
    [out] = features.process([incoming])  # admitted: processed without error
    assert len(out.header.meta.persons) == persons
    if persons and shipped:
        assert out.arrays["keypoints"].shape == (persons, 137, 3)
