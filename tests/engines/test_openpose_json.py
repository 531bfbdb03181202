"""The OpenPose 1.3 JSON reader: real iMiGUE frames land in the right slots; edge cases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engines.adapters import openpose_layout as layout
from engines.adapters.openpose_json import (
    frame_number,
    main_person,
    read_frame,
    read_sequence,
)

NOSE, NECK = layout.body_index("Nose"), layout.body_index("Neck")
R_SHOULDER, L_SHOULDER = layout.body_index("RShoulder"), layout.body_index("LShoulder")
R_WRIST, L_WRIST = layout.body_index("RWrist"), layout.body_index("LWrist")
R_EYE, L_EYE = layout.body_index("REye"), layout.body_index("LEye")
R_EAR, L_EAR = layout.body_index("REar"), layout.body_index("LEar")


@pytest.fixture(scope="module")
def sequence_298(fixtures_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    return read_sequence(fixtures_dir / "imigue" / "openpose_298")


def _person(body: dict[int, tuple[float, float, float]], **parts: list[float]) -> dict:
    pose = [0.0] * 75
    for joint, (x, y, c) in body.items():
        pose[3 * joint : 3 * joint + 3] = [x, y, c]
    return {"person_id": [-1], "pose_keypoints_2d": pose, **parts}


def _write(path: Path, people: list[dict]) -> Path:
    path.write_text(json.dumps({"version": 1.3, "people": people}))
    return path


# --- real frames --------------------------------------------------------------------------


def test_reads_all_real_frames_in_order(sequence_298: tuple[np.ndarray, np.ndarray]) -> None:
    keypoints, frames = sequence_298
    assert keypoints.shape == (250, 137, 3)
    assert keypoints.dtype == np.float32
    np.testing.assert_array_equal(frames, np.arange(5000, 5250))


def test_real_frame_values_are_copied_verbatim(fixtures_dir: Path) -> None:
    path = fixtures_dir / "imigue" / "openpose_298" / "298_000000005000_keypoints.json"
    raw = json.loads(path.read_text())["people"][0]
    (person,) = read_frame(path)
    np.testing.assert_allclose(person[layout.BODY].ravel(), raw["pose_keypoints_2d"], rtol=1e-6)
    np.testing.assert_allclose(person[layout.FACE].ravel(), raw["face_keypoints_2d"], rtol=1e-6)
    np.testing.assert_allclose(
        person[layout.LEFT_HAND].ravel(), raw["hand_left_keypoints_2d"], rtol=1e-6
    )
    np.testing.assert_allclose(
        person[layout.RIGHT_HAND].ravel(), raw["hand_right_keypoints_2d"], rtol=1e-6
    )


def test_real_body_joints_are_in_their_slots(sequence_298: tuple[np.ndarray, np.ndarray]) -> None:
    body = sequence_298[0][:, layout.BODY]
    upper = [NOSE, NECK, R_SHOULDER, L_SHOULDER, R_EYE, L_EYE]
    assert np.all(body[:, upper, 2] > 0)
    assert np.all(body[:, NOSE, 1] < body[:, NECK, 1])  # image y grows downwards
    # A seated player facing the camera: the subject's right is on the image left.
    assert np.all(body[:, R_SHOULDER, 0] < body[:, L_SHOULDER, 0])
    assert np.all(body[:, R_EYE, 0] < body[:, L_EYE, 0])
    neck_x = body[:, NECK, 0]
    assert np.all((body[:, R_SHOULDER, 0] < neck_x) & (neck_x < body[:, L_SHOULDER, 0]))


def test_real_legs_are_empty(sequence_298: tuple[np.ndarray, np.ndarray]) -> None:
    body = sequence_298[0][:, layout.BODY]
    assert np.all(body[:, list(layout.LOWER_BODY)] == 0)


def test_real_face_points_lie_in_the_head(sequence_298: tuple[np.ndarray, np.ndarray]) -> None:
    keypoints = sequence_298[0]
    body, face = keypoints[:, layout.BODY], keypoints[:, layout.FACE]
    assert np.all(face[:, :, 2] > 0)
    shoulders = np.linalg.norm(body[:, R_SHOULDER, :2] - body[:, L_SHOULDER, :2], axis=1)
    head = body[:, [NOSE, R_EYE, L_EYE, R_EAR, L_EAR]]
    left = head[:, :, 0].min(axis=1) - 0.15 * shoulders
    right = head[:, :, 0].max(axis=1) + 0.15 * shoulders
    top = body[:, [R_EYE, L_EYE], 1].min(axis=1) - 0.25 * shoulders
    bottom = body[:, NECK, 1] + 0.15 * shoulders
    assert np.all((face[:, :, 0] >= left[:, None]) & (face[:, :, 0] <= right[:, None]))
    assert np.all((face[:, :, 1] >= top[:, None]) & (face[:, :, 1] <= bottom[:, None]))
    # Face landmarks agree with the body's own estimate of the same spots.
    tip = face[:, layout.FACE_NOSE_TIP, :2]
    assert np.all(np.linalg.norm(tip - body[:, NOSE, :2], axis=1) < 0.1 * shoulders)
    # Face order: jaw from image left to right; right eye (36-41) on the image left.
    assert np.all(face[:, 0, 0] < face[:, 16, 0])
    right_eye = face[:, list(layout.FACE_RIGHT_EYE), 0].mean(axis=1)
    left_eye = face[:, list(layout.FACE_LEFT_EYE), 0].mean(axis=1)
    assert np.all(right_eye < left_eye)


def test_real_hands_sit_at_their_own_wrists(sequence_298: tuple[np.ndarray, np.ndarray]) -> None:
    keypoints = sequence_298[0]
    body = keypoints[:, layout.BODY]
    shoulders = np.linalg.norm(body[:, R_SHOULDER, :2] - body[:, L_SHOULDER, :2], axis=1)
    for rows, own, other in (
        (layout.LEFT_HAND, L_WRIST, R_WRIST),
        (layout.RIGHT_HAND, R_WRIST, L_WRIST),
    ):
        wrist = keypoints[:, rows.start, :2]
        to_own = np.linalg.norm(wrist - body[:, own, :2], axis=1) / shoulders
        to_other = np.linalg.norm(wrist - body[:, other, :2], axis=1) / shoulders
        assert np.median(to_own) < 0.25
        assert np.mean(to_own < to_other) > 0.95


def test_fixture_has_exactly_one_person_per_frame(fixtures_dir: Path) -> None:
    """Documents the sample: no empty or crowded frames, so those cases are synthetic below."""
    files = sorted((fixtures_dir / "imigue" / "openpose_298").glob("*_keypoints.json"))
    counts = [len(read_frame(path)) for path in files]
    assert len(counts) == 250
    assert counts.count(0) == 0
    assert sum(count > 1 for count in counts) == 0


# --- synthetic frames ---------------------------------------------------------------------


def test_frame_without_people_gives_zeros(tmp_path: Path) -> None:
    path = _write(tmp_path / "1_000000000007_keypoints.json", [])
    assert read_frame(path) == []
    assert np.all(main_person([]) == 0)
    keypoints, frames = read_sequence(tmp_path)
    assert keypoints.shape == (1, 137, 3) and np.all(keypoints == 0)
    np.testing.assert_array_equal(frames, [7])


def test_missing_or_empty_parts_are_missing_points(tmp_path: Path) -> None:
    person = _person({NOSE: (10.0, 20.0, 0.9)}, face_keypoints_2d=[])
    (keypoints,) = read_frame(_write(tmp_path / "f.json", [person]))
    np.testing.assert_allclose(keypoints[NOSE], [10.0, 20.0, 0.9])
    assert np.all(keypoints[layout.FACE] == 0)
    assert np.all(keypoints[layout.LEFT_HAND] == 0) and np.all(keypoints[layout.RIGHT_HAND] == 0)


def _big_and_small() -> tuple[dict, dict]:
    big = _person(
        {
            NOSE: (300, 100, 0.9),
            NECK: (300, 250, 0.9),
            R_SHOULDER: (200, 250, 0.9),
            L_SHOULDER: (400, 250, 0.9),
        }
    )
    small = _person(
        {
            NOSE: (700, 200, 0.9),
            NECK: (700, 240, 0.9),
            R_SHOULDER: (680, 240, 0.9),
            L_SHOULDER: (720, 240, 0.9),
        }
    )
    return big, small


def test_main_person_prefers_the_larger_confident_body(tmp_path: Path) -> None:
    big, small = _big_and_small()
    people = read_frame(_write(tmp_path / "f.json", [small, big]))
    assert len(people) == 2
    chosen = main_person(people)
    assert chosen[NOSE, 0] == pytest.approx(300)


def test_main_person_follows_the_previous_choice(tmp_path: Path) -> None:
    big, small = _big_and_small()
    people = read_frame(_write(tmp_path / "f.json", [big, small]))
    previous = read_frame(_write(tmp_path / "p.json", [small]))[0]
    previous[:, :2] += 5.0  # the small person moved a little since the last frame
    previous[previous[:, 2] == 0] = 0.0
    assert main_person(people, previous)[NOSE, 0] == pytest.approx(700)
    # A previous choice far from everyone falls back to the best score.
    far = previous.copy()
    far[far[:, 2] > 0, 0] += 2000.0
    assert main_person(people, far)[NOSE, 0] == pytest.approx(300)


def test_sequence_tracks_the_main_person_and_sorts_by_frame(tmp_path: Path) -> None:
    big, small = _big_and_small()
    _write(tmp_path / "9_000000000010_keypoints.json", [small, big])
    _write(tmp_path / "9_000000000002_keypoints.json", [big])
    _write(tmp_path / "9_000000000003_keypoints.json", [])
    keypoints, frames = read_sequence(tmp_path)
    np.testing.assert_array_equal(frames, [2, 3, 10])
    assert keypoints[0, NOSE, 0] == pytest.approx(300)
    assert np.all(keypoints[1] == 0)
    assert keypoints[2, NOSE, 0] == pytest.approx(300)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"version": 1.3, "people": [', "not valid JSON"),
        ('{"version": 1.3}', "'people' is missing"),
        ('{"version": 1.3, "people": [{"pose_keypoints_2d": [1, 2, 3]}]}', "has 3 values"),
        ('{"version": 1.3, "people": [{"face_keypoints_2d": ["a", 2, 3]}]}', "has 3 values"),
        (
            '{"version": 1.3, "people": [{"hand_left_keypoints_2d": '
            + str(["x"] * 63).replace("'", '"')
            + "}]}",
            "non-numeric",
        ),
        ('{"version": 1.3, "people": [7]}', "must be a JSON object"),
    ],
)
def test_malformed_file_names_the_file(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "5_000000000001_keypoints.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        read_frame(path)
    assert path.name in str(error.value)
    with pytest.raises(ValueError, match=path.name):
        read_sequence(tmp_path)


def test_frame_numbers_come_from_file_names(tmp_path: Path) -> None:
    assert frame_number("298_000000005000_keypoints.json") == 5000
    assert frame_number(Path("/a/b/000000000012_keypoints.json")) == 12
    with pytest.raises(ValueError, match="frame number"):
        frame_number("notes_keypoints.json")
    with pytest.raises(ValueError, match=r"no '\*_keypoints\.json' files"):
        read_sequence(tmp_path)
