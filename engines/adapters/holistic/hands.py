"""Hands from the pose: a hand ROI from the pose's wrist, pinky and index points, refined
by the re-crop model, then 21 hand landmarks.

Constants from MediaPipe's ``hand_landmarks_left_and_right``,
``hand_visibility_from_hand_landmarks_from_pose``, ``hand_landmarks_from_pose_to_recrop_roi``
(with ``HandDetectionsFromPoseToRectsCalculator``), ``hand_recrop_by_roi``,
``hand_landmark_cpu`` and ``hand_tracking`` / ``hand_landmarks_to_roi`` graphs. Holistic
does not run the palm detector: each hand is found from the pose wrist of its own side,
so ``left`` is always the subject's left hand.
"""

from __future__ import annotations

import math

import numpy as np

from engines.adapters.holistic.roi import Rect, TrackingRequirements, normalize_radians
from engines.sources.mediapipe import model_named

RECROP_ENGINE = "kp_hand_recrop"
LANDMARK_ENGINE = "kp_hand_landmark"
RECROP_SIZE = model_named(RECROP_ENGINE).size
RECROP_RANGE = model_named(RECROP_ENGINE).value_range
LANDMARK_SIZE = model_named(LANDMARK_ENGINE).size
LANDMARK_RANGE = model_named(LANDMARK_ENGINE).value_range
MIN_WRIST_VISIBILITY = 0.1
MIN_PRESENCE = 0.5
NUM_LANDMARKS = 21

SIDES: dict[str, tuple[int, int, int]] = {"left": (15, 17, 19), "right": (16, 18, 20)}
"""Pose landmarks (wrist, pinky, index) each hand is cropped from, by the subject's side."""

TRACKING = TrackingRequirements(rotation_degrees=40.0, translation=0.2, scale=0.4,
                                recrop_margin=-0.1)
"""``hand_tracking.pbtxt``: when last frame's hand rect replaces the re-crop's."""


def visible(pose_landmarks: np.ndarray, side: str) -> bool:
    """Whether Holistic looks for this hand: its pose wrist's visibility is above 0.1."""
    return bool(pose_landmarks[SIDES[side][0], 3] > MIN_WRIST_VISIBILITY)


def roi_from_pose(pose_landmarks: np.ndarray, side: str) -> Rect:
    """First guess of a hand's ROI: centred on the estimated middle finger (2/3 of the
    way from pinky to index), twice its distance to the wrist, turned so the wrist ->
    finger vector points up, shifted up 0.1, x2.7, square."""
    wrist, pinky, index = (pose_landmarks[i, :2] for i in SIDES[side])
    middle = (2.0 * index + pinky) / 3.0
    side_length = 2.0 * float(np.hypot(*(middle - wrist)))
    rotation = normalize_radians(math.pi / 2.0 - math.atan2(-(middle[1] - wrist[1]),
                                                            middle[0] - wrist[0]))
    rect = Rect(float(middle[0]), float(middle[1]), side_length, side_length, rotation)
    return rect.transformed(2.7, shift_y=-0.1)


def roi_from_recrop(keypoints: np.ndarray, rect: Rect) -> Rect:
    """The re-crop model's two points (4,) in its 256 px input -> the hand ROI: centred on
    the first, twice the distance to the second, that vector pointing down, shifted up
    0.1, square."""
    points = rect.to_frame(np.asarray(keypoints, dtype=np.float64).reshape(2, 2) / RECROP_SIZE)
    return Rect.from_alignment(points[0], points[1], -90.0).transformed(1.0, shift_y=-0.1)


def decode_landmarks(landmarks: np.ndarray, presence: np.ndarray,
                     rect: Rect) -> np.ndarray | None:
    """One hand ROI's outputs -> (21, 3) x, y (frame pixels), z; None when the hand flag
    (already a probability) is below 0.5."""
    if float(np.asarray(presence).reshape(-1)[0]) < MIN_PRESENCE:
        return None
    unit = np.asarray(landmarks, dtype=np.float64).reshape(NUM_LANDMARKS, 3) / LANDMARK_SIZE
    frame = rect.to_frame(unit[:, :2])
    return np.concatenate([frame, unit[:, 2:3] * rect.width], axis=1)


def roi_from_landmarks(hand: np.ndarray) -> Rect:
    """Next frame's candidate hand ROI (``HandLandmarksToRectCalculator``): turned so the
    wrist -> middle-knuckles vector points up, the tight box in those turned axes, shifted
    up 0.1, x2, square."""
    wrist = hand[0, :2]
    knuckles = ((hand[6, :2] + hand[14, :2]) / 2.0 + hand[10, :2]) / 2.0
    rotation = normalize_radians(math.pi / 2.0 - math.atan2(-(knuckles[1] - wrist[1]),
                                                            knuckles[0] - wrist[0]))
    axis_centre = (hand[:, :2].min(axis=0) + hand[:, :2].max(axis=0)) / 2.0
    turned = Rect(float(axis_centre[0]), float(axis_centre[1]), 1.0, 1.0, rotation)
    local = turned.to_unit(hand[:, :2]) - 0.5  # in the turned axes, pixels (size 1)
    low, high = local.min(axis=0), local.max(axis=0)
    centre = turned.to_frame(((low + high) / 2.0 + 0.5)[None])[0]
    size = high - low
    rect = Rect(float(centre[0]), float(centre[1]), float(size[0]), float(size[1]), rotation)
    return rect.transformed(2.0, shift_y=-0.1)
