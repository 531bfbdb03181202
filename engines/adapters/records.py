"""Frozen result records the perception adapters return, one per frame or per batch.

Every record carries ``random_weights``: the engine that made it was built from a config
with random weights, so its numbers are meaningless. Whatever shows or stores a record
(the terminal, a feature store, a benchmark report) can then say so instead of passing
noise off as a result.

Example:
    >>> Detections.empty().xyxy.shape
    (0, 4)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _frozen_array(array: np.ndarray, dtype: type, name: str, ndim: int) -> np.ndarray:
    """A read-only contiguous view of ``array`` as ``dtype``, checking its rank.

    A view, so the caller's own array stays writable.
    """
    out = np.ascontiguousarray(array, dtype=dtype).view()
    if out.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dims, got shape {out.shape}")
    out.setflags(write=False)
    return out


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes found in one frame, in that frame's pixels.

    ``xyxy`` is (N, 4) float32 ``x0, y0, x1, y1``; ``scores`` (N,) float32 confidences;
    ``class_ids`` (N,) int64. Arrays are made read-only, so a record shared between stages
    cannot change under anyone's feet.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    random_weights: bool = False

    def __post_init__(self) -> None:
        xyxy = _frozen_array(self.xyxy, np.float32, "Detections.xyxy", 2)
        scores = _frozen_array(self.scores, np.float32, "Detections.scores", 1)
        class_ids = _frozen_array(self.class_ids, np.int64, "Detections.class_ids", 1)
        if xyxy.shape[1] != 4 or not len(xyxy) == len(scores) == len(class_ids):
            raise ValueError(
                f"Detections: xyxy {xyxy.shape}, scores {scores.shape} and class_ids "
                f"{class_ids.shape} must be (N, 4), (N,) and (N,) for the same N"
            )
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)

    @classmethod
    def empty(cls, random_weights: bool = False) -> Detections:
        """No detections (a frame with nobody in it)."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                   np.zeros(0, np.int64), random_weights)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def areas(self) -> np.ndarray:
        """(N,) box areas in square pixels."""
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])


@dataclass(frozen=True, eq=False)
class ImageEmbeddings:
    """One embedding per image crop: ``cls`` (N, D) CLS token and ``patch_mean`` (N, D)
    mean patch token, both float32."""

    cls: np.ndarray
    patch_mean: np.ndarray
    random_weights: bool = False

    def __post_init__(self) -> None:
        cls_ = _frozen_array(self.cls, np.float32, "ImageEmbeddings.cls", 2)
        patch = _frozen_array(self.patch_mean, np.float32, "ImageEmbeddings.patch_mean", 2)
        if cls_.shape != patch.shape:
            raise ValueError(
                f"ImageEmbeddings: cls {cls_.shape} and patch_mean {patch.shape} must match"
            )
        object.__setattr__(self, "cls", cls_)
        object.__setattr__(self, "patch_mean", patch)

    def __len__(self) -> int:
        return len(self.cls)

    @property
    def dim(self) -> int:
        return int(self.cls.shape[1])


@dataclass(frozen=True, eq=False)
class TextEmbeddings:
    """One vector per text: ``vectors`` (N, D) float32 (L2-normalised when the engine's
    manifest says ``normalize``)."""

    vectors: np.ndarray
    random_weights: bool = False

    def __post_init__(self) -> None:
        vectors = _frozen_array(self.vectors, np.float32, "TextEmbeddings.vectors", 2)
        object.__setattr__(self, "vectors", vectors)

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])
