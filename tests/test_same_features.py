"""One perception core: training, the live stages and the baseline give the same features.

The same demo-clip frames go through training's :class:`FrameFeatures`, through the live
``detect`` and ``features`` stages (built as ``hidemo run`` builds them, messages through
the real wire encoding and each stage's admission rules) and through the benchmark
baseline's per-frame path. Each must pick the same person (track id, box) in every frame
and give the same image embeddings and keypoints, for both keypoint sources: MediaPipe on
the crop and the keypoint engines (the tiny engine folder has them).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engines.adapters.rates import slot_of
from engines.profiles import get_profile
from stream.config import RunConfig, load_config
from stream.media.demo import DemoClip
from stream.transport.wire import Header, WireRules, encode
from training.features.frames import FrameFeatures, NoPerson, due_selector
from training.features.perception import Perception, PerceptionChoice
from training.features.video import SampledFrame

pytestmark = pytest.mark.slow

STREAM = "talk"
FPS = 5.0
"""The tiny profile's keypoint rate: every frame is due for keypoints, the first of each
half second (2 fps) for an image embedding."""
FRAMES = 10
WIDTH, HEIGHT = 320, 240
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    clip = DemoClip(WIDTH, HEIGHT)
    return [clip.frame(i / FPS) for i in range(FRAMES)]


def run_config(engine_dir: Path, keypoints: str) -> RunConfig:
    return load_config(None, {
        "profile": "tiny", "engine_dir": str(engine_dir), "keypoints": keypoints,
        "sources": [{"spec": "demo", "id": STREAM, "width": WIDTH, "height": HEIGHT}],
        "analysis": {"capture_fps": FPS}})


def frame_features(person: tuple[int, tuple[float, ...]] | None, image: np.ndarray | None,
                   keypoints: np.ndarray | None) -> dict:
    return {"person": person, "image": image, "keypoints": keypoints}


def box(values: object) -> tuple[float, ...]:
    return tuple(round(float(v), 1) for v in values)  # the wire's precision


def through_live_stages(config: RunConfig, frames: list[np.ndarray]) -> list[dict]:
    from stream.stages.build import build_detect, build_features

    detect, _ = build_detect(config)
    features, _ = build_features(config)
    wire = WireRules(streams=frozenset({STREAM}))
    out = []
    try:
        for index, frame in enumerate(frames):
            header = Header(stream=STREAM, seq=index, generation=1, capture_time=1.0 + index,
                            media_time=index / FPS)
            message = wire.decode(encode(header, {"frame": frame}))
            detect.admit(message)
            [detected] = detect.process([message])
            message = wire.decode(encode(detected.header, detected.arrays))
            features.admit(message)
            [result] = features.process([message])
            meta = result.header.meta
            assert meta.keypoints == config.keypoints
            if not meta.persons:
                out.append(frame_features(None, None, None))
                continue
            first = meta.persons[0]
            out.append(frame_features(
                (first.track_id, first.box),
                result.arrays["image"][first.image] if first.image >= 0 else None,
                result.arrays["keypoints"][first.keypoints] if first.keypoints >= 0 else None))
    finally:
        detect.close()
        features.close()
    return out


def through_training(engine_dir: Path, keypoints: str, frames: list[np.ndarray]) -> list[dict]:
    tiny = get_profile("tiny")
    perception = Perception.from_engine_dir(engine_dir, tiny,
                                            choice=PerceptionChoice(keypoints=keypoints))
    select = due_selector(tiny.classifier.image_rate, tiny.classifier.keypoint_rate)
    try:
        with FrameFeatures(perception, stream=STREAM, batch_size=4,
                           no_person=NoPerson.SKIP) as video:
            for index, frame in enumerate(frames):
                due = select(index / FPS)
                assert due is not None and due.keypoints
                video.add(SampledFrame(index, index / FPS, frame, due))
            image_times, image, keypoint_times, keypoint_rows = video.finish()
            timeline = {t: (track, box(xyxy)) for t, track, xyxy in video.timeline}
    finally:
        perception.close()
    images = dict(zip(image_times.tolist(), image, strict=True))
    keypoints_at = dict(zip(keypoint_times.tolist(), keypoint_rows, strict=True))
    out = []
    for index in range(len(frames)):
        t = index / FPS
        person = timeline.get(t)
        out.append(frame_features(person, images.get(t),
                                  keypoints_at.get(t) if person is not None else None))
    return out


def through_baseline(config: RunConfig, frames: list[np.ndarray]) -> list[dict]:
    from stream.bench.baseline import Baseline

    baseline = Baseline.from_run_config(config, threads=1)
    state = baseline.new_stream(STREAM)
    out = []
    try:
        for index, frame in enumerate(frames):
            done = baseline.analyse(state, frame, index / FPS)
            person = (None if done.person is None
                      else (done.person.track_id, box(done.person.xyxy)))
            out.append(frame_features(person, done.image, done.keypoints))
    finally:
        baseline.close()
    return out


@pytest.mark.parametrize("keypoints", ["mediapipe", "engines"])
def test_training_live_and_baseline_give_identical_features(
        tiny_engine_dir: Path, frames: list[np.ndarray], keypoints: str) -> None:
    config = run_config(tiny_engine_dir, keypoints)
    paths = {"training": through_training(tiny_engine_dir, keypoints, frames),
             "live": through_live_stages(config, frames),
             "baseline": through_baseline(config, frames)}
    reference = paths["live"]
    # the demo person is found in every frame, and the rates ask for what they should
    assert all(f["person"] is not None for f in reference)
    image_slots = {slot_of(i / FPS, get_profile("tiny").classifier.image_rate)
                   for i in range(FRAMES)}
    assert sum(f["image"] is not None for f in reference) == len(image_slots) == 4
    assert all(f["keypoints"] is not None and (f["keypoints"][:, 2] > 0).sum() > 40
               for f in reference)
    for name, got in paths.items():
        assert len(got) == FRAMES, name
        for index, (mine, theirs) in enumerate(zip(got, reference, strict=True)):
            where = f"{name}, frame {index}"
            assert mine["person"] == theirs["person"], where
            for modality in ("image", "keypoints"):
                assert (mine[modality] is None) == (theirs[modality] is None), \
                    (where, modality)
                if theirs[modality] is not None:
                    np.testing.assert_allclose(mine[modality], theirs[modality],
                                               atol=TOLERANCE, rtol=0, err_msg=where)
