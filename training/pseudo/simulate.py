"""A simulated teacher with a set accuracy and calibration, writing into a label store.

What pseudo-labels are worth depends on how often the teacher is right and on whether its
confidence means anything; a real VLM's are unknown until measured, so the study of
:mod:`training.pseudo.merge` runs against a teacher whose are set. Per video (seeded by the
teacher's seed and the video id, so a video gets the same draw whatever else is labelled):

- the confidence ``p`` in the chosen label is drawn from ``0.5 + 0.5 * Beta`` with mean
  ``accuracy``, and the teacher is right with probability ``p``: **calibrated** (among
  verdicts of confidence ``p``, a share ``p`` is right), and right ``accuracy`` of the time
  on average;
- **overconfident** keeps the same right/wrong draws but reports ``1 - (1 - p) / 4``
  (a 0.6 becomes 0.9): the ranking still carries information, the numbers overstate it, and
  a threshold set for a calibrated teacher lets nearly everything through;
- the reasoning carries the label's vocabulary (:data:`synthetic.POSITIVE_WORDS` /
  ``NEGATIVE_WORDS``) only when the teacher is right, and is neutral filler when it is
  wrong (a wrong VLM rarely argues its case with the true label's words, but its prose is
  no evidence for its label either).

The truth the teacher is right about is the video's gold label, or the synthetic pool's
``meta["hidden_label"]``. Keys: provider ``simulated``, model
``acc{accuracy}-{calibration}-seed{seed}`` (several teachers fit in one store), prompt
version ``simulated-v1``, sampling ``none``, and as content hash the sha256 of the video
id (the teacher never reads the video file, so the id stands in for its bytes).

Example:
    >>> teacher = SimulatedTeacher(accuracy=0.8, calibration="calibrated", seed=0)
    >>> with LabelStore.open(path) as store:  # doctest: +SKIP
    ...     simulate(store, videos, teacher)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from training.data import synthetic
from training.features.store import VideoFeatures
from training.pseudo.records import (
    LABEL_NAMES,
    LabelKey,
    LabelOutcome,
    Status,
    StoredLabel,
    Verdict,
    text_sha256,
)

PROVIDER = "simulated"
PROMPT_VERSION = "simulated-v1"
SAMPLING = "none"
CONCENTRATION = 4.0
"""Beta concentration of the confidence draw: lower spreads confidences wider (a threshold
then separates more), higher bunches them around the accuracy."""
OVERCONFIDENT_SHRINK = 0.25
"""Overconfident: the reported doubt ``1 - confidence`` is this share of the true one."""


class LabelSink(Protocol):
    """The part of :class:`training.pseudo.store.LabelStore` the teacher uses."""

    def get(self, key: LabelKey) -> StoredLabel | None: ...

    def put(self, key: LabelKey, video_id: str, outcome: LabelOutcome,
            force: bool = False) -> bool: ...


@dataclass(frozen=True)
class SimulatedTeacher:
    accuracy: float
    calibration: Literal["calibrated", "overconfident"] = "calibrated"
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.5 <= self.accuracy <= 1.0:
            raise ValueError(f"accuracy {self.accuracy}: a binary teacher is right 0.5 to 1 "
                             "of the time (below 0.5, flip its answers)")
        if self.calibration not in ("calibrated", "overconfident"):
            raise ValueError(f"calibration {self.calibration!r}: calibrated or overconfident")

    @property
    def model(self) -> str:
        return f"acc{self.accuracy:g}-{self.calibration}-seed{self.seed}"

    def key(self, video_id: str) -> LabelKey:
        return LabelKey(text_sha256(video_id), PROMPT_VERSION, PROVIDER, self.model, SAMPLING)

    def verdict(self, video_id: str, truth: int) -> Verdict:
        """The teacher's answer for one video whose true class is ``truth``."""
        digest = int.from_bytes(hashlib.sha256(video_id.encode()).digest()[:8], "big")
        rng = np.random.default_rng([self.seed, digest])
        mean = 2.0 * self.accuracy - 1.0  # of the Beta part: p = 0.5 + 0.5 * u
        if mean >= 1.0:
            confidence = 1.0
        elif mean <= 0.0:
            confidence = 0.5
        else:
            confidence = 0.5 + 0.5 * float(rng.beta(CONCENTRATION * mean,
                                                     CONCENTRATION * (1.0 - mean)))
        right = bool(rng.random() < confidence)
        label = truth if right else 1 - truth
        if self.calibration == "overconfident":
            confidence = 1.0 - (1.0 - confidence) * OVERCONFIDENT_SHRINK
        return Verdict(label=LABEL_NAMES[label], confidence=round(confidence, 4),
                       reasoning=_reasoning(rng, label if right else None))


def _reasoning(rng: np.random.Generator, label: int | None, words: int = 24) -> str:
    """Filler with the label's words (``label`` given) or filler alone (None)."""
    vocabulary = None if label is None else (
        synthetic.POSITIVE_WORDS if label == 1 else synthetic.NEGATIVE_WORDS)
    out = []
    for _ in range(words):
        pool = vocabulary if vocabulary is not None and rng.random() < 0.4 else \
            synthetic.FILLER_WORDS
        out.append(pool[rng.integers(len(pool))])
    return "The speaker: " + " ".join(out) + "."


def true_label(video: VideoFeatures) -> int | None:
    """Gold, else the generator's hidden label, else unknown."""
    if video.label is not None:
        return video.label
    hidden = video.meta.get("hidden_label")
    return None if hidden is None else int(hidden)


@dataclass(frozen=True)
class SimulationCounts:
    written: int
    kept: int
    """Already in the store under the same key (a rerun pays nothing twice)."""
    skipped: int
    """Not labelled: gold training videos, evaluation videos when excluded, or no truth."""


def simulate(store: LabelSink, videos: Sequence[VideoFeatures], teacher: SimulatedTeacher,
             *, evaluation: bool = True) -> SimulationCounts:
    """Label the unlabelled training videos and (``evaluation``) the val and test videos."""
    written = kept = skipped = 0
    for video in videos:
        truth = true_label(video)
        wanted = (video.split == "train" and video.label is None) or \
            (evaluation and video.split in ("val", "test"))
        if not wanted or truth is None:
            skipped += 1
            continue
        key = teacher.key(video.video_id)
        if store.get(key) is not None:
            kept += 1
            continue
        verdict = teacher.verdict(video.video_id, truth)
        store.put(key, video.video_id, LabelOutcome(
            status=Status.LABELLED, verdict=verdict, responses=(verdict.model_dump_json(),),
            attempts=1))
        written += 1
    return SimulationCounts(written, kept, skipped)
