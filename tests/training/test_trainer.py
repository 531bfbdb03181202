"""The fit loop: embedding jitter, the training device, and resuming a killed fit from
``state.pt`` (which loads as data, ``weights_only=True``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from engines.profiles import get_profile
from training import trainer
from training.data import synthetic
from training.models import ClassifierConfig, HiddenEmotionClassifier
from training.trainer import FitSettings, fit, jitter, predict, resolve_device, window_tensors
from training.windows import WindowSet, WindowSpec, cut_windows


def _windows(videos: int = 16) -> WindowSet:
    profile = get_profile("tiny")
    spec = synthetic.SyntheticSpec(videos=videos, duration=(6.0, 8.0))
    data = synthetic.generate(
        spec, image_dim=profile.image.dim, text_dim=profile.text.dim,
        image_rate=profile.classifier.image_rate, keypoint_rate=profile.classifier.keypoint_rate,
        embed_texts=lambda texts: np.random.default_rng(0).normal(
            size=(len(texts), profile.text.dim)).astype(np.float32))
    window = WindowSpec(profile.classifier.window_seconds, profile.classifier.image_rate,
                        profile.classifier.keypoint_rate)
    return cut_windows(data, window, profile.image.dim, profile.text.dim, stride=2.0)


def _model() -> HiddenEmotionClassifier:
    torch.manual_seed(0)
    return HiddenEmotionClassifier(ClassifierConfig.from_profile(get_profile("tiny")))


def test_jitter_shifts_each_window_by_one_offset_and_leaves_masked_slots() -> None:
    feeds = window_tensors(_windows())
    feeds["image_mask"][0, -1] = 0.0
    feeds["image"][0, -1] = 0.0
    torch.manual_seed(1)
    out = jitter(feeds, 0.5)
    assert {k: v.shape for k, v in out.items()} == {k: v.shape for k, v in feeds.items()}
    shift = out["image"] - feeds["image"]
    present = feeds["image_mask"][0] > 0
    first = shift[0][present]
    # one offset per window: every present frame moved by the same vector
    assert torch.allclose(first, first[:1].expand_as(first), atol=1e-6)
    assert float(first[0].norm()) > 0
    assert torch.equal(out["image"][0, -1], feeds["image"][0, -1])  # masked slot untouched
    assert not torch.allclose(shift[0, 0], shift[1, 0])  # windows get their own offsets
    assert torch.equal(out["keypoints"], feeds["keypoints"])  # keypoints are not embeddings
    assert not torch.equal(out["text"], feeds["text"])


def test_jitter_size_is_relative_to_the_embeddings_norm() -> None:
    feeds = window_tensors(_windows())
    scaled = dict(feeds, image=feeds["image"] * 100.0)
    torch.manual_seed(2)
    small = (jitter(feeds, 0.5)["image"] - feeds["image"]).norm()
    torch.manual_seed(2)
    large = (jitter(scaled, 0.5)["image"] - scaled["image"]).norm()
    assert float(large / small) == pytest.approx(100.0, rel=1e-3)
    assert jitter(feeds, 0.0) is feeds


def test_cuda_device_without_cuda_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"sees no CUDA device.*--device cpu"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device and torch build")
def test_fit_on_cuda_returns_a_cpu_model_that_agrees_with_itself_on_cuda() -> None:
    windows = _windows()
    model = _model()
    history = fit(model, windows, FitSettings(epochs=2, lr=1e-3, device="cuda",
                                              embedding_jitter=0.5), ("image", "keypoints"))
    assert len(history) == 2 and all(np.isfinite(row["train_loss"]) for row in history)
    assert all(p.device.type == "cpu" for p in model.parameters())
    on_cpu = predict(model, windows)
    on_gpu = predict(model.to("cuda"), windows)
    assert np.abs(on_cpu - on_gpu).max() < 1e-4


RESUME_SETTINGS = FitSettings(epochs=3, lr=1e-3)
RESUME_MODALITIES = ("image", "keypoints")


class Killed(Exception):
    """Stands in for a kill right after an epoch's state was written."""


def test_a_killed_fit_resumes_to_the_same_model(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    windows = _windows()
    straight = _model()
    straight_history = fit(straight, windows, RESUME_SETTINGS, RESUME_MODALITIES, val=windows,
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
        fit(_model(), windows, RESUME_SETTINGS, RESUME_MODALITIES, val=windows,
            state_path=state_path)
    state = torch.load(state_path, weights_only=True)  # data only: no pickled objects
    assert state["epoch"] == 2 and type(state["history"][0]["numpy_value"]) is float

    monkeypatch.setattr(trainer, "_save_state", save)
    resumed = _model()
    history = fit(resumed, windows, RESUME_SETTINGS, RESUME_MODALITIES, val=windows,
                  state_path=state_path)
    assert saved == [1, 2] and [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["train_loss"] == pytest.approx(straight_history[-1]["train_loss"])
    for name, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[name], value)
