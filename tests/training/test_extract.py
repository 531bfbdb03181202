"""``hidemo features extract`` on the tiny engines, with generated videos of a real person.

The videos animate ``skimage.data.astronaut()`` (a real photo: MediaPipe finds her) sliding
sideways. The tiny engines have random weights, so their YOLO detector finds nobody: by
default (``keypoints: auto``, as in the live run) Holistic on the keypoint engines finds her
(``keypoints: mediapipe``: MediaPipe Pose does, the YOLO engine being random); with
``detector: yolo`` nobody is found (the no-person paths); a stub finder covers a known box.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.adapters.finders import EngineFinder
from engines.adapters.openpose_layout import body_index
from engines.adapters.perception import TrackedCore
from engines.adapters.records import Detections
from engines.manifest import read_manifest
from engines.profiles import get_profile
from training.data.manifest import ManifestRow, write_manifest
from training.features.extract import (
    ExtractSettings,
    ExtractSummary,
    Skeletons,
    extract_video,
    open_store,
    store_info,
)
from training.features.frames import FrameFeatures, NoPerson, due_selector
from training.features.perception import Perception, PerceptionChoice
from training.features.store import FeatureStore
from training.features.video import VideoError, VideoReader

pytestmark = pytest.mark.slow

FPS, FRAMES, SIZE, PHOTO = 10, 25, (320, 240), 240
"""2.5 s at 10 fps, 320x240, the photo scaled to 240x240. Tiny profile: images at 2 fps
(t = 0, 0.5, ... 2.0: 5), keypoints at 5 fps (t = 0, 0.2, ... 2.4: 13)."""
IMAGE_TIMES = np.arange(5) * 0.5
KEYPOINT_TIMES = np.arange(13) * 0.2
NOSE = body_index("Nose")
TINY = get_profile("tiny")


def shift(index: int) -> int:
    """Left edge of the photo in frame ``index``."""
    return 40 + round(8 * np.sin(index / 3))


def write_video(path: Path, fourcc: str) -> Path:
    data = pytest.importorskip("skimage.data")
    photo = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (PHOTO, PHOTO),
                       interpolation=cv2.INTER_AREA)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, SIZE)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc}"
    for index in range(FRAMES):
        canvas = np.full((SIZE[1], SIZE[0], 3), 90, np.uint8)
        canvas[:, shift(index):shift(index) + PHOTO] = photo
        writer.write(canvas)
    writer.release()
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("videos")
    write_video(folder / "a.mp4", "mp4v")
    write_video(folder / "b.avi", "MJPG")
    (folder / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4096))
    (folder / "a.txt").write_text("It was a hard match but we found a way.")
    write_manifest(folder / "manifest.csv", [
        ManifestRow("a", str(folder / "a.mp4"), 1, "s1", "train", str(folder / "a.txt")),
        ManifestRow("b", str(folder / "b.avi"), 0, "s2", "test"),
        ManifestRow("corrupt", str(folder / "corrupt.mp4"), 0, "s3", "train"),
        ManifestRow("missing", str(folder / "missing.mp4"), 1, "s4", "train"),
    ])
    return folder


@pytest.fixture(scope="module")
def perception(tiny_engine_dir: Path) -> Perception:
    """The MediaPipe path (``keypoints: mediapipe``): MediaPipe Pose finds persons (YOLO's
    weights are random), MediaPipe Holistic makes keypoints on each crop."""
    loaded = Perception.from_engine_dir(tiny_engine_dir, TINY,
                                        choice=PerceptionChoice(keypoints="mediapipe"))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def yolo_perception(tiny_engine_dir: Path) -> Perception:
    """The tiny YOLO engine (random weights: it finds nobody)."""
    loaded = Perception.from_engine_dir(tiny_engine_dir, TINY,
                                        choice=PerceptionChoice(detector="yolo",
                                                                keypoints="mediapipe"))
    assert isinstance(loaded.core, TrackedCore) and isinstance(loaded.core.finder, EngineFinder)
    yield loaded
    loaded.close()


def settings(**changes: object) -> ExtractSettings:
    return dataclasses.replace(ExtractSettings(TINY.classifier.image_rate,
                                               TINY.classifier.keypoint_rate), **changes)


def hidemo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hidemo", *args], capture_output=True,
                          text=True, timeout=300)


def test_extract_command_stores_good_videos_and_reports_bad_ones(
        videos: Path, tiny_engine_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "store"
    args = ("features", "extract", "--manifest", str(videos / "manifest.csv"), "--profile",
            "tiny", "--engine-dir", str(tiny_engine_dir), "--out", str(out),
            "--no-person", "full-frame")
    first = hidemo(*args)
    assert first.returncode == 0, first.stderr
    assert "2 extracted, 0 already in the store (skipped), 2 failed" in first.stdout
    assert f"failed corrupt: video {videos / 'corrupt.mp4'} cannot be opened" in first.stdout
    assert f"failed missing: video {videos / 'missing.mp4'} not found" in first.stdout
    assert "skipping video corrupt" in first.stderr  # warned when it happened, too

    store = FeatureStore.open(out)
    assert store.video_ids() == ["a", "b"]
    info = store.info
    assert (info.profile, info.image_rate, info.keypoint_rate) == ("tiny", 2.0, 5.0)
    assert info.random_weights and info.extra["settings"]["no_person"] == "full-frame"
    for name in ("image_embedder", "text_embedder"):
        assert info.engines[name] == read_manifest(tiny_engine_dir, name).onnx_sha256
    # the live run's choice (keypoints: auto): the keypoint engines are built, so Holistic
    # on them finds, tracks and poses the person; the store names each engine it used
    assert info.engines["perception"] == info.engines["keypoints"] == "holistic-engines"
    for name in ("kp_pose_detection", "kp_pose_landmark", "kp_face_landmark"):
        assert info.engines[name] == read_manifest(tiny_engine_dir, name).onnx_sha256

    for video_id, label, split in (("a", 1, "train"), ("b", 0, "test")):
        video = store.get(video_id)
        assert (video.label, video.split, video.duration) == (label, split, 2.5)
        np.testing.assert_allclose(video.image_times, IMAGE_TIMES)
        assert video.image.shape == (5, 96) and np.isfinite(video.image).all()
        np.testing.assert_allclose(video.keypoint_times, KEYPOINT_TIMES)
        assert video.keypoints.shape == (13, 137, 3)
        found = video.keypoints[..., 2] > 0
        assert found[:, NOSE].all() and (found.sum(axis=1) > 60).all()  # body + face each frame
        # the nose follows the photo as it slides (MediaPipe's video-mode smoothing lags a
        # little): keypoints are in frame pixels, on the face
        shifts = np.array([shift(round(t * FPS)) for t in KEYPOINT_TIMES])
        nose_x = video.keypoints[:, NOSE, 0]
        assert np.corrcoef(nose_x, shifts)[0, 1] > 0.7
        assert (np.abs(nose_x - shifts - 102) < 12).all()  # her nose: ~102 px into the photo
        assert video.meta["keypoint_source"] == "engines"
    a, b = store.get("a"), store.get("b")
    assert a.transcript == "It was a hard match but we found a way." and a.text.shape == (64,)
    assert b.transcript is None and b.text is None

    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")}
    second = hidemo(*args, "--no-progress")
    assert second.returncode == 0, second.stderr
    assert "0 extracted, 2 already in the store (skipped), 2 failed" in second.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npz")} == stamps


def test_no_person_skip_stores_no_image_and_empty_keypoints(
        videos: Path, yolo_perception: Perception) -> None:
    row = ManifestRow("b", str(videos / "b.avi"), 0, "s2", "test")
    video = extract_video(row, yolo_perception, settings(no_person=NoPerson.SKIP),
                          disable=True)
    assert video.image.shape == (0, 96) and len(video.image_times) == 0
    np.testing.assert_allclose(video.keypoint_times, KEYPOINT_TIMES)
    assert not video.keypoints.any()  # random detector: nobody, so all-zero frames
    assert video.meta["no_person_frames"] == 15  # 13 keypoint + 2 image-only frames


class BoxFinder:
    """Stands in for a trained detector: the same person box in every frame."""

    name = identity = "box"
    random_weights = False
    device = "cpu"

    def __init__(self, box: tuple[float, float, float, float]) -> None:
        self.box = np.array([box], np.float32)

    def find(self, streams: list[str], frames: list[np.ndarray]) -> list[Detections]:
        return [Detections(self.box, np.ones(1), np.zeros(1)) for _ in frames]

    def warm_up(self, streams: list[str], frame_hw: tuple[int, int]) -> None:
        pass

    def release(self, stream: str) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_detected_person_is_cropped_and_mapped_back(
        videos: Path, yolo_perception: Perception) -> None:
    boxed = dataclasses.replace(
        yolo_perception, core=TrackedCore(BoxFinder((60, 40, 280, 240)), frame_rate=5.0))
    results = {}
    for name, source in (("crop", boxed), ("frame", yolo_perception)):
        with FrameFeatures(source, stream=name, batch_size=4,
                           no_person=NoPerson.FULL_FRAME) as frames, \
                VideoReader(videos / "a.mp4") as reader:
            for frame in reader.frames(due_selector(2.0, 5.0)):
                frames.add(frame)
            results[name] = (frames.finish(), frames.person_frames)
    (_, image, keypoint_times, keypoints), person_frames = results["crop"]
    assert person_frames == 15 and results["frame"][1] == 0
    assert image.shape == (5, 96) and len(keypoint_times) == 13
    # the crop starts at (27, 10) (box plus 15% margin): points come back in frame pixels
    full_frame_nose = results["frame"][0][3][:, NOSE, :2]
    np.testing.assert_allclose(keypoints[:, NOSE, :2], full_frame_nose, atol=6.0)
    assert not np.allclose(image, results["frame"][0][1])  # a crop, not the whole frame


def test_engine_keypoints_come_from_the_core_and_say_so(
        videos: Path, tiny_engine_dir: Path) -> None:
    perception = Perception.from_engine_dir(tiny_engine_dir, TINY,
                                            choice=PerceptionChoice(keypoints="engines"))
    try:
        row = ManifestRow("a", str(videos / "a.mp4"), 1, "s1", "train")
        video = extract_video(row, perception, settings(), disable=True)
        ids = store_info("tiny", perception, settings()).engines
    finally:
        perception.close()
    assert ids["perception"] == ids["keypoints"] == "holistic-engines"
    assert ids["kp_pose_landmark"] == read_manifest(tiny_engine_dir,
                                                    "kp_pose_landmark").onnx_sha256
    assert "detector" not in ids  # the keypoint engines find the persons
    assert video.meta["keypoint_source"] == "engines" and video.meta["person_frames"] == 15
    np.testing.assert_allclose(video.keypoint_times, KEYPOINT_TIMES)
    assert video.image.shape == (5, 96)
    found = video.keypoints[..., 2] > 0
    assert found[:, NOSE].all() and (found.sum(axis=1) > 60).all()
    shifts = np.array([shift(round(t * FPS)) for t in KEYPOINT_TIMES])
    assert (np.abs(video.keypoints[:, NOSE, 0] - shifts - 102) < 12).all()


def test_skeleton_rows(fixtures_dir: Path, videos: Path, perception: Perception) -> None:
    skeletons = str(fixtures_dir / "imigue" / "openpose_298")
    only = ManifestRow("298", "", 1, "7", "train", skeleton_dir=skeletons)
    video = extract_video(only, perception, settings())
    np.testing.assert_allclose(video.keypoint_times, 200.0 + 0.2 * np.arange(50))
    assert video.image.shape == (0, 96) and video.meta["keypoint_source"] == "openpose"
    assert (video.keypoints[:, NOSE, 2] > 0).all()

    both = dataclasses.replace(only, path=str(videos / "a.mp4"))
    mixed = extract_video(both, perception, settings(no_person=NoPerson.FULL_FRAME),
                          disable=True)
    assert mixed.image.shape == (5, 96) and mixed.meta["keypoint_source"] == "openpose"
    # with a video, skeleton frame numbers run on the video's clock (here 10 fps, not 25)
    np.testing.assert_allclose(mixed.keypoint_times, 500.0 + 0.2 * np.arange(125))

    with pytest.raises(VideoError, match="skeletons are ignored"):
        extract_video(only, perception, settings(skeletons=Skeletons.IGNORE))


def test_a_store_refuses_other_settings(perception: Perception, tmp_path: Path) -> None:
    open_store(tmp_path, store_info("tiny", perception, settings()))
    open_store(tmp_path, store_info("tiny", perception, settings(batch_size=3)))  # speed only
    with pytest.raises(ValueError, match="extracted with settings"):
        open_store(tmp_path, store_info("tiny", perception,
                                        settings(no_person=NoPerson.FULL_FRAME)))


def test_exit_code_is_an_error_only_when_every_video_failed() -> None:
    assert ExtractSummary(failed=[("a", "x")]).exit_code == 1
    assert ExtractSummary(done=["b"], failed=[("a", "x")]).exit_code == 0
    assert ExtractSummary(skipped=["b"], failed=[("a", "x")]).exit_code == 0
    assert ExtractSummary().exit_code == 0
