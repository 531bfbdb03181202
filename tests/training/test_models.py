"""The window classifier module: shapes, masks, in-model offsets, modality dropout, checkpoints."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engines.adapters.openpose_layout import (
    NUM_KEYPOINTS,
    SKELETON_EDGES,
)
from engines.profiles import get_profile
from training.models import (
    ClassifierConfig,
    HiddenEmotionClassifier,
    drop_modalities,
    load_checkpoint,
    save_checkpoint,
    window_latency_ms,
)
from training.models.classifier import example_inputs
from training.models.keypoints import normalized_adjacency, point_features

TINY = get_profile("tiny")


def _config(**overrides: object) -> ClassifierConfig:
    return ClassifierConfig.from_profile(TINY, **overrides)


def _model(**overrides: object) -> HiddenEmotionClassifier:
    torch.manual_seed(0)
    return HiddenEmotionClassifier(_config(**overrides)).eval()


def test_config_from_profile_and_roundtrip() -> None:
    config = _config()
    assert (config.image_dim, config.text_dim) == (TINY.image.dim, TINY.text.dim)
    assert (config.d_model, config.layers, config.heads) == (32, 1, 2)
    assert ClassifierConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown ClassifierConfig fields"):
        ClassifierConfig.from_dict({**config.to_dict(), "d_modle": 8})
    with pytest.raises(ValueError, match="divisible"):
        _config(d_model=30, heads=4)
    with pytest.raises(ValueError, match="keypoint_encoder"):
        _config(keypoint_encoder="lstm")


@pytest.mark.parametrize("encoder", ["mlp", "gcn"])
def test_shapes_and_probabilities(encoder: str) -> None:
    model = _model(keypoint_encoder=encoder)
    logits, probs = model(*example_inputs(model.config, batch=3, image_seq=7, keypoint_seq=11))
    assert logits.shape == probs.shape == (3, 2)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(3))
    counts = model.count_parameters()
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total") > 0


@pytest.mark.parametrize("encoder", ["mlp", "gcn"])
def test_everything_masked_is_finite_and_uses_missing_vectors(encoder: str) -> None:
    model = _model(keypoint_encoder=encoder)
    inputs = [t * 0 for t in example_inputs(model.config, batch=2, image_seq=4,
                                            keypoint_seq=6)]
    logits, probs = model(*inputs)
    assert torch.isfinite(logits).all() and torch.isfinite(probs).all()
    # With every mask at zero, the content behind the masks must not matter.
    noisy = [t + 5.0 if i % 2 == 0 else t for i, t in enumerate(inputs)]
    torch.testing.assert_close(model(*noisy)[0], logits)
    # Training mode (modality dropout on nothing present) is finite too, gradients included.
    model.train()
    loss = model(*inputs)[0].sum()
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_offsets_are_computed_in_the_model() -> None:
    keypoints = torch.rand(1, 5, NUM_KEYPOINTS, 3) + 0.1
    static = keypoints[:, :1].expand(1, 5, NUM_KEYPOINTS, 3)
    mask = torch.ones(1, 5)
    points = point_features(static, mask)
    assert points.shape == (1, 5, NUM_KEYPOINTS, 5)
    assert torch.count_nonzero(points[..., 3:]) == 0, "a static pose moves nowhere"

    moving = static.clone()
    moving[:, 2:, :, 0] += 0.5  # everything steps right at t=2
    offsets = point_features(moving, mask)[..., 3:]
    assert torch.allclose(offsets[:, 2, :, 0], torch.full((1, NUM_KEYPOINTS), 0.5))
    assert torch.count_nonzero(offsets[:, [0, 1, 3, 4]]) == 0

    gap = mask.clone()
    gap[0, 2] = 0  # the frame of the step is masked: no offset into it nor out of it
    offsets = point_features(moving, gap)[..., 3:]
    assert torch.count_nonzero(offsets) == 0

    vanished = moving.clone()
    vanished[:, 2, 0] = 0.0  # joint 0 not seen at t=2: no jump from the origin
    offsets = point_features(vanished, mask)[..., 3:]
    assert torch.count_nonzero(offsets[:, 2:4, 0]) == 0
    assert torch.count_nonzero(offsets[:, 2, 1:, 0]) == NUM_KEYPOINTS - 1


def test_masked_slots_do_not_change_the_output_present_ones_do() -> None:
    model = _model()
    image, image_mask, keypoints, keypoints_mask, text, text_mask = example_inputs(
        model.config, batch=1, image_seq=6, keypoint_seq=8)
    image_mask[0, 4:] = 0
    keypoints_mask[0, 5:] = 0
    base = model(image, image_mask, keypoints, keypoints_mask, text, text_mask)[0]

    junk_image, junk_kp = image.clone(), keypoints.clone()
    junk_image[0, 4:] = 100.0
    junk_kp[0, 5:] = 100.0
    torch.testing.assert_close(
        model(junk_image, image_mask, junk_kp, keypoints_mask, text, text_mask)[0], base)
    torch.testing.assert_close(
        model(image, image_mask, keypoints, keypoints_mask, text + 3.0, text_mask * 0)[0],
        model(image, image_mask, keypoints, keypoints_mask, text, text_mask * 0)[0])

    unmasked = keypoints_mask.clone()
    unmasked[0, 5] = 1
    assert not torch.allclose(
        model(image, image_mask, keypoints, unmasked, text, text_mask)[0], base)
    assert not torch.allclose(
        model(image, image_mask, keypoints, keypoints_mask, text, text_mask * 0)[0], base)


def test_modality_dropout_never_drops_every_present_modality() -> None:
    generator = torch.Generator().manual_seed(0)
    batch = 4000
    image = torch.ones(batch, 3)
    keypoints = torch.ones(batch, 5)
    text = torch.ones(batch, 1)
    text[::2] = 0  # half the windows have no transcript to begin with
    keypoints[::3] = 0
    dropped = drop_modalities([image, keypoints, text], 0.9, generator)
    here = torch.stack([m.amax(dim=1) for m in dropped], dim=1)
    assert (here.sum(dim=1) >= 1).all(), "every window keeps a modality"
    before = torch.stack([m.amax(dim=1) for m in (image, keypoints, text)], dim=1)
    assert (here <= before).all(), "an absent modality never appears"
    assert (here < before).any(), "dropout did drop something"
    nothing = drop_modalities([image * 0, keypoints * 0, text * 0], 0.9, generator)
    assert all(torch.count_nonzero(m) == 0 for m in nothing)

    model = _model(modality_dropout=0.5).train()
    inputs = example_inputs(model.config, batch=8, image_seq=3, keypoint_seq=4)
    assert torch.isfinite(model(*inputs)[0]).all()
    model.eval()
    torch.testing.assert_close(model(*inputs)[0], model(*inputs)[0])


def test_gcn_adjacency_is_normalised_and_symmetric() -> None:
    adjacency = normalized_adjacency()
    assert adjacency.shape == (NUM_KEYPOINTS, NUM_KEYPOINTS)
    torch.testing.assert_close(adjacency, adjacency.T)
    i, j = SKELETON_EDGES[0]
    assert adjacency[i, j] > 0 and adjacency[0, 100] == 0


@pytest.mark.parametrize("encoder", ["mlp", "gcn"])
def test_checkpoint_roundtrip(tmp_path: Path, encoder: str) -> None:
    model = _model(keypoint_encoder=encoder)
    extra = {"window": {"window_seconds": 4.0, "image_rate": 2.0, "keypoint_rate": 5.0},
             "trained": {"epochs": 3}}
    folder = save_checkpoint(model, model.config, tmp_path / "ckpt", extra)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    loaded, config, got_extra = load_checkpoint(folder)
    assert config == model.config and got_extra == extra and not loaded.training
    inputs = example_inputs(config, batch=2, image_seq=5, keypoint_seq=7)
    torch.testing.assert_close(loaded(*inputs)[0], model(*inputs)[0])
    with pytest.raises(FileNotFoundError, match="hidemo train"):
        load_checkpoint(tmp_path / "nowhere")


def test_window_latency_is_measured_in_eval_mode() -> None:
    model = _model().train()
    ms = window_latency_ms(model, image_slots=8, keypoint_slots=20, repeats=3, warmup=1)
    assert 0 < ms < 5000
    assert model.training, "the caller's mode is restored"
