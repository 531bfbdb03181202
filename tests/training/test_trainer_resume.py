"""A killed fit resumes from ``state.pt``, which loads as data (``weights_only=True``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engines.profiles import get_profile
from training import trainer
from training.data import synthetic
from training.models import ClassifierConfig, HiddenEmotionClassifier
from training.trainer import FitSettings, fit
from training.windows import WindowSet, WindowSpec, cut_windows

SETTINGS = FitSettings(epochs=3, lr=1e-3)
MODALITIES = ("image", "keypoints")


def _windows() -> WindowSet:
    profile = get_profile("tiny")
    data = synthetic.generate(
        synthetic.SyntheticSpec(videos=16, duration=(6.0, 8.0)), image_dim=profile.image.dim,
        text_dim=profile.text.dim, image_rate=profile.classifier.image_rate,
        keypoint_rate=profile.classifier.keypoint_rate,
        embed_texts=lambda texts: np.random.default_rng(0).normal(
            size=(len(texts), profile.text.dim)).astype(np.float32))
    window = WindowSpec(profile.classifier.window_seconds, profile.classifier.image_rate,
                        profile.classifier.keypoint_rate)
    return cut_windows(data, window, profile.image.dim, profile.text.dim, stride=2.0)


def _model() -> HiddenEmotionClassifier:
    torch.manual_seed(0)
    return HiddenEmotionClassifier(ClassifierConfig.from_profile(get_profile("tiny")))


class Killed(Exception):
    """Stands in for a kill right after an epoch's state was written."""


def test_a_killed_fit_resumes_to_the_same_model(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    windows = _windows()
    straight = _model()
    straight_history = fit(straight, windows, SETTINGS, MODALITIES, val=windows,
                           state_path=tmp_path / "straight.pt")

    save = trainer._save_state
    saved: list[int] = []

    def save_then_die(path: Path, state: dict) -> None:
        state["history"][-1]["numpy_value"] = np.float32(0.5)  # must be stored as a float
        save(path, state)
        saved.append(state["epoch"])
        if state["epoch"] == 2:
            raise Killed

    monkeypatch.setattr(trainer, "_save_state", save_then_die)
    state_path = tmp_path / "killed.pt"
    with pytest.raises(Killed):
        fit(_model(), windows, SETTINGS, MODALITIES, val=windows, state_path=state_path)
    state = torch.load(state_path, weights_only=True)  # data only: no pickled objects
    assert state["epoch"] == 2 and type(state["history"][0]["numpy_value"]) is float

    monkeypatch.setattr(trainer, "_save_state", save)
    resumed = _model()
    history = fit(resumed, windows, SETTINGS, MODALITIES, val=windows, state_path=state_path)
    assert saved == [1, 2] and [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["train_loss"] == pytest.approx(straight_history[-1]["train_loss"])
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value)
