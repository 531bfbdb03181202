"""Rotated regions of interest: MediaPipe's ``NormalizedRect`` maths, in frame pixels.

Every MediaPipe landmark model looks at a rotated square cut out of the frame (a *ROI*),
and every ROI is derived from points found earlier (detector keypoints, landmarks). This
module holds that geometry once: building a rect from two alignment points or from a
point set, ``RectTransformationCalculator``'s scale/shift/square rules, the affine warp
``ImageToTensorCalculator`` applies on the CPU, projection of ROI-relative points back to
the frame (``LandmarkProjectionCalculator``), and ``RoiTrackingCalculator``'s rule for
keeping last frame's rect.

Conventions (MediaPipe's own, so results agree with it): a point's ``x`` is
``normalised_x * frame_width`` (the unit MediaPipe's normalised outputs scale to); a warp
maps the rect's corners straight onto the tensor's corners, as MediaPipe hands them to
OpenCV; ``rotation`` is in radians, clockwise on screen (y points down).

Example:
    >>> rect = Rect(50.0, 40.0, 20.0, 20.0, 0.0)
    >>> rect.to_frame(np.array([[0.5, 0.5], [0.0, 0.0]])).tolist()
    [[50.0, 40.0], [40.0, 30.0]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


def normalize_radians(angle: float) -> float:
    """``angle`` wrapped into ``[-pi, pi)``, as MediaPipe's ``NormalizeRadians``."""
    return angle - 2.0 * math.pi * math.floor((angle + math.pi) / (2.0 * math.pi))


def rotation_between(start: np.ndarray, end: np.ndarray, target_degrees: float) -> float:
    """ROI rotation that turns the ``start -> end`` vector to ``target_degrees`` (counter-
    clockwise from the x axis, y up), the ``rotation_vector_*`` options of MediaPipe."""
    dx = float(end[0] - start[0])
    dy = float(end[1] - start[1])
    return normalize_radians(math.radians(target_degrees) - math.atan2(-dy, dx))


@dataclass(frozen=True)
class Rect:
    """A rotated rectangle in frame pixels: centre, size and clockwise ``rotation``."""

    cx: float
    cy: float
    width: float
    height: float
    rotation: float = 0.0

    @classmethod
    def from_alignment(cls, centre: np.ndarray, scale_point: np.ndarray,
                       target_degrees: float) -> Rect:
        """Square centred on ``centre`` with side twice its distance to ``scale_point``
        (``AlignmentPointsRectsCalculator``), rotated so that vector hits the target."""
        side = 2.0 * float(np.hypot(*(np.asarray(scale_point) - np.asarray(centre))[:2]))
        return cls(float(centre[0]), float(centre[1]), side, side,
                   rotation_between(centre, scale_point, target_degrees))

    @classmethod
    def from_points(cls, points: np.ndarray, rotation: float = 0.0) -> Rect:
        """Axis-aligned bounding box of ``points`` (N, 2) carrying ``rotation`` unchanged,
        as ``DetectionsToRectsCalculator`` makes it (the box itself is not rotated)."""
        low = points[:, :2].min(axis=0)
        high = points[:, :2].max(axis=0)
        centre = (low + high) / 2.0
        size = high - low
        return cls(float(centre[0]), float(centre[1]), float(size[0]), float(size[1]), rotation)

    def transformed(self, scale: float = 1.0, shift_x: float = 0.0, shift_y: float = 0.0,
                    square_long: bool = True) -> Rect:
        """``RectTransformationCalculator``: shift along the rotated axes (in units of the
        rect's own size), make square on the long side, then scale."""
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        dx = self.width * shift_x * cos - self.height * shift_y * sin
        dy = self.width * shift_x * sin + self.height * shift_y * cos
        width, height = self.width, self.height
        if square_long:
            width = height = max(width, height)
        return Rect(self.cx + dx, self.cy + dy, width * scale, height * scale, self.rotation)

    @property
    def _axes(self) -> np.ndarray:
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        return np.array([[cos, -sin], [sin, cos]], dtype=np.float64)

    def to_frame(self, unit: np.ndarray) -> np.ndarray:
        """Points given as fractions of the ROI (u, v in [0, 1], (0, 0) its top-left
        corner) -> frame pixels (``LandmarkProjectionCalculator``). Extra columns pass."""
        unit = np.asarray(unit, dtype=np.float64)
        local = (unit[..., :2] - 0.5) * np.array([self.width, self.height])
        frame = local @ self._axes.T + np.array([self.cx, self.cy])
        return np.concatenate([frame, unit[..., 2:]], axis=-1)

    def to_unit(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_frame`."""
        points = np.asarray(points, dtype=np.float64)
        local = (points[..., :2] - np.array([self.cx, self.cy])) @ self._axes
        unit = local / np.array([self.width, self.height]) + 0.5
        return np.concatenate([unit, points[..., 2:]], axis=-1)

    def corners(self) -> np.ndarray:
        """(4, 2) top-left, top-right, bottom-right, bottom-left corners in the frame."""
        return self.to_frame(np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64))

    def bounds(self) -> np.ndarray:
        """(4,) axis-aligned ``x0, y0, x1, y1`` around the rotated rect."""
        corners = self.corners()
        return np.concatenate([corners.min(axis=0), corners.max(axis=0)])

    def warp_matrix(self, size: int) -> np.ndarray:
        """(2, 3) affine matrix frame -> ``size`` x ``size`` tensor pixels that maps this
        rect's corners onto the tensor's corners, as ``ImageToTensorCalculator`` does."""
        axes = self._axes
        linear = np.diag([size / self.width, size / self.height]) @ axes.T
        offset = size * 0.5 - linear @ np.array([self.cx, self.cy])
        return np.concatenate([linear, offset[:, None]], axis=1)


def warp(image: np.ndarray, rect: Rect, size: int, *, zero_border: bool = False,
         mirror: bool = False) -> np.ndarray:
    """The ``size`` x ``size`` cut of ``image`` under ``rect`` (bilinear, like MediaPipe's
    CPU path). Outside the frame: black (``zero_border``) or the edge pixel repeated
    (MediaPipe's default). ``mirror`` flips it left-right (the iris model's other eye)."""
    if rect.width <= 0 or rect.height <= 0:
        return np.zeros((size, size, image.shape[2]), dtype=image.dtype)
    out = cv2.warpAffine(
        image, rect.warp_matrix(size), (size, size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT if zero_border else cv2.BORDER_REPLICATE,
        borderValue=(0, 0, 0),
    )
    return out[:, ::-1] if mirror else out


def to_tensor(crops: Sequence[np.ndarray], value_range: tuple[float, float],
              bgr: bool = True) -> np.ndarray:
    """Stack uint8 crops into a float32 NHWC RGB batch scaled to ``value_range``."""
    batch = np.stack(crops).astype(np.float32)
    if bgr:
        batch = batch[..., ::-1]
    low, high = value_range
    return np.ascontiguousarray(batch * np.float32((high - low) / 255.0) + np.float32(low))


@dataclass(frozen=True)
class TrackingRequirements:
    """When last frame's landmark rect may stand in for this frame's recrop rect
    (``RoiTrackingCalculator`` options): at most ``rotation_degrees`` apart, centres within
    ``translation`` and sizes within ``scale`` of the recrop rect's size, and every previous
    landmark inside the recrop rect grown by ``recrop_margin`` (negative: shrunk)."""

    rotation_degrees: float
    translation: float
    scale: float
    recrop_margin: float


def keep_tracking(prev_rect: Rect, prev_landmarks: np.ndarray, recrop: Rect,
                  requirements: TrackingRequirements) -> bool:
    """Whether ``prev_rect`` (from last frame's landmarks) is close enough to ``recrop``
    (found afresh this frame) to be used instead: steadier landmarks, as MediaPipe does."""
    diff = math.degrees(prev_rect.rotation - recrop.rotation)
    diff = abs((diff + 180.0) % 360.0 - 180.0)
    if diff > requirements.rotation_degrees:
        return False
    # Both centres seen in the recrop rect's own axes.
    cos, sin = math.cos(-recrop.rotation), math.sin(-recrop.rotation)
    turn = np.array([[cos, -sin], [sin, cos]])
    prev_centre = turn @ np.array([prev_rect.cx, prev_rect.cy])
    centre = turn @ np.array([recrop.cx, recrop.cy])
    if abs(prev_centre[0] - centre[0]) > recrop.width * requirements.translation:
        return False
    if abs(prev_centre[1] - centre[1]) > recrop.height * requirements.translation:
        return False
    if abs(prev_rect.width - recrop.width) > recrop.width * requirements.scale:
        return False
    if abs(prev_rect.height - recrop.height) > recrop.height * requirements.scale:
        return False
    half = np.array([recrop.width, recrop.height]) * (1.0 + requirements.recrop_margin) / 2.0
    local = np.asarray(prev_landmarks, dtype=np.float64)[:, :2] @ turn.T - centre
    return bool(np.all(np.abs(local) < half))
