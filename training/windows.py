"""Cut videos from a feature store into classifier windows, the way the live pipeline does.

Every window goes through :func:`engines.adapters.windows.build_window`, the function the
classify stage uses, so training sees exactly the grids, masks and keypoint normalisation
that serving will. Windows end every ``stride`` seconds; a video shorter than one window
still gives one (its grid is partly masked), so no labelled video is silently dropped.

Example:
    >>> spec = WindowSpec(8.0, 2.0, 10.0)
    >>> windows = cut_windows(videos, spec, 384, 384, stride=2.0)  # doctest: +SKIP
    >>> windows.batch.image.shape  # doctest: +SKIP
    (1234, 16, 384)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engines.adapters.windows import WindowBatch, build_window, normalize_keypoints
from training.features.store import VideoFeatures


@dataclass(frozen=True)
class WindowSpec:
    """Window length and per-modality rates (the profile's ``ClassifierSpec``)."""

    window_seconds: float
    image_rate: float
    keypoint_rate: float


@dataclass(frozen=True)
class WindowSet:
    """Many windows with their labels and the video each came from."""

    batch: WindowBatch
    labels: np.ndarray
    """(N,) int64 class index of the window's video (-1 where unknown)."""
    video_index: np.ndarray
    """(N,) index into ``video_ids``."""
    video_ids: list[str]
    video_labels: np.ndarray
    weights: np.ndarray | None = None
    """(N,) float32 sample weight of each window in the training loss; None: all 1 (a
    pseudo-labelled video's windows may count less than a gold one's)."""

    def __len__(self) -> int:
        return len(self.labels)

    def with_labels(self, video_labels: np.ndarray) -> WindowSet:
        """The same windows with other video labels (e.g. shuffled, for a chance check)."""
        video_labels = np.asarray(video_labels, np.int64)
        return WindowSet(self.batch, video_labels[self.video_index], self.video_index,
                         self.video_ids, video_labels, self.weights)

    def with_video_weights(self, video_weights: np.ndarray) -> WindowSet:
        """The same windows, each weighted as its video (one weight per ``video_ids``)."""
        video_weights = np.asarray(video_weights, np.float32)
        if video_weights.shape != (len(self.video_ids),) or (video_weights <= 0).any():
            raise ValueError(f"video weights {video_weights.shape}: expected one positive "
                             f"weight for each of {len(self.video_ids)} videos")
        return WindowSet(self.batch, self.labels, self.video_index, self.video_ids,
                         self.video_labels, video_weights[self.video_index])


def window_ends(duration: float, window_seconds: float, stride: float) -> np.ndarray:
    """End times of the windows cut from a video of ``duration`` seconds."""
    if duration <= window_seconds:
        return np.array([duration])
    return np.arange(window_seconds, duration + 1e-9, stride)


def cut_windows(videos: Sequence[VideoFeatures], spec: WindowSpec, image_dim: int,
                text_dim: int, *, stride: float) -> WindowSet:
    """All windows of ``videos`` ending every ``stride`` seconds."""
    if not videos:
        raise ValueError("cut_windows: no videos (is the split empty?)")
    windows, labels, owners = [], [], []
    for index, video in enumerate(videos):
        keypoints = normalize_keypoints(video.keypoints) if len(video.keypoints) else \
            video.keypoints
        for end in window_ends(video.duration, spec.window_seconds, stride):
            windows.append(build_window(
                end=float(end), window_seconds=spec.window_seconds,
                image_rate=spec.image_rate, keypoint_rate=spec.keypoint_rate,
                image_times=video.image_times, image=video.image,
                keypoint_times=video.keypoint_times, keypoints=keypoints, text=video.text,
                image_dim=image_dim, text_dim=text_dim, keypoints_normalized=True))
            labels.append(-1 if video.label is None else video.label)
            owners.append(index)
    video_labels = np.array([-1 if v.label is None else v.label for v in videos], np.int64)
    return WindowSet(WindowBatch.stack(windows), np.asarray(labels, np.int64),
                     np.asarray(owners, np.int64), [v.video_id for v in videos], video_labels)
