"""Detector outputs -> boxes with keypoints: SSD decoding and weighted NMS.

``TensorsToDetectionsCalculator`` turns each anchor's raw regression into a box and
keypoints (fractions of the detector input) and keeps scores above a threshold;
``NonMaxSuppressionCalculator`` in its ``WEIGHTED`` mode then merges each cluster of
overlapping boxes into their score-weighted mean (steadier than plain NMS). Both work
on one image's arrays here; batching happens one level up.

Example:
    >>> anchors = np.array([[0.5, 0.5, 1.0, 1.0]], np.float32)
    >>> raw = np.zeros((1, 4), np.float32); raw[0, 2:4] = 10.0
    >>> found = decode(raw, np.array([[5.0]]), anchors, scale=100.0, min_score=0.5)
    >>> found.boxes.round(2).tolist()
    [[0.45, 0.45, 0.55, 0.55]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class RawDetections:
    """Detections of one image: ``boxes`` (N, 4) ``x0, y0, x1, y1``, ``keypoints``
    (N, K, 2) and ``scores`` (N,), coordinates in the units of whoever made them."""

    boxes: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, index: np.ndarray | slice) -> RawDetections:
        """The detections at ``index`` (an index array or slice)."""
        return RawDetections(self.boxes[index], self.keypoints[index], self.scores[index])


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, *,
           scale: float, min_score: float, num_keypoints: int | None = None,
           score_clip: float = 100.0) -> RawDetections:
    """Decode one image's SSD outputs (``reverse_output_order``: x before y).

    Args:
        raw_boxes: (A, 4 + 2K) per anchor: centre x, y, width, height, then K keypoints.
        raw_scores: (A, 1) logits.
        anchors: (A, 4) from :func:`engines.adapters.holistic.anchors.ssd_anchors`.
        scale: the detector's input size (``x_scale`` = ``y_scale`` = ``w_scale`` ...).
        min_score: keep detections whose sigmoid score is at least this.
        num_keypoints: K; by default all the columns after the box.

    Returns:
        Boxes and keypoints as fractions of the detector input, best score first.
    """
    logits = np.clip(raw_scores[:, 0].astype(np.float64), -score_clip, score_clip)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = np.flatnonzero(scores >= min_score)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    raw = raw_boxes[keep].astype(np.float64)
    anchor = anchors[keep].astype(np.float64)
    centre = raw[:, 0:2] / scale * anchor[:, 2:4] + anchor[:, 0:2]
    size = raw[:, 2:4] / scale * anchor[:, 2:4]
    boxes = np.concatenate([centre - size / 2.0, centre + size / 2.0], axis=1)
    count = (raw_boxes.shape[1] - 4) // 2 if num_keypoints is None else num_keypoints
    points = raw[:, 4:4 + 2 * count].reshape(len(keep), count, 2)
    points = points / scale * anchor[:, None, 2:4] + anchor[:, None, 0:2]
    return RawDetections(boxes, points, scores[keep])


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one ``x0, y0, x1, y1`` box with each row of ``others`` (0 where disjoint)."""
    others = np.asarray(others, dtype=np.float64).reshape(-1, 4)
    low = np.maximum(box[:2], others[:, :2])
    high = np.minimum(box[2:], others[:, 2:])
    inter = np.prod(np.clip(high - low, 0.0, None), axis=1)
    area = np.prod(np.clip(box[2:] - box[:2], 0.0, None))
    areas = np.prod(np.clip(others[:, 2:] - others[:, :2], 0.0, None), axis=1)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def weighted_nms(found: RawDetections, iou_threshold: float = 0.3,
                 max_detections: int | None = None) -> RawDetections:
    """MediaPipe's weighted non-maximum suppression.

    Take the best remaining detection; every remaining one overlapping it by more than
    ``iou_threshold`` (itself included) joins its cluster; the cluster becomes one
    detection with the score-weighted mean box and keypoints and the best one's score.
    """
    order = np.argsort(-found.scores, kind="stable")
    boxes, points, scores = [], [], []
    while len(order) and (max_detections is None or len(scores) < max_detections):
        best = order[0]
        overlap = box_iou(found.boxes[best], found.boxes[order]) > iou_threshold
        cluster = order[overlap] if overlap.any() else order[:1]
        weights = found.scores[cluster][:, None]
        total = float(weights.sum())
        boxes.append((found.boxes[cluster] * weights).sum(axis=0) / total)
        points.append((found.keypoints[cluster] * weights[:, :, None]).sum(axis=0) / total)
        scores.append(found.scores[best])
        order = order[~overlap] if overlap.any() else order[1:]
    if not scores:
        return found.take(slice(0, 0))
    return RawDetections(np.stack(boxes), np.stack(points), np.asarray(scores))
