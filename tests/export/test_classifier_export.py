"""The window classifier engine: dynamic-length export, checkpoint tracking, int8 variant."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engines.adapters.classifier import CLASSIFIER_NAME, WINDOW_KEYS, WindowClassifier
from engines.adapters.windows import build_window
from engines.backends.onnxruntime import OnnxRuntimeEngine
from engines.backends.torch_eager import TorchEngine
from engines.cli import list_engines
from engines.engine import Backend
from engines.manifest import EngineRefused, EngineStale, read_manifest
from engines.profiles import get_profile
from engines.runtime import load_engine
from engines.sources import WeightsLocator
from engines.sources.mediapipe import KEYPOINT_ENGINES
from export.build import build_profile
from export.classifier import (
    CLASSIFIER_INT8_NAME,
    INT8_TOLERANCE,
    build_classifier_source,
    checkpoint_dir,
    int8_drift,
)
from export.onnx_export import export_onnx
from export.parity import FP32_TOLERANCE, compare

pytestmark = pytest.mark.slow

TINY = get_profile("tiny")


def _save_classifier(weights: Path, seed: int, encoder: str = "mlp") -> Path:
    import torch

    from training.models import ClassifierConfig, HiddenEmotionClassifier, save_checkpoint

    torch.manual_seed(seed)
    config = ClassifierConfig.from_profile(TINY, keypoint_encoder=encoder)
    window = {"window_seconds": 3.0, "image_rate": 2.0, "keypoint_rate": 4.0}
    return save_checkpoint(HiddenEmotionClassifier(config), config,
                           checkpoint_dir(WeightsLocator(weights), TINY.name),
                           {"window": window, "trained": {"seed": seed}})


def _window(seed: int, seconds: float = 3.0, with_text: bool = True):
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(100, 300, (12, 137, 3)).astype(np.float32)
    keypoints[..., 2] = 0.9
    return build_window(
        end=10.0, window_seconds=seconds, image_rate=2.0, keypoint_rate=4.0,
        image_times=np.array([7.2, 8.1, 9.6]), image=rng.standard_normal((3, 96)),
        keypoint_times=np.linspace(7.0, 9.9, 12), keypoints=keypoints,
        text=rng.standard_normal(64) if with_text else None, image_dim=96, text_dim=64)


@pytest.mark.parametrize("encoder", ["mlp", "gcn"])
def test_export_is_dynamic_in_both_sequence_lengths(tmp_path: Path, encoder: str) -> None:
    weights = tmp_path / "weights"
    if encoder == "gcn":
        _save_classifier(weights, seed=3, encoder="gcn")
    source = build_classifier_source(TINY, WeightsLocator(weights))
    path = export_onnx(source, tmp_path / "classifier.onnx")
    reference = TorchEngine("c", source.module, source.signature, random_weights=True)
    candidate = OnnxRuntimeEngine("c", path, source.signature, random_weights=True)
    lengths = set()
    for sizes in source.parity_shapes:
        feeds = source.sample_feeds(sizes)
        assert feeds["keypoints_mask"].min() == 0 and feeds["image_mask"].min() == 0
        result = compare(reference, candidate, [feeds], FP32_TOLERANCE)
        assert result.passed, (sizes, result.max_abs_diff)
        lengths.add(sizes["image_seq"])
    assert lengths == {16, 64, 256}
    batch3 = source.sample_feeds({"batch": 3, "image_seq": 16, "keypoint_seq": 16})
    assert batch3["keypoints_mask"][1].max() == 0 and batch3["text_mask"][2].max() == 0


def test_profile_build_makes_a_classifier_the_adapter_runs(tiny_engine_dir: Path) -> None:
    manifest = read_manifest(tiny_engine_dir, CLASSIFIER_NAME)
    assert manifest.parity.passed and manifest.parity.tolerance == FP32_TOLERANCE
    assert len(manifest.parity.shapes_checked) == 4
    assert manifest.random_weights and set(WINDOW_KEYS) <= set(manifest.preprocess)
    classifier = WindowClassifier.from_engine_dir(tiny_engine_dir)
    assert (classifier.window_seconds, classifier.keypoint_rate) == (4.0, 5.0)
    batch = _window(1, seconds=4.0)
    predictions = classifier.classify(batch)
    assert predictions.probs.shape == (1, 2) and predictions.random_weights
    assert np.isfinite(predictions.probs).all()
    with pytest.raises(EngineRefused, match="onnxruntime"):
        load_engine(tiny_engine_dir, CLASSIFIER_NAME, Backend.TORCH)


def test_new_checkpoint_makes_exactly_the_classifier_stale(tiny_engine_dir: Path,
                                                           tmp_path: Path) -> None:
    from training.models import load_checkpoint

    engine_dir = tmp_path / "engines"
    shutil.copytree(tiny_engine_dir, engine_dir)
    weights = tmp_path / "weights"
    folder = _save_classifier(weights, seed=1)
    locator = WeightsLocator(weights)
    outcomes = build_profile(TINY, engine_dir, locator=locator)
    assert {o.name: o.action for o in outcomes} == {
        "detector": "up-to-date", "image_embedder": "up-to-date",
        "text_embedder": "up-to-date", "classifier": "built",
        **dict.fromkeys(KEYPOINT_ENGINES, "up-to-date")}
    manifest = read_manifest(engine_dir, CLASSIFIER_NAME)
    assert manifest.source.kind == "checkpoint" and Path(manifest.source.path) == folder.resolve()
    assert manifest.preprocess["window_seconds"] == 3.0, "the checkpoint's window spec wins"

    _save_classifier(weights, seed=2)  # "retrained"
    states = {row["name"]: row["state"] for row in list_engines(engine_dir)}
    assert states == {"detector": "random-weights", "image_embedder": "random-weights",
                      "text_embedder": "random-weights", "classifier": "stale",
                      **dict.fromkeys(KEYPOINT_ENGINES, "ok")}
    with pytest.raises(EngineStale, match="changed since") as refused:
        load_engine(engine_dir, CLASSIFIER_NAME)
    assert "hidemo engines build --profile tiny" in str(refused.value)

    outcomes = build_profile(TINY, engine_dir, locator=locator)
    assert [o.name for o in outcomes if o.action == "built"] == ["classifier"]
    assert all(o.action == "up-to-date" for o in outcomes if o.name != "classifier")
    classifier = WindowClassifier.from_engine_dir(engine_dir)
    assert not classifier.random_weights
    batch = _window(2, with_text=False)
    model, _, _ = load_checkpoint(folder)
    want = TorchEngine("c", model, classifier.engine.signature,
                       random_weights=False).run(batch.feeds())["probs"]
    np.testing.assert_allclose(classifier.classify(batch).probs, want, atol=1e-5)
    assert sorted(p.name for p in engine_dir.glob("classifier-*.onnx")) == [
        read_manifest(engine_dir, CLASSIFIER_NAME).onnx_file]


def test_checkpoint_for_another_profile_is_refused(tmp_path: Path) -> None:
    import torch

    from training.models import ClassifierConfig, HiddenEmotionClassifier, save_checkpoint

    config = ClassifierConfig(image_dim=384, text_dim=384, d_model=16, layers=1, heads=2)
    torch.manual_seed(0)
    save_checkpoint(HiddenEmotionClassifier(config), config, tmp_path / "classifier" / "tiny")
    with pytest.raises(ValueError, match="another profile"):
        build_classifier_source(TINY, WeightsLocator(tmp_path))


def test_int8_engine_is_built_on_request_and_measured(tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    _save_classifier(weights, seed=4)
    engine_dir = tmp_path / "engines"
    outcomes = build_profile(TINY, engine_dir, locator=WeightsLocator(weights),
                             roles=["classifier"], int8=True)
    assert [(o.name, o.action) for o in outcomes] == [
        ("classifier", "built"), (CLASSIFIER_INT8_NAME, "built")]
    manifest = read_manifest(engine_dir, CLASSIFIER_INT8_NAME)
    assert manifest.precision == "int8" and manifest.parity.tolerance == INT8_TOLERANCE
    assert manifest.parity.passed and set(manifest.parity.max_abs_diff) == {"probs"}
    assert manifest.config["quantization"]["weight_type"] == "QUInt8"
    assert read_manifest(engine_dir, CLASSIFIER_NAME).precision == "fp32"

    fp32 = WindowClassifier.from_engine_dir(engine_dir)
    int8 = WindowClassifier.from_engine_dir(engine_dir, name=CLASSIFIER_INT8_NAME)
    batches = [_window(seed).feeds() for seed in range(4)]
    labels = [np.array([seed % 2]) for seed in range(4)]
    drift = int8_drift(fp32.engine, int8.engine, batches, labels)
    assert drift["windows"] == 4 and drift["max_prob_diff"] <= INT8_TOLERANCE
    assert {"accuracy_fp32", "accuracy_int8", "accuracy_drop", "decision_flips"} <= set(drift)

    again = build_profile(TINY, engine_dir, locator=WeightsLocator(weights),
                          roles=["classifier"], int8=True)
    assert [o.action for o in again] == ["up-to-date", "up-to-date"]
    states = {row["name"]: row["state"] for row in list_engines(engine_dir)}
    assert states[CLASSIFIER_NAME] == states[CLASSIFIER_INT8_NAME] == "ok"


def test_cli_builds_only_the_classifier_and_its_int8(tmp_path: Path) -> None:
    from hidemo.cli import main

    engine_dir = tmp_path / "engines"
    code = main(["engines", "build", "--profile", "tiny", "--engine-dir", str(engine_dir),
                 "--weights-dir", str(tmp_path / "w"), "--only", "classifier", "--int8"])
    assert code == 0
    assert sorted(p.name for p in engine_dir.glob("*.manifest.json")) == [
        "classifier.manifest.json", "classifier_int8.manifest.json"]
