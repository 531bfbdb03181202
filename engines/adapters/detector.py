"""Person detection around the YOLO engine: letterbox, decode, NMS, prominence, crop.

The engine sees a square ``imgsz`` input: each frame is resized keeping its aspect and
padded with grey (114, as ultralytics trains), so boxes come back in letterboxed pixels and
:class:`Letterbox` maps them to the frame. The raw output (batch, 4 + classes, anchors)
holds ``cx, cy, w, h`` and per-class scores per anchor; :func:`decode_yolo` keeps the
person boxes and runs OpenCV's NMS. It is a pure function of arrays, testable without an
engine. Which persons go on, in which order, is the perception core's choice
(:mod:`engines.adapters.perception`: ByteTrack ids, :func:`prominence` order);
:func:`crop_with_margin` cuts each crop out.

Example:
    >>> detector = PersonDetector.from_engine_dir("artifacts/engines/edge")  # doctest: +SKIP
    >>> found = detector.detect([frame])[0]  # doctest: +SKIP
    >>> crop, offset = crop_with_margin(frame, found.xyxy[0])  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engines.runtime import BackendChoice

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.adapters.common import require_preprocess, require_rgb
from engines.adapters.records import Detections
from engines.engine import Backend, Engine
from engines.manifest import EngineManifest
from engines.runtime import open_engine

DETECTOR_KEYS = ("imgsz", "letterbox_color", "scale", "channels", "person_class",
                 "conf_threshold", "iou_threshold")
"""Preprocess entries a detector manifest must carry (written by engines.sources.detector)."""


def check_bgr_image(image: np.ndarray, name: str) -> None:
    """Raise ValueError naming ``name`` unless ``image`` is a non-empty (H, W, 3) uint8 image."""
    if (not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3
            or image.dtype != np.uint8 or image.shape[0] == 0 or image.shape[1] == 0):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(
            f"{name} has shape {shape} and dtype {dtype}; expected a non-empty (H, W, 3) "
            "uint8 BGR image (as cv2.imread or VideoCapture give; an empty crop means its box "
            "lay outside the frame: skip it)"
        )


@dataclass(frozen=True)
class Letterbox:
    """How one frame was fitted into the square input: ``input = frame * scale + pad``."""

    scale: float
    pad_x: int
    pad_y: int

    def to_input(self, xyxy: np.ndarray) -> np.ndarray:
        """Frame-pixel boxes (N, 4) -> letterboxed input pixels."""
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float64)
        return np.asarray(xyxy, np.float64) * self.scale + offset

    def to_frame(self, xyxy: np.ndarray) -> np.ndarray:
        """Letterboxed input-pixel boxes (N, 4) -> frame pixels (not clipped)."""
        offset = np.array([self.pad_x, self.pad_y, self.pad_x, self.pad_y], np.float64)
        return (np.asarray(xyxy, np.float64) - offset) / self.scale


def fit_letterbox(frame_hw: tuple[int, int], size: int) -> tuple[Letterbox, tuple[int, int]]:
    """The letterbox for a frame of ``frame_hw`` in a ``size`` square, and the resized (w, h)."""
    height, width = frame_hw
    scale = min(size / height, size / width)
    new_w = min(size, max(1, round(width * scale)))
    new_h = min(size, max(1, round(height * scale)))
    return Letterbox(scale, (size - new_w) // 2, (size - new_h) // 2), (new_w, new_h)


def letterbox(image: np.ndarray, size: int, color: int | Sequence[int] = 114, *,
              interpolation: int = cv2.INTER_LINEAR,
              out: np.ndarray | None = None) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (H, W, C) into a ``size`` square keeping its aspect; pad with ``color``.

    The image is centred (padding split evenly, the odd pixel right/bottom), as ultralytics
    does. Writes into ``out`` (size, size, C) when given, so a batch can be filled in place.
    """
    box, (new_w, new_h) = fit_letterbox(image.shape[:2], size)
    canvas = out if out is not None else np.empty((size, size, image.shape[2]), image.dtype)
    canvas[...] = np.asarray(color, dtype=image.dtype)
    resized = image
    if (new_w, new_h) != (image.shape[1], image.shape[0]):
        resized = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    canvas[box.pad_y:box.pad_y + new_h, box.pad_x:box.pad_x + new_w] = resized
    return canvas, box


def bgr_to_nchw(images: np.ndarray, scale: Sequence[float],
                shift: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """(N, H, W, 3) uint8 BGR -> (N, 3, H, W) float32 RGB, ``pixel * scale[c] + shift[c]``.

    ``scale`` and ``shift`` are per RGB channel. One plane at a time: about twice as fast
    as converting the whole transposed batch at once (contiguous writes).
    """
    out = np.empty((images.shape[0], 3, *images.shape[1:3]), np.float32)
    for index in range(images.shape[0]):
        for channel in range(3):
            plane = out[index, channel]
            np.multiply(images[index, :, :, 2 - channel], np.float32(scale[channel]),
                        out=plane, dtype=np.float32, casting="unsafe")
            if shift[channel]:
                plane += np.float32(shift[channel])
    return out


def detector_batch(frames: Sequence[np.ndarray], size: int, color: int = 114,
                   scale: float = 1 / 255) -> tuple[np.ndarray, list[Letterbox]]:
    """Letterboxed, RGB, scaled NCHW float32 batch for the detector, and each frame's box."""
    canvas = np.empty((len(frames), size, size, 3), np.uint8)
    boxes = []
    for index, frame in enumerate(frames):
        check_bgr_image(frame, f"frames[{index}]")
        boxes.append(letterbox(frame, size, color, out=canvas[index])[1])
    return bgr_to_nchw(canvas, (scale,) * 3), boxes


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) centre/size boxes -> corner boxes."""
    cx, cy, w, h = boxes.T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def decode_yolo(raw: np.ndarray, box: Letterbox, frame_hw: tuple[int, int], *,
                person_class: int = 0, conf_threshold: float = 0.25,
                iou_threshold: float = 0.45, max_candidates: int = 3000,
                max_detections: int = 100, random_weights: bool = False) -> Detections:
    """Person boxes in frame pixels from one image's raw YOLO output (4 + classes, anchors).

    An anchor counts as a person when the person score exceeds ``conf_threshold`` and is
    its best class (as ultralytics' ``predict(classes=[0])`` decides). The best
    ``max_candidates`` go through OpenCV's NMS; boxes are mapped back through ``box`` and
    clipped to the frame, and any that end up empty (lying in the padding) are dropped.
    """
    if raw.ndim != 2 or raw.shape[0] <= 4 + person_class:
        raise ValueError(
            f"raw detector output has shape {raw.shape}; expected (4 + classes, anchors) for "
            f"one image with a class {person_class} row"
        )
    person = raw[4 + person_class]
    candidates = np.flatnonzero(person > conf_threshold)
    candidates = candidates[np.argmax(raw[4:, candidates], axis=0) == person_class]
    if len(candidates) > max_candidates:
        candidates = candidates[np.argsort(-person[candidates])[:max_candidates]]
    if len(candidates) == 0:
        return Detections.empty(random_weights)
    xyxy = cxcywh_to_xyxy(raw[:4, candidates].T.astype(np.float64))
    scores = person[candidates].astype(np.float32)
    xywh = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]])
    kept = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), float(conf_threshold),
                                       float(iou_threshold), top_k=max_detections),
                      dtype=np.int64).reshape(-1)
    frame_xyxy = clip_boxes(box.to_frame(xyxy[kept]), frame_hw)
    visible = (frame_xyxy[:, 2] > frame_xyxy[:, 0]) & (frame_xyxy[:, 3] > frame_xyxy[:, 1])
    kept = kept[visible]
    return Detections(frame_xyxy[visible], scores[kept],
                      np.full(len(kept), person_class, np.int64), random_weights)


def clip_boxes(xyxy: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """Clip (N, 4) boxes to a frame of ``frame_hw`` pixels."""
    height, width = frame_hw
    limits = np.array([width, height, width, height], np.float64)
    return np.clip(xyxy, 0.0, limits)


class PersonDetector:
    """YOLO person detector on an :class:`Engine`: ``detect(frames)`` in one engine call.

    Thresholds default to the manifest's (the profile's); pass them to override. Every
    :class:`Detections` carries ``random_weights`` from the manifest.
    """

    def __init__(self, engine: Engine, manifest: EngineManifest, *,
                 conf_threshold: float | None = None, iou_threshold: float | None = None,
                 max_detections: int = 100) -> None:
        require_preprocess(manifest, DETECTOR_KEYS, "detector")
        pre: dict[str, Any] = manifest.preprocess
        require_rgb(manifest, "detector")
        self.engine = engine
        self.manifest = manifest
        self.imgsz = int(pre["imgsz"])
        self.color = int(pre["letterbox_color"])
        self.scale = float(pre["scale"])
        self.person_class = int(pre["person_class"])
        self.conf_threshold = float(pre["conf_threshold"] if conf_threshold is None
                                    else conf_threshold)
        self.iou_threshold = float(pre["iou_threshold"] if iou_threshold is None
                                   else iou_threshold)
        self.max_detections = max_detections
        self.random_weights = bool(manifest.random_weights or engine.random_weights)
        self._input = engine.signature.input_names[0]
        self._output = engine.signature.output_names[0]

    @classmethod
    def from_engine_dir(cls, engine_dir: Path | str, backend: BackendChoice = Backend.AUTO,
                        *, name: str = "detector", **options: Any) -> PersonDetector:
        """Verify and load engine ``name`` from ``engine_dir``; ``options`` go to ``__init__``."""
        engine, manifest = open_engine(engine_dir, name, backend)
        return cls(engine, manifest, **options)

    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Person boxes for each BGR frame (any sizes), from one batched engine call."""
        if len(frames) == 0:
            return []
        batch, boxes = detector_batch(frames, self.imgsz, self.color, self.scale)
        raw = self.engine.run({self._input: batch})[self._output]
        return [
            decode_yolo(raw[i], boxes[i], frames[i].shape[:2], person_class=self.person_class,
                        conf_threshold=self.conf_threshold, iou_threshold=self.iou_threshold,
                        max_detections=self.max_detections, random_weights=self.random_weights)
            for i in range(len(frames))
        ]

    def close(self) -> None:
        """Release the engine."""
        self.engine.close()


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one xyxy ``box`` with each of ``boxes`` (N, 4)."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def prominence(xyxy: np.ndarray, frame_hw: tuple[int, int], centre_weight: float) -> np.ndarray:
    """Main-person score per box: area (as a frame fraction) times centrality.

    Centrality is 1 at the frame centre, falling linearly by ``centre_weight`` at a corner,
    so a big speaker off-centre still beats a small passer-by in the middle.
    """
    height, width = frame_hw
    xyxy = np.asarray(xyxy, np.float64)
    area = (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1]) / (width * height)
    centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
    distance = np.hypot(centre[:, 0] - width / 2, centre[:, 1] - height / 2)
    off_centre = np.clip(distance / (math.hypot(width, height) / 2), 0.0, 1.0)
    return area * (1.0 - centre_weight * off_centre)


def crop_with_margin(frame: np.ndarray, box: Sequence[float] | np.ndarray,
                     margin: float = 0.15) -> tuple[np.ndarray, tuple[int, int]]:
    """Cut ``box`` (x0, y0, x1, y1) plus ``margin`` of its size on each side out of ``frame``.

    The margin keeps hands and hair that stick out of a tight box. The crop is clipped to
    the frame and is a view (no copy). Returns the crop and its top-left corner ``(x0, y0)``
    in the frame, the offset :meth:`MediaPipeKeypoints.process` takes. A box wholly outside
    the frame gives an empty (0-size) crop.
    """
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, np.float64).reshape(4))
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    height, width = frame.shape[:2]
    left = min(width, max(0, math.floor(x0 - dx)))
    top = min(height, max(0, math.floor(y0 - dy)))
    right = max(left, min(width, math.ceil(x1 + dx)))
    bottom = max(top, min(height, math.ceil(y1 + dy)))
    return frame[top:bottom, left:right], (left, top)
