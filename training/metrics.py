"""Classification metrics at window and video level, and their spread over seeds.

Written out (not taken from scikit-learn) because they are few and the definitions matter:
balanced accuracy is the mean per-class recall; macro-F1 averages the two classes' F1;
ROC-AUC is the Mann-Whitney probability that a positive scores above a negative (ties
count half), undefined (None) when the set holds a single class. A video's probability is
the mean of its windows' probabilities.

Example:
    >>> classification_metrics(np.array([0, 1, 1]), np.array([0.2, 0.9, 0.4]))["accuracy"]
    0.6666666666666666
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc")


def classification_metrics(labels: np.ndarray, positive_prob: np.ndarray,
                           threshold: float = 0.5) -> dict[str, float | None]:
    """Metrics of binary predictions ``positive_prob >= threshold`` against ``labels``."""
    labels = np.asarray(labels, np.int64)
    scores = np.asarray(positive_prob, np.float64)
    if labels.shape != scores.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} must be equal, 1-d, "
                         "non-empty")
    predicted = (scores >= threshold).astype(np.int64)
    recalls, f1s = [], []
    for cls in (0, 1):
        truth, guess = labels == cls, predicted == cls
        tp = float(np.sum(truth & guess))
        if truth.any():
            recalls.append(tp / truth.sum())
        precision = tp / guess.sum() if guess.any() else 0.0
        recall = tp / truth.sum() if truth.any() else 0.0
        f1s.append(0.0 if precision + recall == 0 else 2 * precision * recall /
                   (precision + recall))
    return {"accuracy": float(np.mean(predicted == labels)),
            "balanced_accuracy": float(np.mean(recalls)),
            "macro_f1": float(np.mean(f1s)),
            "roc_auc": roc_auc(labels, scores),
            "count": len(labels)}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    positives, negatives = scores[labels == 1], scores[labels == 0]
    if len(positives) == 0 or len(negatives) == 0:
        return None
    greater = (positives[:, None] > negatives[None, :]).sum()
    ties = (positives[:, None] == negatives[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(positives) * len(negatives)))


def video_scores(video_index: np.ndarray, positive_prob: np.ndarray,
                 n_videos: int) -> np.ndarray:
    """Mean window probability per video (NaN for a video without windows)."""
    sums = np.bincount(video_index, weights=positive_prob, minlength=n_videos)
    counts = np.bincount(video_index, minlength=n_videos)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts


def summarize(per_seed: Sequence[dict[str, float | None]]) -> dict[str, dict[str, float]]:
    """Mean and standard deviation (over seeds) of each metric present in every seed."""
    out = {}
    for name in METRICS:
        values = [m[name] for m in per_seed if m.get(name) is not None]
        if len(values) == len(per_seed) and values:
            out[name] = {"mean": float(np.mean(values)), "std": float(np.std(values)),
                         "n": len(values)}
    return out
