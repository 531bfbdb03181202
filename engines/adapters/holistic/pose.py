"""BlazePose: person detection on the whole frame and 33 body landmarks per person ROI.

Constants from MediaPipe's ``pose_detection_cpu``, ``pose_detection_to_roi``,
``pose_landmark_by_roi_cpu``, ``tensors_to_pose_landmarks_and_segmentation`` and
``pose_landmarks_to_roi`` graphs. The detector's box is the *face* box; its 4 keypoints
are the hip centre, a point on the circle that encloses the whole body, the shoulder
centre and a point on the upper-body circle. The landmark model returns 39 points: the 33
body landmarks and 2 auxiliary ones (hip centre, body-circle point) that give next
frame's ROI, plus 4 unused.

Every function here works on one image's or one ROI's arrays; the estimator batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.adapters.holistic.anchors import POSE_DETECTION_ANCHORS, ssd_anchors
from engines.adapters.holistic.detections import RawDetections, decode, weighted_nms
from engines.adapters.holistic.roi import Rect
from engines.sources.mediapipe import model_named

DETECTION_ENGINE = "kp_pose_detection"
LANDMARK_ENGINE = "kp_pose_landmark"
DETECTION_SIZE = model_named(DETECTION_ENGINE).size
DETECTION_RANGE = model_named(DETECTION_ENGINE).value_range
LANDMARK_SIZE = model_named(LANDMARK_ENGINE).size
LANDMARK_RANGE = model_named(LANDMARK_ENGINE).value_range
NMS_IOU = 0.3
ROI_SCALE = 1.25
NUM_LANDMARKS = 33

_ANCHORS = ssd_anchors(POSE_DETECTION_ANCHORS)


def letterbox_rect(width: int, height: int) -> Rect:
    """The square ROI that letterboxes a whole ``width`` x ``height`` frame (centred,
    side = the long side): MediaPipe's ``keep_aspect_ratio`` with a zero border."""
    side = float(max(width, height))
    return Rect(width / 2.0, height / 2.0, side, side, 0.0)


TILE_ASPECT = 1.3
"""Frames wider (or taller) than this also get square search tiles: letterboxed whole into
224 px, the people of a 16:9 frame shrink so much that BlazePose, trained on one prominent
person, misses them (on ultralytics' ``zidane.jpg`` it finds nobody, in either end square
one person each)."""


def search_windows(width: int, height: int, tiled: bool) -> list[Rect]:
    """Where the person detector looks: the letterboxed frame, plus (``tiled``, for a frame
    longer than :data:`TILE_ASPECT`) a square at each end of the long side, side = the
    short side, and one in the middle when two squares leave a gap."""
    windows = [letterbox_rect(width, height)]
    long_side, short_side = max(width, height), min(width, height)
    if not tiled or long_side < TILE_ASPECT * short_side:
        return windows
    centres = [short_side / 2.0, long_side - short_side / 2.0]
    if long_side > 2 * short_side:
        centres.insert(1, long_side / 2.0)
    for centre in centres:
        x, y = (centre, height / 2.0) if width >= height else (width / 2.0, centre)
        windows.append(Rect(x, y, float(short_side), float(short_side), 0.0))
    return windows


def merge_windows(found: list[RawDetections], max_persons: int | None) -> RawDetections:
    """One frame's detections from several windows (frame pixels), the same person seen
    in two windows merged by the same weighted NMS."""
    kept = [detections for detections in found if len(detections)]
    if len(kept) <= 1:
        return kept[0] if kept else found[0]
    joined = RawDetections(np.concatenate([d.boxes for d in kept]),
                           np.concatenate([d.keypoints for d in kept]),
                           np.concatenate([d.scores for d in kept]))
    return weighted_nms(joined, NMS_IOU, max_persons)


def decode_detections(boxes: np.ndarray, scores: np.ndarray, letterbox: Rect, *,
                      min_score: float, max_persons: int | None) -> RawDetections:
    """One frame's detector outputs (``boxes`` (2254, 12), ``scores`` (2254, 1)) -> face
    boxes (x0, y0, x1, y1) and the 4 alignment keypoints in frame pixels, best first."""
    found = weighted_nms(
        decode(boxes, scores, _ANCHORS, scale=DETECTION_SIZE, min_score=min_score,
               num_keypoints=4),
        NMS_IOU, max_persons,
    )
    if not len(found):
        return found
    corners = letterbox.to_frame(found.boxes.reshape(-1, 2)).reshape(-1, 4)
    points = letterbox.to_frame(found.keypoints.reshape(-1, 2)).reshape(found.keypoints.shape)
    return RawDetections(corners, points, found.scores)


def detection_roi(keypoints: np.ndarray) -> Rect:
    """Pose ROI from a detection's keypoints (frame pixels): centred on the hips, the
    body circle as its half-size, the hips->circle vector pointing up, x1.25, square."""
    return Rect.from_alignment(keypoints[0], keypoints[1], 90.0).transformed(ROI_SCALE)


def body_box(keypoints: np.ndarray, width: int, height: int) -> np.ndarray:
    """(4,) person box from a detection: the square around the whole-body circle
    (centre: hips, radius: distance to the circle point), clipped to the frame."""
    centre = keypoints[0]
    radius = float(np.hypot(*(keypoints[1] - keypoints[0])))
    box = np.array([centre[0] - radius, centre[1] - radius,
                    centre[0] + radius, centre[1] + radius])
    return np.clip(box, 0.0, [width, height, width, height])


@dataclass(frozen=True, eq=False)
class PoseLandmarks:
    """One person's pose in frame pixels.

    ``landmarks`` (33, 4): x, y, z (z in the same pixel scale, relative to the hips) and
    visibility in [0, 1]; ``auxiliary`` (2, 2): hip centre and body-circle point;
    ``presence``: the model's pose flag in [0, 1].
    """

    landmarks: np.ndarray
    auxiliary: np.ndarray
    presence: float


def decode_landmarks(landmarks: np.ndarray, presence: np.ndarray, rect: Rect) -> PoseLandmarks:
    """One ROI's outputs (``landmarks`` (195,), ``presence`` (1,)) -> :class:`PoseLandmarks`.

    MediaPipe refines these points with the model's heatmap; that output is not in the
    engine, so the points are the regression's (a few tensor pixels apart at most).
    """
    raw = np.asarray(landmarks, dtype=np.float64).reshape(-1, 5)
    unit = raw[:, :3] / LANDMARK_SIZE
    frame = rect.to_frame(unit[:, :2])
    z = unit[:, 2:3] * rect.width
    visibility = 1.0 / (1.0 + np.exp(-np.clip(raw[:, 3:4], -100.0, 100.0)))
    points = np.concatenate([frame, z, visibility], axis=1)
    return PoseLandmarks(points[:NUM_LANDMARKS], frame[NUM_LANDMARKS:NUM_LANDMARKS + 2],
                         float(np.asarray(presence).reshape(-1)[0]))


def landmarks_roi(auxiliary: np.ndarray) -> Rect:
    """Next frame's pose ROI from this frame's auxiliary landmarks (tracking)."""
    return Rect.from_alignment(auxiliary[0], auxiliary[1], 90.0).transformed(ROI_SCALE)
