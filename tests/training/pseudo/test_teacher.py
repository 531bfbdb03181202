"""The checkpoint teacher: it scores a video as evaluation does, names its model by the
weights' hash, fails (not raises) on a video the store lacks, refuses a store it was not
trained for, picks a run's installed seed, and (slow) agrees with gold labels as well as
the run that trained it measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.profiles import get_profile
from training.data import synthetic
from training.features.store import FeatureStore, StoreInfo, VideoFeatures
from training.metrics import classification_metrics, video_scores
from training.models import ClassifierConfig, HiddenEmotionClassifier, save_checkpoint
from training.pseudo.records import LabelInput, LabelKey, Status, StoredLabel
from training.pseudo.report import build_report
from training.pseudo.teacher import CheckpointTeacher, installed_seed
from training.trainer import predict
from training.windows import WindowSpec, cut_windows

PROFILE = get_profile("tiny")
DIMS = (PROFILE.image.dim, PROFILE.text.dim)
RATES = (PROFILE.classifier.image_rate, PROFILE.classifier.keypoint_rate)
MODEL_ID = re.compile(r"^(?P<name>.+)@(?P<sha>[0-9a-f]{12})$")


def _bag_of_words(texts) -> np.ndarray:
    """A stand-in text embedder (no engine needed): word counts hashed into 64 slots."""
    vocabulary: dict[str, int] = {}
    rows = []
    for text in texts:
        row = np.zeros(DIMS[1], np.float32)
        for word in text.split():
            row[vocabulary.setdefault(word, len(vocabulary)) % DIMS[1]] += 1
        rows.append(row)
    return np.stack(rows)


def _store(root: Path, videos: int, duration: tuple[float, float]) -> FeatureStore:
    spec = synthetic.SyntheticSpec(videos=videos, duration=duration)
    store = FeatureStore.create(root, StoreInfo("tiny", *DIMS, *RATES, source="test"))
    for video in synthetic.generate(spec, image_dim=DIMS[0], text_dim=DIMS[1],
                                    image_rate=RATES[0], keypoint_rate=RATES[1],
                                    embed_texts=_bag_of_words):
        store.put(video)
    return store


def _checkpoint(folder: Path, seed: int, extra: dict | None = None, **sizes) -> Path:
    torch.manual_seed(seed)
    config = ClassifierConfig.from_profile(PROFILE, **sizes)
    return save_checkpoint(HiddenEmotionClassifier(config), config, folder, extra)


def _item(video_id: str) -> LabelInput:
    return LabelInput(video_id=video_id, content_hash=f"sha-{video_id}", images=())


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> FeatureStore:
    return _store(tmp_path_factory.mktemp("features"), videos=16, duration=(3.0, 9.0))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("checkpoints")
    return _checkpoint(root / "ckpt-a", 0), _checkpoint(root / "ckpt-b", 1)


def test_outcomes_are_well_formed_labels_with_factual_reasoning(store, checkpoints) -> None:
    teacher = CheckpointTeacher.from_run(checkpoints[0], store.root)
    assert (teacher.provider, teacher.prompt_version, teacher.needs_images) == \
        ("teacher", "none", False)
    for video_id in store.video_ids()[:6]:
        outcome = teacher.label(_item(video_id))
        assert outcome.status is Status.LABELLED and outcome.error is None
        assert outcome.provisional is None and outcome.attempts == 1
        assert (outcome.usage.input_tokens, outcome.usage.output_tokens,
                outcome.usage.cost_usd) == (0, 0, None)
        numbers = json.loads(outcome.responses[0])
        p = numbers["positive_probability"]
        verdict = outcome.verdict
        assert verdict is not None
        assert verdict.label == ("positive" if p >= 0.5 else "negative")
        assert verdict.confidence == pytest.approx(max(p, 1 - p)) and verdict.confidence >= 0.5
        assert f"{numbers['windows']} window(s)" in verdict.reasoning
        for modality in ("image", "keypoints", "text"):
            alone = numbers["alone"][modality]
            assert 0 < alone["windows"] <= numbers["windows"]
            assert f"{modality} {alone['probability']:.2f}" in verdict.reasoning
        assert "drives the call" in verdict.reasoning or "combination" in verdict.reasoning
    teacher.close()


def test_scores_match_the_evaluation_code_path(store, checkpoints) -> None:
    """Per video, the teacher's probability is evaluation's video score (same windows,
    same stride, mean over windows)."""
    teacher = CheckpointTeacher.from_run(checkpoints[0], store.root)
    videos = store.load_all()[:8]
    spec = WindowSpec(PROFILE.classifier.window_seconds, *RATES)
    windows = cut_windows(videos, spec, *DIMS, stride=spec.window_seconds / 2)
    model = teacher.network
    expected = video_scores(windows.video_index, predict(model, windows), len(videos))
    got = [teacher.read(video).positive_probability for video in videos]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_model_id_is_the_weights_hash_stable_across_loads(store, checkpoints) -> None:
    first = CheckpointTeacher.from_run(checkpoints[0], store.root).model
    again = CheckpointTeacher.from_run(checkpoints[0], store.root).model
    other = CheckpointTeacher.from_run(checkpoints[1], store.root).model
    match = MODEL_ID.match(first)
    assert match and match["name"] == "ckpt-a"
    assert first == again
    assert MODEL_ID.match(other)["sha"] != match["sha"]


def test_a_video_the_store_lacks_is_a_failed_outcome(store, checkpoints) -> None:
    outcome = CheckpointTeacher.from_run(checkpoints[0], store.root).label(_item("nope"))
    assert outcome.status is Status.FAILED and outcome.verdict is None
    assert "'nope'" in outcome.error and str(store.root) in outcome.error


def test_a_video_without_any_features_is_a_failed_outcome(tmp_path, checkpoints) -> None:
    empty = FeatureStore.create(tmp_path, StoreInfo("tiny", *DIMS, *RATES))
    empty.put(VideoFeatures("blank", None, "s", "train", 3.0, np.zeros(0),
                            np.zeros((0, DIMS[0])), np.zeros(0), np.zeros((0, 137, 3))))
    outcome = CheckpointTeacher.from_run(checkpoints[0], tmp_path).label(_item("blank"))
    assert outcome.status is Status.FAILED and "no image, keypoint or text" in outcome.error


def test_a_store_of_other_widths_profile_or_windows_is_refused(tmp_path, store,
                                                               checkpoints) -> None:
    wide = FeatureStore.create(tmp_path / "wide", StoreInfo("tiny", 32, DIMS[1], *RATES))
    with pytest.raises(ValueError, match=r"width 96/64.*32/64"):
        CheckpointTeacher.from_run(checkpoints[0], wide.root)
    installed_edge = _checkpoint(tmp_path / "weights" / "classifier" / "edge", 0)
    with pytest.raises(ValueError, match=r"profile 'edge'.*'tiny' features"):
        CheckpointTeacher.from_run(installed_edge, store.root)
    other_window = {"window": {"window_seconds": 8.0, "image_rate": RATES[0],
                               "keypoint_rate": RATES[1]}}
    with pytest.raises(ValueError, match="trained on windows"):
        CheckpointTeacher.from_run(_checkpoint(tmp_path / "w8", 0, other_window), store.root)


def _stage2(seed_val: float | None, seed_test: float) -> dict:
    def block(score: float) -> dict:
        return {"video": {"balanced_accuracy": score}}

    return {"test": block(seed_test), "val": None if seed_val is None else block(seed_val)}


def test_installed_seed_follows_the_recipes_rule() -> None:
    def metrics(seeds: dict, installed: int | None = None) -> dict:
        out: dict = {"stage2": {"all": {"seeds": seeds}}}
        if installed is not None:
            out["installed"] = {"seed": installed, "path": "w"}
        return out

    assert installed_seed(metrics({"0": _stage2(0.6, 0.9), "1": _stage2(0.8, 0.5)})) == 1
    assert installed_seed(metrics({"0": _stage2(0.6, 0.9), "1": _stage2(0.8, 0.5)}, 0)) == 0
    assert installed_seed(metrics({"3": _stage2(0.7, 0.1), "4": _stage2(0.7, 0.9)})) == 3
    assert installed_seed(metrics({"5": _stage2(None, 0.5), "6": _stage2(None, 0.9)})) == 5


def test_a_run_folder_gives_its_best_stage2_seed(tmp_path, store, checkpoints) -> None:
    run = tmp_path / "myrun"
    (run).mkdir()
    (run / "config.json").write_text(json.dumps({"config": {"profile": "tiny"}}))
    with pytest.raises(FileNotFoundError, match="not finished"):
        CheckpointTeacher.from_run(run, store.root)
    for seed in (0, 1):
        _checkpoint(run / f"seed{seed}" / "stage2-all", seed)
    (run / "metrics.json").write_text(json.dumps(
        {"stage2": {"all": {"seeds": {"0": _stage2(0.6, 0.9), "1": _stage2(0.8, 0.5)}}}}))
    teacher = CheckpointTeacher.from_run(run, store.root)
    direct = CheckpointTeacher.from_run(run / "seed1" / "stage2-all", store.root)
    assert teacher.model.startswith("myrun-seed1@")
    assert MODEL_ID.match(teacher.model)["sha"] == MODEL_ID.match(direct.model)["sha"]
    with pytest.raises(FileNotFoundError, match="neither a classifier checkpoint"):
        CheckpointTeacher.from_run(tmp_path / "nothing", store.root)


@pytest.mark.slow
def test_a_trained_run_labels_as_well_as_it_measured(tmp_path: Path) -> None:
    """Train a tiny run (about 45 s of CPU on 2 cores), then label its test videos: the teacher's
    agreement with gold is the run's own test video accuracy, which beats the majority
    class; the installed copy has the same weights hash, a stage-1 model another."""
    from training.config import TrainConfig
    from training.recipe import run_training

    store = _store(tmp_path / "features", videos=120, duration=(6.0, 10.0))
    run, weights = tmp_path / "run", tmp_path / "weights"
    metrics = run_training(TrainConfig(
        out=run, data=str(store.root), profile="tiny", seeds=[0], stage1_epochs=10,
        stage2_epochs=5, weights_dir=weights, threads=2), say=lambda _: None)
    measured = metrics["stage2"]["all"]["seeds"]["0"]["test"]["video"]

    teacher = CheckpointTeacher.from_run(run, store.root)
    tests = [v for v in store.load_all() if v.split == "test"]
    rows = []
    for video in tests:
        outcome = teacher.label(_item(video.video_id))
        assert outcome.status is Status.LABELLED
        key = LabelKey(f"sha-{video.video_id}", teacher.prompt_version, teacher.provider,
                       teacher.model, "features")
        rows.append(StoredLabel(key, video.video_id, outcome, "now"))
    report = build_report(rows, {v.video_id: v.label for v in tests})
    assert report.agreement is not None and report.agreement.rows == measured["count"]
    assert report.agreement.accuracy == pytest.approx(measured["accuracy"])
    assert report.agreement.balanced_accuracy == pytest.approx(measured["balanced_accuracy"])
    labels = np.array([v.label for v in tests])
    majority = max(np.mean(labels), 1 - np.mean(labels))
    assert report.agreement.accuracy > majority, "the run did not learn: teacher test void"
    positive = [r.outcome.verdict.class_id for r in rows]
    assert classification_metrics(labels, np.array(positive, float))["accuracy"] == \
        pytest.approx(measured["accuracy"])

    installed = CheckpointTeacher.from_run(weights / "classifier" / "tiny", store.root)
    stage1 = CheckpointTeacher.from_run(run / "seed0" / "stage1-text", store.root)
    assert installed.model.split("@")[1] == teacher.model.split("@")[1]
    assert installed.model.startswith("tiny@") and teacher.model.startswith("run-seed0@")
    assert stage1.model.split("@")[1] != teacher.model.split("@")[1]
