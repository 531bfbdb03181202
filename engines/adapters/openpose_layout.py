"""The OpenPose 137-point keypoint layout that every keypoint producer in hidemo emits.

The paper's keypoint stream (and the iMiGUE skeletons it was trained on) uses OpenPose's
BODY_25 + face + hands output, so every adapter (the OpenPose JSON reader, the MediaPipe
adapter) converts into this one layout and the models never see where keypoints came from.

One frame of one person is a ``(137, 3)`` float32 array: rows are keypoints in the order
BODY_25 (25) | face (70) | left hand (21) | right hand (21); columns are x, y, confidence,
with x and y in pixel coordinates of the full frame. A point that is missing has
confidence 0 (and, as OpenPose writes it, x = y = 0).

Left and right are always the subject's own: ``RShoulder`` of a person facing the camera is
on the image left; face points 36-41 (right eye) and pupil 68 are on the image left too.
"""

from __future__ import annotations

import itertools

import numpy as np

NUM_KEYPOINTS = 137
"""Rows of one frame: 25 body + 70 face + 21 left hand + 21 right hand."""

NUM_CHANNELS = 3
"""Columns of one frame: x, y (pixels of the full frame), confidence (0 where missing)."""

DTYPE = np.float32

# fmt: off
BODY_25: tuple[str, ...] = (
    "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist",
    "MidHip", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye",
    "REar", "LEar", "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
)
# fmt: on
"""BODY_25 joint names in OpenPose's output order (index = position in the tuple)."""


def _numbered(prefix: str, count: int, start: int = 0) -> tuple[str, ...]:
    return tuple(f"{prefix}_{i}" for i in range(start, start + count))


FACE_70: tuple[str, ...] = (
    _numbered("jaw", 17)  # 0-16, from the image-left jaw (subject's right) round the chin
    + _numbered("right_brow", 5)  # 17-21, outer to inner
    + _numbered("left_brow", 5)  # 22-26, inner to outer
    + _numbered("nose_bridge", 4)  # 27-30, top to tip
    + _numbered("nose_base", 5)  # 31-35, subject's right to left
    + _numbered("right_eye", 6)  # 36-41, 36 = outer corner, clockwise in the image
    + _numbered("left_eye", 6)  # 42-47, 42 = inner corner, 45 = outer corner
    + _numbered("outer_lip", 12)  # 48-59, 48 = subject's right mouth corner
    + _numbered("inner_lip", 8)  # 60-67
    + ("right_pupil", "left_pupil")  # 68, 69
)
"""Face names: the 68 dlib/iBUG-300W points followed by OpenPose's two pupils."""

HAND_21: tuple[str, ...] = (
    "wrist",
    *(
        f"{finger}_{joint}"
        for finger in ("thumb", "index", "middle", "ring", "pinky")
        for joint in range(1, 5)
    ),
)
"""Hand names (OpenPose order, equal to MediaPipe's): wrist, then 4 joints per finger from
the palm outwards (thumb 1-4, index 5-8, middle 9-12, ring 13-16, pinky 17-20)."""

BODY = slice(0, 25)
FACE = slice(25, 95)
LEFT_HAND = slice(95, 116)
RIGHT_HAND = slice(116, 137)

PARTS: dict[str, slice] = {
    "body": BODY,
    "face": FACE,
    "left_hand": LEFT_HAND,
    "right_hand": RIGHT_HAND,
}
"""Part name -> rows of the (137, 3) array, in layout order."""

KEYPOINT_NAMES: tuple[str, ...] = (
    BODY_25
    + tuple(f"face_{name}" for name in FACE_70)
    + tuple(f"left_hand_{name}" for name in HAND_21)
    + tuple(f"right_hand_{name}" for name in HAND_21)
)
"""A unique name for each of the 137 rows."""

# Face regions as indices within the 70 face points (add FACE.start for a row of the array).
FACE_JAW = tuple(range(0, 17))
FACE_RIGHT_BROW = tuple(range(17, 22))
FACE_LEFT_BROW = tuple(range(22, 27))
FACE_NOSE = tuple(range(27, 36))
FACE_NOSE_TIP = 30
FACE_RIGHT_EYE = tuple(range(36, 42))
FACE_LEFT_EYE = tuple(range(42, 48))
FACE_OUTER_LIP = tuple(range(48, 60))
FACE_INNER_LIP = tuple(range(60, 68))
FACE_RIGHT_PUPIL = 68
FACE_LEFT_PUPIL = 69

# Joints that a seated, table-framed speaker (iMiGUE) almost never shows.
LOWER_BODY = tuple(
    BODY_25.index(name)
    for name in (
        "MidHip",
        "RHip",
        "RKnee",
        "RAnkle",
        "LHip",
        "LKnee",
        "LAnkle",
        "LBigToe",
        "LSmallToe",
        "LHeel",
        "RBigToe",
        "RSmallToe",
        "RHeel",
    )
)
"""The 13 hip and leg joints that are empty in nearly every iMiGUE frame."""


# Skeleton edges, for graph models (the GCN keypoint encoder) and for drawing. Each list holds
# undirected (i, j) pairs of indices local to its part; SKELETON_EDGES maps them to rows.

BODY_25_EDGES: tuple[tuple[int, int], ...] = (
    (1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11),
    (8, 12), (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18),
    (14, 19), (19, 20), (14, 21), (11, 22), (22, 23), (11, 24),
)
"""The 24 BODY_25 bones, OpenPose's own pairs (``POSE_BODY_25_PAIRS_RENDER``)."""


def _chain(points: tuple[int, ...], closed: bool = False) -> tuple[tuple[int, int], ...]:
    pairs = tuple(itertools.pairwise(points))
    return (*pairs, (points[-1], points[0])) if closed else pairs


FACE_70_EDGES: tuple[tuple[int, int], ...] = (
    _chain(FACE_JAW)
    + _chain(FACE_RIGHT_BROW)
    + _chain(FACE_LEFT_BROW)
    + _chain(tuple(range(27, 31)))  # nose bridge, top to tip
    + _chain(tuple(range(31, 36)))  # nose base
    + ((30, 33),)  # tip to the middle of the base
    + _chain(FACE_RIGHT_EYE, closed=True)
    + _chain(FACE_LEFT_EYE, closed=True)
    + _chain(FACE_OUTER_LIP, closed=True)
    + _chain(FACE_INNER_LIP, closed=True)
    + ((FACE_RIGHT_PUPIL, 36), (FACE_RIGHT_PUPIL, 39),
       (FACE_LEFT_PUPIL, 42), (FACE_LEFT_PUPIL, 45))
)
"""Face contours as chains (the usual dlib drawing): jaw, brows, nose bridge and base,
closed eye and lip loops; each pupil joins its eye's two corners."""

HAND_21_EDGES: tuple[tuple[int, int], ...] = tuple(
    pair
    for base in (1, 5, 9, 13, 17)
    for pair in ((0, base), *_chain(tuple(range(base, base + 4))))
)
"""The 20 hand bones: wrist to each finger's first joint, then along each finger."""

CROSS_PART_EDGES: tuple[tuple[int, int], ...] = (
    (BODY_25.index("RWrist"), RIGHT_HAND.start),
    (BODY_25.index("LWrist"), LEFT_HAND.start),
    (BODY_25.index("Nose"), FACE.start + FACE_NOSE_TIP),
)
"""Rows (not local indices) that tie the parts together: each body wrist to its hand's
wrist, the body's nose to the face's nose tip. Without them a graph model could not pass
information between body, face and hands."""

SKELETON_EDGES: tuple[tuple[int, int], ...] = (
    BODY_25_EDGES
    + tuple((i + FACE.start, j + FACE.start) for i, j in FACE_70_EDGES)
    + tuple((i + LEFT_HAND.start, j + LEFT_HAND.start) for i, j in HAND_21_EDGES)
    + tuple((i + RIGHT_HAND.start, j + RIGHT_HAND.start) for i, j in HAND_21_EDGES)
    + CROSS_PART_EDGES
)
"""Every edge of the 137-point skeleton as undirected pairs of rows of the (137, 3) array."""


def body_index(name: str) -> int:
    """Row of a BODY_25 joint by its OpenPose name (e.g. ``"RShoulder"`` -> 2)."""
    try:
        return BODY_25.index(name)
    except ValueError:
        raise ValueError(
            f"unknown BODY_25 joint {name!r}; expected one of {', '.join(BODY_25)}"
        ) from None


def empty_keypoints() -> np.ndarray:
    """A (137, 3) float32 frame with every point missing (all zeros)."""
    return np.zeros((NUM_KEYPOINTS, NUM_CHANNELS), dtype=DTYPE)


def check_keypoints(keypoints: np.ndarray, name: str = "keypoints") -> np.ndarray:
    """Return ``keypoints`` if it is a (137, 3) frame (or a (..., 137, 3) stack); else raise.

    Used at module boundaries so that a wrongly shaped array fails where it enters, with a
    message that names it, rather than deep inside a model.
    """
    array = np.asarray(keypoints)
    if array.ndim < 2 or array.shape[-2:] != (NUM_KEYPOINTS, NUM_CHANNELS):
        raise ValueError(
            f"{name} has shape {array.shape}; expected (..., {NUM_KEYPOINTS}, {NUM_CHANNELS}) "
            "in the OpenPose layout (body 25, face 70, left hand 21, right hand 21; x, y, conf)"
        )
    return array


assert len(BODY_25) == 25 and len(FACE_70) == 70 and len(HAND_21) == 21
assert len(KEYPOINT_NAMES) == NUM_KEYPOINTS == RIGHT_HAND.stop
assert len(BODY_25_EDGES) == 24 and len(HAND_21_EDGES) == 20
