"""Face mesh from the pose: face ROI from the pose's head points, a face detection inside
it, 468 mesh points, and iris centres from the eye crops.

Constants from MediaPipe's ``face_landmarks_from_pose_to_recrop_roi``,
``face_detection_short_range`` (by ROI), ``face_detection_front_detections_to_roi``,
``face_landmark_cpu``, ``face_tracking`` / ``face_landmarks_to_roi`` and
``iris_landmark_landmarks_to_roi`` / ``iris_landmark_cpu`` graphs. Holistic's
``refine_face_landmarks`` uses the attention mesh model, which cannot be converted; the
plain mesh plus the iris model is the pre-attention way MediaPipe refined eyes, and gives
the same 478-point layout (468 mesh + 5 + 5 iris points, centres at 468 and 473).
"""

from __future__ import annotations

import numpy as np

from engines.adapters.holistic.anchors import FACE_SHORT_RANGE_ANCHORS, ssd_anchors
from engines.adapters.holistic.detections import decode, weighted_nms
from engines.adapters.holistic.roi import Rect, TrackingRequirements, rotation_between
from engines.sources.mediapipe import model_named

DETECTION_ENGINE = "kp_face_detection"
LANDMARK_ENGINE = "kp_face_landmark"
IRIS_ENGINE = "kp_iris_landmark"
DETECTION_SIZE = model_named(DETECTION_ENGINE).size
DETECTION_RANGE = model_named(DETECTION_ENGINE).value_range
LANDMARK_SIZE = model_named(LANDMARK_ENGINE).size
LANDMARK_RANGE = model_named(LANDMARK_ENGINE).value_range
IRIS_SIZE = model_named(IRIS_ENGINE).size
IRIS_RANGE = model_named(IRIS_ENGINE).value_range
MIN_DETECTION_SCORE = 0.5
MIN_PRESENCE = 0.5
NUM_MESH = 468

TRACKING = TrackingRequirements(rotation_degrees=15.0, translation=0.1, scale=0.3,
                                recrop_margin=-0.2)
"""``face_tracking.pbtxt``: when last frame's mesh rect replaces the detection's."""

EYES: tuple[tuple[int, int, bool], ...] = ((33, 133, False), (362, 263, True))
"""Mesh corners of each eye and whether its crop is mirrored for the iris model. The
first is the subject's right eye (iris points 468-472), the second the left (473-477)."""

_ANCHORS = ssd_anchors(FACE_SHORT_RANGE_ANCHORS)


def roi_from_pose(pose_landmarks: np.ndarray) -> Rect:
    """Where to look for the face: the box of pose points 0-10 (nose, eyes, ears, mouth),
    turned by the right eye (5) -> left eye (2) vector, x3, square."""
    head = pose_landmarks[:11, :2]
    rotation = rotation_between(head[5], head[2], 0.0)
    return Rect.from_points(head, rotation).transformed(3.0)


def decode_detection(boxes: np.ndarray, scores: np.ndarray, rect: Rect) -> np.ndarray | None:
    """One face-ROI's detector outputs -> the best face's 6 keypoints (frame pixels; right
    eye, left eye, nose tip, mouth, right ear, left ear), or None when there is no face."""
    found = weighted_nms(decode(boxes, scores, _ANCHORS, scale=DETECTION_SIZE,
                                min_score=MIN_DETECTION_SCORE, num_keypoints=6), 0.3, 1)
    if not len(found):
        return None
    return rect.to_frame(found.keypoints[0])


def roi_from_detection(keypoints: np.ndarray) -> Rect:
    """Face ROI from the detection's keypoints: their box, turned by the eyes, shifted
    up by 0.1 of its size, x2, square (``FaceDetectionFrontDetectionsToRoi``)."""
    rotation = rotation_between(keypoints[0], keypoints[1], 0.0)
    return Rect.from_points(keypoints, rotation).transformed(2.0, shift_y=-0.1)


def decode_mesh(landmarks: np.ndarray, presence: np.ndarray, rect: Rect) -> np.ndarray | None:
    """One ROI's mesh outputs -> (468, 3) x, y (frame pixels), z; None when the face flag
    (a logit) says there is no face."""
    logit = float(np.asarray(presence).reshape(-1)[0])
    if 1.0 / (1.0 + np.exp(-np.clip(logit, -100.0, 100.0))) < MIN_PRESENCE:
        return None
    unit = np.asarray(landmarks, dtype=np.float64).reshape(NUM_MESH, 3) / LANDMARK_SIZE
    frame = rect.to_frame(unit[:, :2])
    return np.concatenate([frame, unit[:, 2:3] * rect.width], axis=1)


def roi_from_mesh(mesh: np.ndarray) -> Rect:
    """Next frame's candidate face ROI from this mesh (``FaceLandmarksToRoi``)."""
    rotation = rotation_between(mesh[33], mesh[263], 0.0)
    return Rect.from_points(mesh[:, :2], rotation).transformed(1.5)


def eye_rois(mesh: np.ndarray) -> list[Rect]:
    """The two eye crops for the iris model, in :data:`EYES` order: the corners' box,
    turned by them, x2.3, square (``IrisLandmarkLandmarksToRoi``)."""
    rois = []
    for start, end, _mirror in EYES:
        corners = mesh[[start, end], :2]
        rotation = rotation_between(corners[0], corners[1], 0.0)
        rois.append(Rect.from_points(corners, rotation).transformed(2.3))
    return rois


def decode_iris(iris: np.ndarray, rect: Rect, mirrored: bool) -> np.ndarray:
    """One eye crop's iris output (15,) -> (5, 3) iris points (centre first) in frame
    pixels, undoing the mirror of the crop."""
    raw = np.asarray(iris, dtype=np.float64).reshape(5, 3)
    unit = raw / IRIS_SIZE
    if mirrored:
        unit[:, 0] = 1.0 - unit[:, 0]
    frame = rect.to_frame(unit[:, :2])
    return np.concatenate([frame, unit[:, 2:3] * rect.width], axis=1)

