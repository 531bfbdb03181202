"""MediaPipe Holistic -> OpenPose layout, checked on a real photo (skimage's astronaut).

The checks are anatomical (which side, above/below, which corner), so a mirrored or shifted
mapping table fails them; comparing with the raw landmarks checks the pixel conversion.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from engines.adapters import openpose_layout as layout
from engines.adapters.keypoints import (
    FACE_MESH_TO_DLIB68,
    IRIS_CENTRES,
    POSE_TO_BODY25,
    MediaPipeKeypoints,
    draw_openpose,
    hands_match_wrists,
    holistic_to_openpose,
)

holistic = pytest.importorskip("mediapipe.python.solutions.holistic")
data = pytest.importorskip("skimage.data")

B = {name: index for index, name in enumerate(layout.BODY_25)}


@pytest.fixture(scope="module")
def astronaut_bgr() -> np.ndarray:
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


@pytest.fixture(scope="module")
def adapter() -> MediaPipeKeypoints:
    with MediaPipeKeypoints(static_image_mode=True) as keypoints:
        yield keypoints


@pytest.fixture(scope="module")
def astronaut(adapter: MediaPipeKeypoints, astronaut_bgr: np.ndarray) -> np.ndarray:
    return adapter.process(astronaut_bgr)


@pytest.fixture(scope="module")
def raw(astronaut_bgr: np.ndarray) -> dict[str, np.ndarray]:
    """MediaPipe's own landmarks on the same image, in pixels (x, y[, visibility])."""
    with holistic.Holistic(
        static_image_mode=True, model_complexity=1, refine_face_landmarks=True
    ) as model:
        result = model.process(cv2.cvtColor(astronaut_bgr, cv2.COLOR_BGR2RGB))
    height, width = astronaut_bgr.shape[:2]
    pose = np.array(
        [[p.x * width, p.y * height, p.visibility] for p in result.pose_landmarks.landmark]
    )
    face = np.array([[p.x * width, p.y * height] for p in result.face_landmarks.landmark])
    return {"pose": pose, "face": face}


def _body(keypoints: np.ndarray, name: str) -> np.ndarray:
    return keypoints[layout.BODY][B[name]]


def _face(keypoints: np.ndarray) -> np.ndarray:
    return keypoints[layout.FACE]


def test_output_shape_and_parts_found(astronaut: np.ndarray) -> None:
    assert astronaut.shape == (137, 3) and astronaut.dtype == np.float32
    assert np.all(_face(astronaut)[:, 2] == 1.0)
    for name in ("Nose", "Neck", "RShoulder", "LShoulder", "REye", "LEye", "REar", "LEar"):
        assert _body(astronaut, name)[2] > 0.9, name
    for name in ("LSmallToe", "RSmallToe"):  # no MediaPipe counterpart
        assert np.all(_body(astronaut, name) == 0)


def test_body_joints_are_on_the_subjects_own_side(astronaut: np.ndarray) -> None:
    x = {name: _body(astronaut, name)[0] for name in layout.BODY_25}
    y = {name: _body(astronaut, name)[1] for name in layout.BODY_25}
    # Frontal subject: her right is on the image left.
    assert x["REar"] < x["REye"] < x["Nose"] < x["LEye"] < x["LEar"]
    assert x["RShoulder"] < x["Neck"] < x["LShoulder"]
    assert x["RElbow"] < x["LElbow"]
    assert x["RWrist"] < x["LWrist"]
    shoulder_mid_y = (y["RShoulder"] + y["LShoulder"]) / 2
    assert y["Nose"] < shoulder_mid_y
    assert y["REye"] < y["Nose"] and y["LEye"] < y["Nose"]
    assert y["RShoulder"] < y["RElbow"] < y["RWrist"]
    assert y["LShoulder"] < y["LElbow"] < y["LWrist"]
    np.testing.assert_allclose(
        _body(astronaut, "Neck")[:2],
        (_body(astronaut, "RShoulder")[:2] + _body(astronaut, "LShoulder")[:2]) / 2,
        atol=1e-3,
    )


def test_face_contours_are_in_dlib_order(astronaut: np.ndarray) -> None:
    face = _face(astronaut)
    x, y = face[:, 0], face[:, 1]
    assert x[0] < x[16]
    # The jaw runs down the image-left cheek to the chin (8), then up the other side.
    assert np.all(np.diff(y[0:9]) > 0) and np.all(np.diff(y[8:17]) < 0)
    assert np.all(np.diff(x[3:14]) > 0)
    assert np.all(np.diff(x[list(layout.FACE_RIGHT_BROW)]) > 0)
    assert np.all(np.diff(x[list(layout.FACE_LEFT_BROW)]) > 0)
    assert x[list(layout.FACE_RIGHT_BROW)].max() < x[list(layout.FACE_LEFT_BROW)].min()
    assert np.all(np.diff(y[27:31]) > 0)  # nose bridge runs down to the tip
    assert np.all(np.diff(x[31:36]) > 0)
    right_eye, left_eye = list(layout.FACE_RIGHT_EYE), list(layout.FACE_LEFT_EYE)
    assert x[36] == x[right_eye].min() and x[39] == x[right_eye].max()  # 36: outer corner
    assert x[42] == x[left_eye].min() and x[45] == x[left_eye].max()  # 45: outer corner
    assert x[36] < x[45]
    assert x[right_eye].max() < x[left_eye].min()
    mouth = list(layout.FACE_OUTER_LIP)
    assert x[48] == x[mouth].min() and x[54] == x[mouth].max()
    assert y[list(layout.FACE_RIGHT_BROW)].max() < y[right_eye].min()


def test_face_nose_mouth_and_pupils(astronaut: np.ndarray) -> None:
    face = _face(astronaut)
    x, y = face[:, 0], face[:, 1]
    eyes = list(layout.FACE_RIGHT_EYE) + list(layout.FACE_LEFT_EYE)
    tip = layout.FACE_NOSE_TIP
    assert x[39] < x[tip] < x[42]  # between the inner eye corners
    assert y[tip] > y[eyes].max()
    mouth = list(layout.FACE_OUTER_LIP) + list(layout.FACE_INNER_LIP)
    assert y[mouth].min() > y[tip]
    assert y[mouth].min() > y[31:36].min()
    for pupil, contour in (
        (layout.FACE_RIGHT_PUPIL, layout.FACE_RIGHT_EYE),
        (layout.FACE_LEFT_PUPIL, layout.FACE_LEFT_EYE),
    ):
        polygon = face[list(contour), :2].reshape(-1, 1, 2).astype(np.float32)
        inside = cv2.pointPolygonTest(polygon, (float(x[pupil]), float(y[pupil])), False)
        assert inside > 0, f"pupil {pupil} lies outside its eye contour"
    assert x[layout.FACE_RIGHT_PUPIL] < x[layout.FACE_LEFT_PUPIL]
    # Face and body agree on where the head is.
    assert np.linalg.norm(face[tip, :2] - _body(astronaut, "Nose")[:2]) < 15
    assert np.linalg.norm(face[68, :2] - _body(astronaut, "REye")[:2]) < 15
    assert np.linalg.norm(face[69, :2] - _body(astronaut, "LEye")[:2]) < 15


def test_points_sit_on_their_raw_landmarks(
    astronaut: np.ndarray, raw: dict[str, np.ndarray]
) -> None:
    body = astronaut[layout.BODY]
    for row, sources in enumerate(POSE_TO_BODY25):
        if len(sources) == 1 and body[row, 2] > 0:
            np.testing.assert_allclose(body[row, :2], raw["pose"][sources[0], :2], atol=0.05)
            assert body[row, 2] == pytest.approx(raw["pose"][sources[0], 2], abs=1e-4)
    face = _face(astronaut)
    np.testing.assert_allclose(face[:68, :2], raw["face"][list(FACE_MESH_TO_DLIB68)], atol=0.05)
    np.testing.assert_allclose(face[68:, :2], raw["face"][list(IRIS_CENTRES)], atol=0.05)


def test_hands_when_found_are_at_their_own_wrists(astronaut: np.ndarray) -> None:
    """The astronaut's hands are cut off by the frame; Holistic finds none on this image."""
    assert hands_match_wrists(astronaut) in (None, True)
    for rows in (layout.LEFT_HAND, layout.RIGHT_HAND):
        assert np.all(astronaut[rows, 2] == 0) or np.all(astronaut[rows, 2] == 1)


def test_offset_maps_a_crop_back_into_the_frame(
    adapter: MediaPipeKeypoints, astronaut_bgr: np.ndarray, astronaut: np.ndarray
) -> None:
    canvas = np.full((900, 1000, 3), 127, dtype=np.uint8)
    left, top = 300, 250
    canvas[top : top + 512, left : left + 512] = astronaut_bgr
    crop = canvas[top : top + 512, left : left + 512]
    moved = adapter.process(crop, offset_xy=(left, top))
    present = astronaut[:, 2] > 0
    np.testing.assert_array_equal(moved[:, 2] > 0, present)
    body = layout.BODY
    np.testing.assert_allclose(
        moved[body, :2][present[body]], astronaut[body, :2][present[body]] + (left, top), atol=1e-2
    )
    # Holistic's face mesh moves by up to ~2 px between runs on the same image, even in
    # static mode (the face re-crop keeps state), so the face gets a tolerance.
    np.testing.assert_allclose(
        moved[layout.FACE, :2], astronaut[layout.FACE, :2] + (left, top), atol=3.0
    )
    # A looser crop with background margins still lands on the same spots of the canvas.
    margin = 60
    loose = canvas[top - margin : top + 512 + margin, left - margin : left + 512 + margin]
    shifted = adapter.process(loose, offset_xy=(left - margin, top - margin))
    face = layout.FACE
    error = np.linalg.norm(shifted[face, :2] - (astronaut[face, :2] + (left, top)), axis=1)
    assert np.median(error) < 4.0


def test_blank_image_gives_no_keypoints(adapter: MediaPipeKeypoints) -> None:
    keypoints = adapter.process(np.zeros((240, 320, 3), dtype=np.uint8), offset_xy=(50, 50))
    assert keypoints.shape == (137, 3)
    assert np.all(keypoints[:, 2] == 0) and np.all(keypoints == 0)


def test_batch_loops_over_items(
    adapter: MediaPipeKeypoints, astronaut_bgr: np.ndarray, astronaut: np.ndarray
) -> None:
    blank = np.zeros((100, 100, 3), dtype=np.uint8)
    batch = adapter.process_batch([(astronaut_bgr, (0, 0)), (blank, (10, 10))])
    assert batch.shape == (2, 137, 3)
    np.testing.assert_allclose(batch[0], astronaut, atol=1e-3)
    assert np.all(batch[1] == 0)
    assert adapter.process_batch([]).shape == (0, 137, 3)


def test_bad_inputs_are_refused(adapter: MediaPipeKeypoints) -> None:
    with pytest.raises(ValueError, match="uint8 BGR"):
        adapter.process(np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(ValueError, match="model_complexity=2"):
        MediaPipeKeypoints(model_complexity=2)
    closed = MediaPipeKeypoints(static_image_mode=True)
    closed.close()
    with pytest.raises(RuntimeError, match="after close"):
        closed.process(np.zeros((10, 10, 3), dtype=np.uint8))


# --- the pure mapping, without MediaPipe --------------------------------------------------


def test_mapping_scales_offsets_and_fills_hand_slots() -> None:
    pose = np.zeros((33, 4))
    pose[:, :2], pose[:, 3] = 0.5, 0.9
    pose[15, :2] = (0.75, 0.8)  # left wrist
    pose[16, :2] = (0.25, 0.8)  # right wrist
    pose[27, :2] = (0.5, 1.3)  # left ankle, below the crop
    left = np.tile([0.75, 0.8, 0.0], (21, 1))
    right = np.tile([0.25, 0.8, 0.0], (21, 1))
    out = holistic_to_openpose(pose, None, left, right, (200, 100), offset_xy=(10, 20))
    np.testing.assert_allclose(out[B["LWrist"]], [160, 100, 0.9], rtol=1e-6)
    np.testing.assert_allclose(out[B["RWrist"]], [60, 100, 0.9], rtol=1e-6)
    assert np.all(out[B["LAnkle"]] == 0)  # outside the crop: dropped
    np.testing.assert_allclose(out[layout.LEFT_HAND][:, :2], np.tile([160, 100], (21, 1)))
    np.testing.assert_allclose(out[layout.RIGHT_HAND][:, :2], np.tile([60, 100], (21, 1)))
    assert np.all(out[layout.LEFT_HAND, 2] == 1) and np.all(out[layout.FACE] == 0)
    assert hands_match_wrists(out) is True
    swapped = holistic_to_openpose(pose, None, right, left, (200, 100), offset_xy=(10, 20))
    assert hands_match_wrists(swapped) is False
    kept = holistic_to_openpose(pose, None, None, None, (200, 100), drop_outside=False)
    assert kept[B["LAnkle"], 2] == pytest.approx(0.9)


def test_pupils_fall_back_to_eye_centres(raw: dict[str, np.ndarray]) -> None:
    face = np.column_stack([raw["face"][:468] / 512.0, np.zeros(468)])
    out = holistic_to_openpose(None, face, None, None, (512, 512))[layout.FACE]
    np.testing.assert_allclose(out[68, :2], out[list(layout.FACE_RIGHT_EYE), :2].mean(axis=0))
    np.testing.assert_allclose(out[69, :2], out[list(layout.FACE_LEFT_EYE), :2].mean(axis=0))
    assert np.all(out[:, 2] == 1)


def test_drawing_marks_the_points(astronaut_bgr: np.ndarray, astronaut: np.ndarray) -> None:
    drawn = draw_openpose(astronaut_bgr, astronaut, label_parts=("face",))
    assert drawn.shape == astronaut_bgr.shape and drawn is not astronaut_bgr
    x, y = np.round(_body(astronaut, "Nose")[:2]).astype(int)
    assert not np.array_equal(drawn[y, x], astronaut_bgr[y, x])
    assert np.array_equal(draw_openpose(astronaut_bgr, np.zeros((137, 3))), astronaut_bgr)
