"""Windows: time-stamped per-frame features laid on the classifier's fixed grid.

The window classifier sees the last ``window_seconds`` of one person as one grid per
modality: ``slots = window_seconds * rate`` rows, slot ``i`` covering
``[start + i / rate, start + (i + 1) / rate)``. The newest feature that falls in a slot fills
it; a slot with none is masked (mask 0). Training (from a feature store) and the live
pipeline (from a ring of features) build windows with these same functions, so the model
never sees a layout at serving time that it was not trained on.

Keypoints are normalised per frame here (centred on the neck, or the face when the body is
missing, and scaled by the shoulder width or the face size), so a window does not depend on
where the person stands in the frame or how far from the camera.

Example:
    >>> grid, mask = place_on_grid(np.array([0.1, 0.6]), np.ones((2, 3), np.float32),
    ...                            start=0.0, slots=4, rate=2.0)
    >>> mask.tolist()
    [1.0, 1.0, 0.0, 0.0]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.adapters.openpose_layout import (
    BODY,
    FACE,
    NUM_CHANNELS,
    NUM_KEYPOINTS,
    body_index,
    check_keypoints,
)

MIN_CONFIDENCE = 0.05
"""Points below this confidence count as missing for normalisation."""

_NECK = body_index("Neck")
_R_SHOULDER = body_index("RShoulder")
_L_SHOULDER = body_index("LShoulder")


def normalize_keypoints(frames: np.ndarray) -> np.ndarray:
    """(..., 137, 3) pixel keypoints -> centred and scaled copies; missing points stay 0.

    Centre: the neck (else mid-shoulder) when both shoulders are seen, scaled by the
    shoulder width; else the face's mean point, scaled by its bounding-box diagonal (about
    the same size on an adult facing the camera); else the body's. A seated speaker and a
    close-up then give similar numbers. A frame with no usable reference is all zeros
    (treated as "no person"). Vectorised: the training loader normalises whole videos.
    """
    frames = check_keypoints(frames, "frames").astype(np.float32, copy=False)
    flat = frames.reshape(-1, NUM_KEYPOINTS, NUM_CHANNELS)
    present = flat[:, :, 2] >= MIN_CONFIDENCE
    centre = np.zeros((len(flat), 2), np.float32)
    scale = np.zeros(len(flat), np.float32)
    done = np.zeros(len(flat), bool)
    for ref_centre, ref_scale in (_shoulder_reference(flat, present),
                                  _extent_reference(flat, present, FACE),
                                  _extent_reference(flat, present, BODY)):
        use = ~done & (ref_scale > 1e-6)
        centre[use], scale[use] = ref_centre[use], ref_scale[use]
        done |= use
    keep = present & done[:, None]
    safe = np.where(done, scale, 1.0)[:, None, None]
    out = np.zeros_like(flat)
    out[:, :, :2] = np.where(keep[..., None], (flat[:, :, :2] - centre[:, None, :]) / safe, 0.0)
    out[:, :, 2] = np.where(keep, flat[:, :, 2], 0.0)
    return out.reshape(frames.shape)


def _shoulder_reference(flat: np.ndarray, present: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neck (else mid-shoulder) and shoulder width per frame; width 0 without both shoulders."""
    right, left = flat[:, _R_SHOULDER, :2], flat[:, _L_SHOULDER, :2]
    centre = np.where(present[:, _NECK, None], flat[:, _NECK, :2], (right + left) / 2)
    both = present[:, _R_SHOULDER] & present[:, _L_SHOULDER]
    return centre, np.where(both, np.linalg.norm(right - left, axis=1), 0.0)


def _extent_reference(flat: np.ndarray, present: np.ndarray,
                      part: slice) -> tuple[np.ndarray, np.ndarray]:
    """Mean point and bounding-box diagonal of a part's present points (0 if fewer than 2)."""
    points, seen = flat[:, part, :2], present[:, part]
    count = seen.sum(axis=1)
    lo = np.where(seen[..., None], points, np.inf).min(axis=1)
    hi = np.where(seen[..., None], points, -np.inf).max(axis=1)
    enough = count >= 2
    diagonal = np.linalg.norm(np.where(enough[:, None], hi - lo, 0.0), axis=1)
    mean = (points * seen[..., None]).sum(axis=1) / np.maximum(count, 1)[:, None]
    return mean, np.where(enough, diagonal, 0.0)


def place_on_grid(times: np.ndarray, values: np.ndarray, *, start: float, slots: int,
                  rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Lay time-stamped ``values`` (N, ...) on ``slots`` slots of ``1/rate`` s from ``start``.

    Returns ``(grid, mask)``: grid (slots, ...) float32 zeros where empty, mask (slots,)
    float32. Features outside the window are ignored; when several fall in one slot, the
    newest wins (times need not be sorted).
    """
    times = np.asarray(times, np.float64)
    values = np.asarray(values, np.float32)
    if len(times) != len(values):
        raise ValueError(f"place_on_grid: {len(times)} times for {len(values)} values")
    grid = np.zeros((slots, *values.shape[1:]), np.float32)
    mask = np.zeros(slots, np.float32)
    if len(times) == 0:
        return grid, mask
    index = np.floor((times - start) * rate + 1e-9).astype(np.int64)
    inside = (index >= 0) & (index < slots)
    order = np.argsort(times[inside], kind="stable")  # later writes win
    chosen = index[inside][order]
    grid[chosen] = values[inside][order]
    mask[chosen] = 1.0
    return grid, mask


@dataclass(frozen=True)
class WindowBatch:
    """Inputs of the window classifier for B windows, named as the engine's inputs.

    image (B, Ti, Dimg), image_mask (B, Ti), keypoints (B, Tk, 137, 3) normalised,
    keypoints_mask (B, Tk), text (B, Dtxt), text_mask (B, 1); all float32, masks 0/1.
    """

    image: np.ndarray
    image_mask: np.ndarray
    keypoints: np.ndarray
    keypoints_mask: np.ndarray
    text: np.ndarray
    text_mask: np.ndarray

    def feeds(self) -> dict[str, np.ndarray]:
        return {name: np.ascontiguousarray(getattr(self, name), np.float32)
                for name in CLASSIFIER_INPUTS}

    def __len__(self) -> int:
        return len(self.image)

    @classmethod
    def stack(cls, windows: list[WindowBatch]) -> WindowBatch:
        """One batch from several (each may itself be a batch of one or more windows)."""
        return cls(*(np.concatenate([getattr(w, name) for w in windows])
                     for name in CLASSIFIER_INPUTS))

    @property
    def modalities_present(self) -> list[list[str]]:
        """Per window, which modalities carry at least one feature."""
        present = []
        for i in range(len(self)):
            names = [name for name, mask in (("image", self.image_mask[i]),
                                             ("keypoints", self.keypoints_mask[i]),
                                             ("text", self.text_mask[i])) if mask.any()]
            present.append(names)
        return present


CLASSIFIER_INPUTS = ("image", "image_mask", "keypoints", "keypoints_mask", "text", "text_mask")
"""Input names of the classifier engine, in its signature's order."""


def build_window(*, end: float, window_seconds: float, image_rate: float, keypoint_rate: float,
                 image_times: np.ndarray, image: np.ndarray, keypoint_times: np.ndarray,
                 keypoints: np.ndarray, text: np.ndarray | None,
                 image_dim: int, text_dim: int,
                 keypoints_normalized: bool = False) -> WindowBatch:
    """One window ending at ``end`` (seconds, same clock as the times), as a batch of one.

    ``keypoints`` are raw (N, 137, 3) pixel keypoints, normalised here unless
    ``keypoints_normalized`` says the caller already ran :func:`normalize_keypoints` on
    them (a trainer cutting many overlapping windows from one video does it once).
    ``text`` is one embedding (Dtxt,) or None when there is no transcript (masked).
    """
    start = end - window_seconds
    image_slots = max(1, round(window_seconds * image_rate))
    keypoint_slots = max(1, round(window_seconds * keypoint_rate))
    if len(image) == 0:
        image = np.zeros((0, image_dim), np.float32)
    if len(keypoints) == 0:
        keypoints = np.zeros((0, NUM_KEYPOINTS, NUM_CHANNELS), np.float32)
    image_grid, image_mask = place_on_grid(image_times, image, start=start, slots=image_slots,
                                           rate=image_rate)
    kp_grid, kp_mask = place_on_grid(keypoint_times, keypoints, start=start,
                                     slots=keypoint_slots, rate=keypoint_rate)
    if not keypoints_normalized:
        kp_grid = normalize_keypoints(kp_grid)
    kp_mask = kp_mask * (kp_grid[..., 2].max(axis=-1) > 0)  # a frame with nobody in it
    if image_grid.shape[-1] != image_dim:
        raise ValueError(f"image embeddings are {image_grid.shape[-1]}-d; the classifier "
                         f"takes {image_dim}-d (wrong profile or engine?)")
    if text is None:
        text_vec, text_mask = np.zeros(text_dim, np.float32), np.zeros(1, np.float32)
    else:
        text_vec = np.asarray(text, np.float32).reshape(-1)
        if text_vec.shape[0] != text_dim:
            raise ValueError(f"text embedding is {text_vec.shape[0]}-d; the classifier takes "
                             f"{text_dim}-d (wrong profile or engine?)")
        text_mask = np.ones(1, np.float32)
    return WindowBatch(image_grid[None], image_mask[None], kp_grid[None], kp_mask[None],
                       text_vec[None], text_mask[None])
