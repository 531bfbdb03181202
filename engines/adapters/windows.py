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

    Centre: the neck, else the mid-shoulder, else the mean of the confident face points.
    Scale: the shoulder width, else the face's bounding-box diagonal (about the same size on
    an adult facing the camera), so a seated speaker and a close-up give similar numbers.
    A frame with no usable reference is all zeros (treated as "no person").
    """
    frames = check_keypoints(frames, "frames").astype(np.float32, copy=False)
    flat = frames.reshape(-1, NUM_KEYPOINTS, NUM_CHANNELS)
    out = np.zeros_like(flat)
    for index, frame in enumerate(flat):
        reference = _reference(frame)
        if reference is None:
            continue
        centre, scale = reference
        present = frame[:, 2] >= MIN_CONFIDENCE
        out[index, present, :2] = (frame[present, :2] - centre) / scale
        out[index, present, 2] = frame[present, 2]
    return out.reshape(frames.shape)


def _reference(frame: np.ndarray) -> tuple[np.ndarray, float] | None:
    conf = frame[:, 2]
    shoulders_ok = conf[_R_SHOULDER] >= MIN_CONFIDENCE and conf[_L_SHOULDER] >= MIN_CONFIDENCE
    face = frame[FACE][frame[FACE][:, 2] >= MIN_CONFIDENCE, :2]
    if shoulders_ok:
        scale = float(np.linalg.norm(frame[_R_SHOULDER, :2] - frame[_L_SHOULDER, :2]))
        centre = (frame[_NECK, :2] if conf[_NECK] >= MIN_CONFIDENCE
                  else (frame[_R_SHOULDER, :2] + frame[_L_SHOULDER, :2]) / 2)
        if scale > 1e-6:
            return centre, scale
    if len(face) >= 2:
        scale = float(np.linalg.norm(face.max(axis=0) - face.min(axis=0)))
        if scale > 1e-6:
            return face.mean(axis=0), scale
    body = frame[BODY][frame[BODY][:, 2] >= MIN_CONFIDENCE, :2]
    if len(body) >= 2:
        scale = float(np.linalg.norm(body.max(axis=0) - body.min(axis=0)))
        if scale > 1e-6:
            return body.mean(axis=0), scale
    return None


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
                 image_dim: int, text_dim: int) -> WindowBatch:
    """One window ending at ``end`` (seconds, same clock as the times), as a batch of one.

    ``keypoints`` are raw (N, 137, 3) pixel keypoints (normalised here); ``text`` is one
    embedding (Dtxt,) or None when there is no transcript (the text modality is masked).
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
