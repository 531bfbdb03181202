"""The synthetic generator: its ceiling is what it claims, its splits are cross-subject, and
its label really lives in the temporal patterns (a hand-made feature recovers it)."""

from __future__ import annotations

import numpy as np
import pytest

from engines.adapters.openpose_layout import LEFT_HAND, RIGHT_HAND
from engines.adapters.windows import normalize_keypoints
from training.data.synthetic import (
    SyntheticSpec,
    best_possible,
    expected_best_possible,
    generate,
)


def _bag_of_words(texts):
    vocabulary: dict[str, int] = {}
    rows = []
    for text in texts:
        row = np.zeros(64, np.float32)
        for word in text.split():
            row[vocabulary.setdefault(word, len(vocabulary)) % 64] += 1
        rows.append(row)
    return np.stack(rows)


def _videos(count: int, seed: int = 0, duration=(10.0, 12.0)):
    spec = SyntheticSpec(videos=count, seed=seed, duration=duration)
    return spec, generate(spec, image_dim=16, text_dim=64, image_rate=2.0, keypoint_rate=10.0,
                          embed_texts=_bag_of_words)


def test_shapes_rates_and_determinism():
    _, first = _videos(8)
    _, again = _videos(8)
    video = first[0]
    assert video.image.shape == (len(video.image_times), 16)
    assert video.keypoints.shape == (len(video.keypoint_times), 137, 3)
    assert np.allclose(np.diff(video.keypoint_times), 0.1)
    assert np.allclose(np.diff(video.image_times), 0.5)
    assert video.text is not None and video.transcript
    assert np.array_equal(video.keypoints, again[0].keypoints)
    assert np.array_equal(video.image, again[0].image)


def test_subjects_never_cross_splits():
    _, videos = _videos(60)
    splits_of: dict[str, set[str]] = {}
    for video in videos:
        splits_of.setdefault(video.subject, set()).add(video.split)
    assert all(len(s) == 1 for s in splits_of.values())
    assert {v.split for v in videos} == {"train", "val", "test"}


def test_ceiling_matches_its_formula_on_a_large_set():
    spec, videos = _videos(1500, duration=(1.0, 1.5))
    for modalities in (("image", "keypoints", "text"), ("keypoints",), ("text",)):
        measured = best_possible(videos, majority=1, modalities=modalities)
        assert measured == pytest.approx(expected_best_possible(spec, modalities), abs=0.03)
    assert best_possible(videos, 1) > best_possible(videos, 1, ["image"])


def test_ceiling_refuses_real_data():
    _, videos = _videos(2)
    videos[0].meta = {}
    with pytest.raises(ValueError, match="not synthetic"):
        best_possible(videos, 1)


def _hand_speed(video) -> float:
    """Mean hand displacement between consecutive frames where the speaker is in view."""
    hands = normalize_keypoints(video.keypoints)[:, LEFT_HAND.start:RIGHT_HAND.stop]
    seen = hands[:, :, 2].max(axis=1) > 0
    both = seen[1:] & seen[:-1]
    return float(np.abs(np.diff(hands[..., :2], axis=0))[both].mean())


def test_gesture_rhythm_carries_the_clean_label():
    """Hand speed alone separates positive rhythm, negative rhythm and resting hands."""
    _, videos = _videos(80, duration=(20.0, 25.0))
    speeds = {(v.meta["informative"]["keypoints"], v.meta["clean_label"]): [] for v in videos}
    for video in videos:
        key = (video.meta["informative"]["keypoints"], video.meta["clean_label"])
        speeds[key].append(_hand_speed(video))
    positive = np.mean(speeds[(True, 1)])
    negative = np.mean(speeds[(True, 0)])
    resting = np.mean(speeds[(False, 0)] + speeds[(False, 1)])
    assert positive > 1.5 * negative > 1.5 * resting
