"""A synthetic dataset whose label lives in temporal patterns across modalities.

iMiGUE is licensed on request and not on our machines, so training is verified on data we
generate with a real, learnable signal and a known ceiling. Each video has a clean label
(positive with probability ``positive_fraction``, like iMiGUE's 72% wins) and, per
modality, a coin flip deciding whether that modality carries the label at all:

- keypoints: a seated speaker whose hands gesture in bursts with a label-dependent rhythm
  (about 1.5 Hz for positive, 0.6 Hz for negative; random amplitude and phase, so no single
  frame tells: the model needs the offsets over time); uninformative videos keep their
  hands at rest (a slow drift);
- image embeddings: a per-subject style vector plus a mixture of label-dependent
  components whose weights drift over time, plus noise (uninformative: neutral components);
- text: a transcript mixing tennis filler words with words from overlapping
  label-dependent vocabularies (uninformative: both vocabularies equally), embedded by the
  profile's real text engine.

The observed label is the clean one flipped with probability ``label_noise``. The best
possible predictor knows the clean label whenever some modality is informative and
otherwise answers the training majority, so its accuracy on the observed labels is known
exactly per video (:func:`best_possible`), for all modalities and for each one alone.
Subjects (and their style) are disjoint between train, val and test: a cross-subject split.

An unlabelled pool (for pseudo-labelling): ``unlabelled_fraction`` of the training
subjects have all their videos stored with ``label=None``, as a real unlabelled video would
be, and the generator's observed label kept in ``meta["hidden_label"]``. Training never
reads that key (it trains on ``label`` only); a simulated teacher and the teacher-agreement
numbers do. Whole subjects, not single videos, so the pool holds people the gold set does
not (a teacher's labels then have to carry over to new people, as they would in practice).
The choice draws from its own random stream, so the features are the same for every
fraction: runs with and without a pool differ only in which labels training sees.

Example:
    >>> spec = SyntheticSpec(videos=12)
    >>> videos = generate(spec, image_dim=8, text_dim=4, image_rate=2.0, keypoint_rate=5.0,
    ...                   embed_texts=lambda texts: np.ones((len(texts), 4), np.float32))
    >>> len(videos)
    12
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import Field

from engines.adapters.openpose_layout import (
    BODY,
    FACE,
    LEFT_HAND,
    LOWER_BODY,
    NUM_KEYPOINTS,
    RIGHT_HAND,
    body_index,
)
from engines.record import Record
from training.features.store import VideoFeatures

MODALITIES = ("image", "keypoints", "text")

TextEmbedFn = Callable[[Sequence[str]], np.ndarray]
"""Texts -> (N, Dtxt) embeddings; in production the profile's text engine."""

POSITIVE_WORDS = ("great", "happy", "proud", "confident", "enjoyed", "fantastic", "pleased",
                  "strong", "won", "excited", "amazing", "grateful", "relieved", "thrilled")
NEGATIVE_WORDS = ("tough", "disappointed", "frustrated", "tired", "lost", "struggled",
                  "unfortunately", "mistakes", "difficult", "painful", "upset", "nervous",
                  "missed", "injury")
FILLER_WORDS = ("the", "match", "today", "serve", "court", "opponent", "set", "point", "crowd",
                "i", "think", "we", "played", "game", "really", "felt", "and", "it", "was",
                "a", "you", "know", "tournament", "next", "round", "ball", "coach", "focus",
                "second", "first", "tiebreak", "conditions", "wind", "return")


class SyntheticSpec(Record):
    """What to generate. Defaults give a cross-subject set that trains in minutes on a CPU."""

    videos: int = 240
    videos_per_subject: int = 4
    positive_fraction: float = 0.7
    label_noise: float = 0.05
    informative: dict[str, float] = Field(
        default_factory=lambda: {"image": 0.65, "keypoints": 0.65, "text": 0.5})
    duration: tuple[float, float] = (30.0, 50.0)
    split_fractions: tuple[float, float, float] = (0.6, 0.1, 0.3)
    """train, val, test, by subject."""
    positive_hz: float = 1.5
    negative_hz: float = 0.6
    seed: int = 0
    unlabelled_fraction: float = 0.0
    """Share of the training subjects whose videos are stored unlabelled (the pool)."""


def generate(spec: SyntheticSpec, *, image_dim: int, text_dim: int, image_rate: float,
             keypoint_rate: float, embed_texts: TextEmbedFn) -> list[VideoFeatures]:
    """Make ``spec.videos`` videos of features at the given analysis rates."""
    if not 0.0 <= spec.unlabelled_fraction <= 1.0:
        raise ValueError(f"unlabelled_fraction is {spec.unlabelled_fraction}; expected 0 to 1")
    rng = np.random.default_rng(spec.seed)
    components = _unit_rows(rng.normal(size=(len(_COMPONENT_SETS["neutral"]) + 5, image_dim)))
    subjects = _subjects(spec, rng, image_dim)
    plans = [_plan_video(spec, rng, index, subjects) for index in range(spec.videos)]
    transcripts = [_transcript(rng, plan) for plan in plans]
    text = np.asarray(embed_texts(transcripts), np.float32)
    if text.shape != (len(plans), text_dim):
        raise ValueError(f"embed_texts returned {text.shape}; expected ({len(plans)}, "
                         f"{text_dim})")
    pool = unlabelled_subjects(spec, subjects)
    videos = []
    for plan, transcript, vector in zip(plans, transcripts, text, strict=True):
        image_times = np.arange(0.0, plan.duration, 1.0 / image_rate)
        keypoint_times = np.arange(0.0, plan.duration, 1.0 / keypoint_rate)
        meta: dict = {"clean_label": plan.clean_label, "informative": plan.informative}
        if plan.subject in pool:
            meta["hidden_label"] = plan.label
        videos.append(VideoFeatures(
            video_id=f"syn{plan.index:04d}",
            label=None if plan.subject in pool else plan.label, subject=plan.subject,
            split=plan.split, duration=plan.duration,
            image_times=image_times,
            image=_image_embeddings(rng, plan, image_times, components, subjects),
            keypoint_times=keypoint_times,
            keypoints=_keypoints(rng, plan, keypoint_times, spec, subjects),
            transcript=transcript, text=vector, meta=meta,
        ))
    return videos


_POOL_STREAM = 1
"""Second seed word of the pool's random stream (the main stream is seeded by the seed alone)."""


def unlabelled_subjects(spec: SyntheticSpec, subjects: dict[str, _Subject]) -> set[str]:
    """The training subjects whose videos form the unlabelled pool.

    Drawn from a random stream of its own (seeded by ``spec.seed``), so that the pool's
    size never changes the features generated from the main stream.
    """
    if spec.unlabelled_fraction <= 0:
        return set()
    train = sorted(name for name, subject in subjects.items() if subject.split == "train")
    count = round(len(train) * spec.unlabelled_fraction)
    chosen = np.random.default_rng([spec.seed, _POOL_STREAM]).choice(len(train), count,
                                                                      replace=False)
    return {train[i] for i in chosen}


@dataclass(frozen=True)
class _Plan:
    index: int
    clean_label: int
    label: int
    subject: str
    split: str
    duration: float
    informative: dict[str, bool]


@dataclass(frozen=True)
class _Subject:
    split: str
    style: np.ndarray
    origin: np.ndarray
    scale: float


def _subjects(spec: SyntheticSpec, rng: np.random.Generator,
              image_dim: int) -> dict[str, _Subject]:
    count = max(3, -(-spec.videos // spec.videos_per_subject))
    train, val, _ = spec.split_fractions
    order = rng.permutation(count)
    n_train, n_val = max(1, round(count * train)), max(1, round(count * val))
    splits = {}
    for rank, subject in enumerate(order):
        splits[subject] = ("train" if rank < n_train else
                           "val" if rank < n_train + n_val else "test")
    return {f"s{i:03d}": _Subject(splits[i], _unit_rows(rng.normal(size=(1, image_dim)))[0],
                                  rng.uniform([400, 250], [880, 400]), rng.uniform(0.7, 1.3))
            for i in range(count)}


def _plan_video(spec: SyntheticSpec, rng: np.random.Generator, index: int,
                subjects: dict[str, _Subject]) -> _Plan:
    subject = f"s{index // spec.videos_per_subject:03d}"
    clean = int(rng.random() < spec.positive_fraction)
    label = 1 - clean if rng.random() < spec.label_noise else clean
    informative = {m: bool(rng.random() < spec.informative[m]) for m in MODALITIES}
    return _Plan(index, clean, label, subject, subjects[subject].split,
                 float(rng.uniform(*spec.duration)), informative)


# -- image embeddings ------------------------------------------------------------------------

_COMPONENT_SETS = {1: (0, 1, 2), 0: (2, 3, 4), "neutral": (5, 6, 7, 8)}
"""Mixture components per clean label (component 2 is shared: the vocabularies overlap)."""


def _image_embeddings(rng: np.random.Generator, plan: _Plan, times: np.ndarray,
                      components: np.ndarray, subjects: dict[str, _Subject]) -> np.ndarray:
    chosen = _COMPONENT_SETS[plan.clean_label if plan.informative["image"] else "neutral"]
    neutral = _COMPONENT_SETS["neutral"]
    dim = components.shape[1]
    # Mixture weights drift: a smooth random walk of logits per component.
    steps = rng.normal(scale=0.35, size=(len(times), len(chosen))).cumsum(axis=0)
    weights = np.exp(steps - steps.max(axis=1, keepdims=True))
    weights /= weights.sum(axis=1, keepdims=True)
    signal = weights @ components[list(chosen)]
    background = rng.dirichlet(np.ones(len(neutral)), size=len(times)) @ components[list(neutral)]
    noise = rng.normal(scale=1.0 / np.sqrt(dim), size=(len(times), dim))
    style = subjects[plan.subject].style
    return (0.9 * style + 1.1 * signal + 0.6 * background + noise).astype(np.float32)


# -- keypoints ---------------------------------------------------------------------------------

def _template() -> np.ndarray:
    """A seated, front-facing speaker in unit coordinates (shoulder width 1, neck at 0)."""
    points = np.zeros((NUM_KEYPOINTS, 2))
    body = {"Nose": (0, -0.95), "Neck": (0, 0), "RShoulder": (-0.5, 0.05),
            "RElbow": (-0.7, 0.75), "RWrist": (-0.35, 1.25), "LShoulder": (0.5, 0.05),
            "LElbow": (0.7, 0.75), "LWrist": (0.35, 1.25), "REye": (-0.12, -1.1),
            "LEye": (0.12, -1.1), "REar": (-0.3, -1.0), "LEar": (0.3, -1.0),
            "MidHip": (0, 1.9)}
    for name, xy in body.items():
        points[body_index(name)] = xy
    angles = np.linspace(0, 2 * np.pi, FACE.stop - FACE.start, endpoint=False)
    points[FACE] = np.stack([0.3 * np.cos(angles), -0.95 + 0.38 * np.sin(angles)], axis=1)
    fan = np.linspace(-0.6, 0.6, 21)
    for hand, wrist in ((RIGHT_HAND, "RWrist"), (LEFT_HAND, "LWrist")):
        reach = np.r_[0.0, np.tile(np.arange(1, 5) * 0.05, 5)]
        points[hand] = points[body_index(wrist)] + np.stack(
            [np.sin(fan) * reach, np.cos(fan) * reach], axis=1)
    return points


_TEMPLATE = _template()
_ARMS = [body_index(n) for n in ("RWrist", "LWrist")] + list(range(LEFT_HAND.start,
                                                                   RIGHT_HAND.stop))
_ELBOWS = [body_index("RElbow"), body_index("LElbow")]


def _keypoints(rng: np.random.Generator, plan: _Plan, times: np.ndarray, spec: SyntheticSpec,
               subjects: dict[str, _Subject]) -> np.ndarray:
    n = len(times)
    motion = np.zeros((n, 2))
    if plan.informative["keypoints"]:
        hz = spec.positive_hz if plan.clean_label == 1 else spec.negative_hz
        hz *= rng.uniform(0.9, 1.1)
        amplitude = rng.uniform(0.2, 0.4)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(2 * np.pi * hz * times + phase)
        motion[:, 1] = amplitude * wave * _bursts(rng, times)
        motion[:, 0] = 0.3 * amplitude * wave * _bursts(rng, times)
    else:
        # Hands rest, drifting slowly (a few hundredths of a shoulder width per second).
        walk = rng.normal(scale=0.01, size=(n, 2)).cumsum(axis=0)
        motion = np.clip(walk - walk.mean(axis=0), -0.1, 0.1)
    frames = np.repeat(_TEMPLATE[None], n, axis=0)
    frames[:, _ARMS] += motion[:, None, :]
    frames[:, _ELBOWS] += 0.5 * motion[:, None, :]
    frames[:, FACE] += rng.normal(scale=0.02, size=(n, 1, 2))  # small head movement
    frames += rng.normal(scale=0.015, size=frames.shape)
    subject = subjects[plan.subject]
    pixels = frames * 160.0 * subject.scale + subject.origin
    confidence = np.empty((n, NUM_KEYPOINTS))
    confidence[:, BODY] = rng.uniform(0.5, 0.95, size=(n, BODY.stop))
    confidence[:, FACE] = rng.uniform(0.6, 0.95, size=(n, FACE.stop - FACE.start))
    confidence[:, LEFT_HAND.start:] = rng.uniform(0.15, 0.6, size=(n, 42))
    confidence[:, list(LOWER_BODY)] = 0.0
    confidence[rng.random(n) < 0.03] = 0.0  # the speaker briefly out of view
    out = np.concatenate([pixels, confidence[..., None]], axis=2)
    out[confidence == 0.0] = 0.0
    return out.astype(np.float32)


def _bursts(rng: np.random.Generator, times: np.ndarray) -> np.ndarray:
    """1 while gesturing, 0 between: bursts of 3-8 s with 1-4 s pauses, smoothed edges."""
    envelope = np.zeros(len(times))
    t, on = rng.uniform(0, 3), True
    end = times[-1] if len(times) else 0.0
    while t < end:
        length = rng.uniform(3, 8) if on else rng.uniform(1, 4)
        if on:
            envelope[(times >= t) & (times < t + length)] = 1.0
        t, on = t + length, not on
    return envelope


# -- text --------------------------------------------------------------------------------------

def _transcript(rng: np.random.Generator, plan: _Plan, words: int = 40) -> str:
    """Filler words with label words; informative: mostly the label's vocabulary."""
    own, other = ((POSITIVE_WORDS, NEGATIVE_WORDS) if plan.clean_label == 1
                  else (NEGATIVE_WORDS, POSITIVE_WORDS))
    p_own = 0.9 if plan.informative["text"] else 0.5
    out = []
    for _ in range(words):
        if rng.random() < 0.5:
            vocabulary = own if rng.random() < p_own else other
        else:
            vocabulary = FILLER_WORDS
        out.append(vocabulary[rng.integers(len(vocabulary))])
    return " ".join(out)


# -- the ceiling -------------------------------------------------------------------------------

def best_possible(videos: Sequence[VideoFeatures], majority: int,
                  modalities: Sequence[str] = MODALITIES) -> float:
    """Accuracy on the observed labels of the best predictor that sees ``modalities``.

    It recovers the clean label when any of them is informative and otherwise answers
    ``majority`` (the training set's majority class). Videos without generator metadata
    are refused: only synthetic data has a known ceiling.
    """
    if not videos:
        raise ValueError("best_possible: no videos")
    correct = 0
    for video in videos:
        if "clean_label" not in video.meta:
            raise ValueError(f"video {video.video_id} has no generator metadata (not synthetic)")
        informative = any(video.meta["informative"][m] for m in modalities)
        guess = video.meta["clean_label"] if informative else majority
        correct += int(guess == video.label)
    return correct / len(videos)


def expected_best_possible(spec: SyntheticSpec,
                           modalities: Sequence[str] = MODALITIES) -> float:
    """The same ceiling in expectation over the generator (for an infinite test set)."""
    uninformative = float(np.prod([1 - spec.informative[m] for m in modalities]))
    eps, prior = spec.label_noise, spec.positive_fraction
    observed_positive = prior * (1 - eps) + (1 - prior) * eps
    return (1 - uninformative) * (1 - eps) + uninformative * max(observed_positive,
                                                                 1 - observed_positive)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
