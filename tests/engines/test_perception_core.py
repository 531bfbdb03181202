"""The perception core's strategies on stubs: order, bounds, sessions, keypoint pairing.

The real models run in tests/test_same_features.py (training, live and baseline agree);
here small stand-ins check the rules each strategy owns: most prominent first and at most
``max_persons``, a new generation starts a stream afresh, per-person keypoint graphs stay
bounded, and each keypoint strategy takes only what pairs with its core.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engines.adapters.holistic import PersonKeypoints
from engines.adapters.perception import (
    EstimatorCore,
    GivenKeypoints,
    KeypointSource,
    MediaPipeCropKeypoints,
    Percept,
    PerceptionFrame,
    TrackedCore,
    crop_keypoints_for,
)
from engines.adapters.records import Detections

FRAME = np.zeros((240, 320, 3), np.uint8)
SPEAKER = (110.0, 40.0, 210.0, 240.0)  # big, central
PASSER = (5.0, 5.0, 35.0, 60.0)  # small, in a corner
OUTSIDE = (400.0, 10.0, 450.0, 60.0)  # right of the frame: no crop


class BoxFinder:
    name = identity = "boxes"
    random_weights = False
    device = "cpu"

    def __init__(self, *boxes: tuple[float, float, float, float]) -> None:
        self.boxes = np.array(boxes, np.float32).reshape(-1, 4)
        self.released: list[str] = []

    def find(self, streams: list[str], frames: list[np.ndarray]) -> list[Detections]:
        n = len(self.boxes)
        return [Detections(self.boxes, np.full(n, 0.9), np.zeros(n)) for _ in frames]

    def warm_up(self, streams: list[str], frame_hw: tuple[int, int]) -> None:
        pass

    def release(self, stream: str) -> None:
        self.released.append(stream)

    def close(self) -> None:
        pass


def frames(stream: str = "a", generation: int = 0, count: int = 1) -> list[PerceptionFrame]:
    return [PerceptionFrame(stream, generation, FRAME) for _ in range(count)]


def test_tracked_core_orders_by_prominence_bounds_persons_and_drops_boxes_outside() -> None:
    core = TrackedCore(BoxFinder(PASSER, SPEAKER, OUTSIDE), frame_rate=10.0, max_persons=4)
    [persons] = core.perceive(frames())
    np.testing.assert_allclose([p.xyxy for p in persons], [SPEAKER, PASSER],  # not OUTSIDE
                               atol=1e-3)
    assert core.keypoints is KeypointSource.MEDIAPIPE and all(p.keypoints is None
                                                              for p in persons)
    speaker = persons[0]
    assert speaker.offset == (95, 10) and speaker.crop.shape == (230, 130, 3)  # 15% margin
    one = TrackedCore(BoxFinder(PASSER, SPEAKER), frame_rate=10.0, max_persons=1)
    np.testing.assert_allclose([p.xyxy for p in one.perceive(frames())[0]], [SPEAKER],
                               atol=1e-3)


def test_tracked_core_keeps_ids_per_session_and_releases_streams() -> None:
    finder = BoxFinder(SPEAKER)
    core = TrackedCore(finder, frame_rate=10.0)
    first = [p[0].track_id for p in core.perceive(frames(count=3) + frames("b", count=1))]
    assert first[:3] == [first[0]] * 3  # one id while the person stays
    again = core.perceive(frames(generation=1))[0][0].track_id
    assert again == first[0]  # a new session's tracker starts its own count afresh
    core.release("b")
    assert finder.released == ["b"]


class StubEstimator:
    """Records resets and calls; one person per frame whose id counts frames since reset."""

    max_persons = 4
    crop_margin = 0.15
    random_weights = False

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.resets: list[str] = []
        self.seen: dict[str, int] = {}

    def process(self, items: list[tuple[str, np.ndarray]]) -> list[list[PersonKeypoints]]:
        self.calls.append([stream for stream, _ in items])
        out = []
        for stream, _frame in items:
            count = self.seen.get(stream, 0)
            self.seen[stream] = count + 1
            out.append([PersonKeypoints(count, np.array(PASSER), 0.9, np.ones((137, 3))),
                        PersonKeypoints(count + 100, np.array(SPEAKER), 0.8,
                                        np.ones((137, 3)))])
        return out

    def reset(self, stream: str) -> None:
        self.resets.append(stream)
        self.seen.pop(stream, None)

    def close(self) -> None:
        pass


def test_estimator_core_gives_keypoints_most_prominent_first_and_splits_sessions() -> None:
    estimator = StubEstimator()
    core = EstimatorCore(estimator)  # type: ignore[arg-type]
    [persons] = core.perceive(frames())
    assert [tuple(p.xyxy) for p in persons] == [SPEAKER, PASSER]
    assert all(p.keypoints is not None and p.keypoints.shape == (137, 3) for p in persons)
    assert core.keypoints is KeypointSource.ENGINES
    # a batch holding a stream's old and new session: two calls, the reset between them
    out = core.perceive([*frames("a", 0), *frames("b", 0), *frames("a", 1)])
    assert estimator.calls[1:] == [["a", "b"], ["a"]]
    assert estimator.resets == ["a", "b", "a"]
    assert [p[1].track_id for p in out] == [1, 0, 0]  # a's new session starts afresh


class Graph:
    opened = 0
    closed = 0

    def __init__(self) -> None:
        Graph.opened += 1

    def process(self, crop: np.ndarray, offset: Any = (0, 0)) -> np.ndarray:
        return np.full((137, 3), float(offset[0]), np.float32)

    def close(self) -> None:
        Graph.closed += 1


def test_mediapipe_crop_keypoints_keep_a_bounded_graph_per_person() -> None:
    Graph.opened = Graph.closed = 0
    maker = MediaPipeCropKeypoints(Graph, per_stream=2)
    crop = FRAME[:10, :10]
    for track in range(5):
        assert maker.keypoints(("a", 0, track), crop, (track, 0), None)[0, 0] == track
    assert Graph.opened == 5 and Graph.opened - Graph.closed == 2  # least recent closed
    maker.keypoints(("b", 0, 1), crop, (0, 0), None)
    maker.release("a")
    assert Graph.opened - Graph.closed == 1
    with pytest.raises(ValueError, match="made keypoints"):
        maker.keypoints(("a", 0, 1), crop, (0, 0), np.zeros((137, 3)))
    maker.close()
    assert Graph.opened == Graph.closed


def test_given_keypoints_pass_the_cores_on_and_refuse_a_person_without() -> None:
    given = GivenKeypoints()
    person = Percept(3, 0.9, np.array(SPEAKER), FRAME[:5, :5], (1, 2), np.ones((137, 3)))
    out = given.keypoints(("a", 0, 3), person.crop, person.offset, person.keypoints)
    np.testing.assert_array_equal(out, np.ones((137, 3)))
    with pytest.raises(ValueError, match="without keypoints"):
        given.keypoints(("a", 0, 3), person.crop, person.offset, None)
    assert not given.whole_frame(("a", 0, -1), FRAME).any()  # the core found nobody there
    assert isinstance(crop_keypoints_for(KeypointSource.ENGINES), GivenKeypoints)
    assert isinstance(crop_keypoints_for(KeypointSource.MEDIAPIPE), MediaPipeCropKeypoints)


def test_a_percept_is_frozen_and_checked() -> None:
    person = Percept(1, 0.5, np.array(SPEAKER), FRAME[:5, :5], (1.0, 2.0), np.ones((137, 3)))
    assert person.offset == (1, 2) and person.keypoints.dtype == np.float32
    with pytest.raises(ValueError):
        person.xyxy[0] = 1.0
    with pytest.raises(ValueError, match="137"):
        Percept(1, 0.5, np.array(SPEAKER), FRAME[:5, :5], (0, 0), np.ones((136, 3)))
    with pytest.raises(ValueError, match="non-empty"):
        Percept(1, 0.5, np.array(SPEAKER), FRAME[:0, :5], (0, 0))
