"""`hidemo train` end to end on synthetic data (tiny profile): metrics, resume, install,
and the sanity check that the same recipe on shuffled labels scores near chance."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hidemo.cli import main

pytestmark = pytest.mark.slow

QUICK = ["--profile", "tiny", "--seeds", "0", "--synthetic-videos", "120",
         "--stage1-epochs", "10", "--stage2-epochs", "5", "--threads", "2"]


def _train(engine_dir: Path, out: Path, weights: Path, *extra: str) -> dict:
    code = main(["train", "--out", str(out), "--engine-dir", str(engine_dir),
                 "--weights-dir", str(weights), *QUICK, *extra])
    assert code == 0
    return json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def trained(tiny_engine_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("train")
    out, weights = root / "run", root / "weights"
    return out, weights, _train(tiny_engine_dir, out, weights)


def test_metrics_cover_every_stage_modality_seed_and_level(trained):
    out, _, metrics = trained
    assert set(metrics["stage1"]) == {"image", "keypoints", "text"}
    runs = [*metrics["stage1"].values(), metrics["stage2"]["all"]]
    for run in runs:
        assert set(run["seeds"]) == {"0"}
        for level in ("window", "video"):
            block = run["seeds"]["0"]["test"][level]
            assert set(block) >= {"accuracy", "balanced_accuracy", "macro_f1", "roc_auc"}
            summary = run["test"][level]["accuracy"]
            assert summary["n"] == 1 and summary["mean"] == block["accuracy"]
    ceiling = metrics["best_possible"]["video_accuracy"]
    assert set(ceiling) == {"all", "image", "keypoints", "text"}
    assert ceiling["all"] >= max(ceiling["image"], ceiling["keypoints"], ceiling["text"])
    assert metrics["model"]["parameters"]["total"] > 0
    assert metrics["model"]["cpu_ms_per_window"] > 0
    assert (out / "learning_curves.png").stat().st_size > 10_000
    assert json.loads((out / "config.json").read_text())["config"]["profile"] == "tiny"


def test_stage_two_learns_the_synthetic_label(trained):
    _, _, metrics = trained
    video = metrics["stage2"]["all"]["seeds"]["0"]["test"]["video"]
    assert video["balanced_accuracy"] > 0.7
    assert video["roc_auc"] > 0.8


def test_install_puts_the_chosen_model_where_engines_build_looks(trained):
    _, weights, metrics = trained
    folder = weights / "classifier" / "tiny"
    assert metrics["installed"]["path"] == str(folder)
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    saved = json.loads((folder / "config.json").read_text())
    assert "window" in json.dumps(saved)


def test_rerun_resumes_finished_runs_and_refuses_other_settings(trained, tiny_engine_dir):
    out, weights, metrics = trained
    again = _train(tiny_engine_dir, out, weights, "--no-install")
    assert again["stage2"]["all"]["seeds"] == metrics["stage2"]["all"]["seeds"]
    with pytest.raises(ValueError, match="other settings"):
        from training.config import TrainConfig
        from training.recipe import run_training

        run_training(TrainConfig(out=out, profile="tiny", seeds=[0], stage1_epochs=3,
                                 engine_dir=tiny_engine_dir, weights_dir=weights))


def test_shuffled_labels_score_near_chance(trained, tiny_engine_dir, tmp_path):
    out, _, metrics = trained
    features = tmp_path / "features"
    shutil.copytree(out / "features", features)
    shuffled = _train(tiny_engine_dir, tmp_path / "shuffled", tmp_path / "w",
                      "--data", str(features), "--shuffle-labels")
    real = metrics["stage2"]["all"]["seeds"]["0"]["test"]["video"]["balanced_accuracy"]
    chance = shuffled["stage2"]["all"]["seeds"]["0"]["test"]["video"]["balanced_accuracy"]
    assert shuffled["data"]["shuffled_labels"] is True
    assert "installed" not in shuffled
    assert 0.3 <= chance <= 0.68
    assert real - chance > 0.15


def test_rebuild_after_training_swaps_only_the_classifier_and_scores_like_torch(
        trained, tiny_engine_dir, tmp_path):
    """The user's third job: train, `engines build` (only the classifier changes), then the
    rebuilt engine scores on the test windows what the trained torch model scored."""
    from engines.manifest import EngineStale, read_manifest, verify

    out, weights, metrics = trained
    engine_dir, fresh_weights = tmp_path / "engines", tmp_path / "weights"
    shutil.copytree(tiny_engine_dir, engine_dir)
    build = ["engines", "build", "--profile", "tiny", "--engine-dir", str(engine_dir),
             "--weights-dir", str(fresh_weights)]
    assert main([*build, "--only", "classifier"]) == 0  # nothing trained there yet: random
    verify(read_manifest(engine_dir, "classifier"), engine_dir)

    shutil.copytree(weights / "classifier", fresh_weights / "classifier")  # training lands
    with pytest.raises(EngineStale, match="trained checkpoint now exists"):
        verify(read_manifest(engine_dir, "classifier"), engine_dir)

    assert main([*build, "--int8"]) == 0
    manifest = read_manifest(engine_dir, "classifier")
    assert manifest.source.kind == "checkpoint"
    for name in ("detector", "image_embedder", "text_embedder"):
        assert read_manifest(engine_dir, name).onnx_sha256 == \
            read_manifest(tiny_engine_dir, name).onnx_sha256

    assert main(["engines", "evaluate", "--run", str(out), "--engine-dir",
                 str(engine_dir)]) == 0
    report = json.loads((out / "engines_eval.json").read_text())
    seed = str(metrics["installed"]["seed"])
    torch_video = metrics["stage2"]["all"]["seeds"][seed]["test"]["video"]
    engine_video = report["engines"]["classifier"]["video"]
    assert engine_video["accuracy"] == pytest.approx(torch_video["accuracy"], abs=0.02)
    assert engine_video["roc_auc"] == pytest.approx(torch_video["roc_auc"], abs=0.02)
    drift = report["int8_drift"]
    assert drift["windows"] == report["test_windows"] > 0
    assert 0.0 <= drift["decision_flips"] <= 0.1
