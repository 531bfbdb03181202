"""The evidence rule: classify makes no prediction for a person whose window has neither an
image embedding nor a keypoint frame (a transcript line alone says nothing of who spoke),
and every other window predicts as before, its modalities those of its span.

A property test over random frames (persons present or not, each with or without an image
and keypoints) and random transcript lines on the media clock, through the real stage and
the real text topic (its socket replaced by a queue of the same messages), against an
oracle written from the window rules: a person is due at each stride while seen within
``person_timeout_s``, and a feature at media time t is in the window ending at T when
T - window_seconds <= t < T."""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import numpy as np
import zmq
from hypothesis import example, given, settings
from hypothesis import strategies as st

from engines.adapters.classifier import WindowPredictions
from engines.adapters.windows import WindowBatch
from stream.config import ClassifyConfig
from stream.prediction import Prediction
from stream.stages.classify import ClassifyStage
from stream.stages.sinks import Sinks
from stream.transport.text_topic import TextLine, TextTopic
from stream.transport.wire import FrameMeta, Header, Message, Person

STEP = 0.125
"""Frame spacing: a binary fraction, so frame times and strides are exact."""
STRIDE = 0.5
WINDOW = 1.0
OFFSET = 100.0
"""capture_time - media_time of the stream."""
KEYPOINTS = np.random.default_rng(7).uniform(0, 100, (137, 3)).astype(np.float32)
KEYPOINTS[:, 2] = 1.0  # every point seen: the frame normalises to a real pose


class EvenClassifier:
    window_seconds = WINDOW
    image_rate = 2.0
    keypoint_rate = 5.0
    image_dim = 4
    text_dim = 4
    random_weights = True

    def classify(self, batch: WindowBatch) -> WindowPredictions:
        return WindowPredictions(np.full((len(batch.image_mask), 2), 0.5, np.float32))


class Records:
    name = "results"

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def emit(self, record: Prediction, line: bytes) -> None:
        self.records.append(json.loads(line))

    def close(self) -> None:
        pass


class Queue:
    """The receiving side of the text topic's SUB socket: the messages a publisher sent."""

    def __init__(self, messages: list[list[bytes]]) -> None:
        self.messages = deque(messages)

    def recv_multipart(self, flags: int = 0) -> list[bytes]:
        if not self.messages:
            raise zmq.Again()
        return self.messages.popleft()


FATES = st.sampled_from(["absent", "absent", "bare", "image", "keypoints", "both"])
"""A person in one frame: not in it, in it without features, or with some."""


def run(frames: list[dict[int, str]], lines: list[tuple[float, float]],
        timeout: float) -> tuple[list[dict[str, Any]], dict[str, Any], TextTopic]:
    records = Records()
    stage = ClassifyStage(EvenClassifier(), Sinks([records]),  # type: ignore[arg-type]
                          ClassifyConfig(stride_s=STRIDE, person_timeout_s=timeout,
                                         smoothing=0.0))
    sent = [[b"cam", TextLine(text=f"line {i}", media_start=start, media_end=end,
                              origin="asr").body()] for i, (start, end) in enumerate(lines)]
    topic = TextTopic(Queue(sent), lambda: lambda texts: np.ones((len(texts), 4), np.float32),
                      streams={"cam"}, clock=stage.clock_offset)
    stage.text = topic
    topic.poll()  # an ASR publishes a file's lines ahead of its video
    for seq, persons in enumerate(frames):
        t = seq * STEP
        people, image, keypoints = [], [], []
        for track, fate in sorted(persons.items()):
            if fate == "absent":
                continue
            row_image = row_kp = -1
            if fate in ("image", "both"):
                row_image = len(image)
                image.append(np.full(4, track + 1, np.float32))
            if fate in ("keypoints", "both"):
                row_kp = len(keypoints)
                keypoints.append(KEYPOINTS)
            people.append(Person(track_id=track, image=row_image, keypoints=row_kp))
        arrays = {name: np.stack(rows) for name, rows in (("image", image),
                                                          ("keypoints", keypoints)) if rows}
        header = Header(stream="cam", seq=seq, generation=1, capture_time=OFFSET + t,
                        media_time=t, meta=FrameMeta(persons=tuple(people)))
        stage.process([Message(header, arrays)])
    return records.records, stage.extra_status(), topic


def oracle(frames: list[dict[int, str]], lines: list[tuple[float, float]],
           timeout: float) -> dict[tuple[int, float], set[str]]:
    """Every (person, window end) classify must consider, and what its window holds."""
    windows: dict[tuple[int, float], set[str]] = {}
    tracks = {track for persons in frames for track in persons}
    for seq in range(1, len(frames)):
        end = seq * STEP
        if end % STRIDE:
            continue
        for track in tracks:
            seen = [i * STEP for i in range(seq + 1) if frames[i].get(track, "absent") != "absent"]
            if not seen or end - seen[-1] > timeout:
                continue
            inside = [frames[i].get(track, "absent") for i in range(seq)
                      if end - WINDOW <= i * STEP < end]
            held = set()
            if any(fate in ("image", "both") for fate in inside):
                held.add("image")
            if any(fate in ("keypoints", "both") for fate in inside):
                held.add("keypoints")
            if any(start <= end and finish >= end - WINDOW for start, finish in lines):
                held.add("text")
            windows[(track, end)] = held
    return windows


@settings(max_examples=150, deadline=None)
@given(frames=st.lists(st.dictionaries(st.integers(0, 2), FATES, max_size=3), min_size=2,
                       max_size=48),
       lines=st.lists(st.tuples(st.integers(0, 48), st.integers(0, 16)), max_size=4),
       timeout=st.sampled_from([0.5, 1.0, 2.0, 3.0]))
@example(frames=[{0: "both"}] * 4 + [{}] * 20, lines=[(16, 8)], timeout=3.0)  # a run's case
def test_no_prediction_without_image_or_keypoints_and_every_other_window_predicts(
        frames: list[dict[int, str]], lines: list[tuple[int, int]], timeout: float) -> None:
    spans = [(start * STEP, (start + length) * STEP) for start, length in lines]
    records, status, topic = run(frames, spans, timeout)
    expected = oracle(frames, spans, timeout)
    with_evidence = {key: held for key, held in expected.items() if held & {"image",
                                                                            "keypoints"}}
    made = {(r["person"], r["window"]["end"]): set(r["modalities"]) for r in records}
    assert len(made) == len(records)  # one prediction per person and window
    assert made == with_evidence
    skipped = len(expected) - len(with_evidence)
    assert status["windows_without_evidence"] == skipped
    assert status["streams"]["cam"]["windows_without_evidence"] == skipped
    assert topic.received == len(spans)  # every line accepted: the stream's transcript


def test_a_transcript_line_with_nobody_in_view_is_the_streams_not_a_persons() -> None:
    """A person seen at the start, gone (but within person_timeout_s) while a line is
    spoken: the line is accepted; the windows of text alone make no prediction."""
    frames = [{0: "both"}] * 4 + [{}] * 24
    records, status, topic = run(frames, [(2.0, 3.0)], timeout=3.0)
    assert {r["window"]["end"] for r in records} == {0.5, 1.0}  # its image and keypoints
    assert all("text" not in r["modalities"] for r in records)
    assert status["windows_without_evidence"] == 4  # 1.5 to 3.0: text alone, or nothing
    assert topic.received == 1 and topic.window_text("cam", OFFSET + 2.0, OFFSET + 3.0)
