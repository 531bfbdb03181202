"""Pseudo-labels in stage 2: which teacher labels join training (gold wins, inductive never
admits an evaluation video, transductive does, the threshold), the weights they train with,
the simulated teacher, the synthetic pool, and the settings stated and guarded.

One slow test runs ``hidemo train --pseudo-labels`` end to end on a tiny synthetic set."""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from engines.profiles import get_profile
from training import trainer
from training.config import TrainConfig
from training.data import synthetic
from training.features.store import VideoFeatures
from training.pseudo.merge import (
    AmbiguousLabels,
    PseudoLabelConfig,
    VideoRef,
    describe,
    mode_line,
    pseudo_videos,
    read_store,
    select,
)
from training.pseudo.records import (
    LabelKey,
    LabelOutcome,
    Status,
    StoredLabel,
    Verdict,
)
from training.pseudo.simulate import SimulatedTeacher, simulate, true_label
from training.pseudo.store import LabelStore
from training.windows import WindowSpec, cut_windows

STORE = Path("labels.sqlite")


def _row(video_id: str, label: int = 1, confidence: float = 0.9, *, model: str = "m",
         status: Status = Status.LABELLED, reasoning: str = "because") -> StoredLabel:
    verdict = Verdict(label=("negative", "positive")[label], confidence=confidence,
                      reasoning=reasoning) if status is Status.LABELLED else None
    key = LabelKey(f"hash-{video_id}", "v1", "prov", model, "s")
    return StoredLabel(key, video_id, LabelOutcome(status=status, verdict=verdict), "now")


def _config(**fields) -> PseudoLabelConfig:
    return PseudoLabelConfig(**{"store": STORE, **fields})


VIDEOS = [
    VideoRef("gold", "train", 1),
    VideoRef("pool-a", "train", None, hidden_label=1),
    VideoRef("pool-b", "train", None, hidden_label=0),
    VideoRef("val-1", "val", 0),
    VideoRef("test-1", "test", 1),
    VideoRef("test-2", "test", 0),
]
ROWS = [_row("gold", 0), _row("pool-a", 1, 0.9), _row("pool-b", 1, 0.6),
        _row("val-1", 0, 0.8), _row("test-1", 1, 0.95), _row("test-2", 1, 0.7)]


def test_gold_wins_and_inductive_admits_only_the_unlabelled_pool() -> None:
    selection = select(ROWS, VIDEOS, _config())
    assert [v.video_id for v in selection.videos] == ["pool-a", "pool-b"]
    summary = selection.summary
    assert (summary.offered, summary.gold_kept, summary.evaluation_excluded, summary.used) == \
        (6, 1, 3, 2)
    assert summary.used_per_split == {"train": 2, "val": 0, "test": 0}
    assert summary.offered_per_split == {"train": 3, "val": 1, "test": 2}
    # the teacher said positive for both pool videos; pool-b's hidden label is negative
    assert summary.agreement_used.model_dump(mode="json") == {"videos": 2, "agree": 1,
                                                              "accuracy": 0.5}
    assert summary.used_label_counts == (0, 2)


def test_transductive_admits_val_and_test_with_the_teachers_label() -> None:
    selection = select(ROWS, VIDEOS, _config(mode="transductive"))
    used = {v.video_id: v.label for v in selection.videos}
    assert used == {"pool-a": 1, "pool-b": 1, "val-1": 0, "test-1": 1, "test-2": 1}
    assert selection.summary.gold_kept == 1 and selection.summary.evaluation_excluded == 0
    assert selection.summary.used_per_split == {"train": 2, "val": 1, "test": 2}
    # agreement with the known labels: wrong on pool-b and test-2 (and on the gold video,
    # which is offered but not used)
    assert selection.summary.agreement_used.model_dump(mode="json") == {"videos": 5, "agree": 3,
                                                          "accuracy": 0.6}
    assert selection.summary.agreement_offered.model_dump(mode="json") == {"videos": 6, "agree": 3,
                                                             "accuracy": 0.5}


def test_threshold_keeps_verdicts_at_or_above_it_and_zero_is_off() -> None:
    selection = select(ROWS, VIDEOS, _config(mode="transductive", threshold=0.8))
    assert {v.video_id for v in selection.videos} == {"pool-a", "val-1", "test-1"}
    assert selection.summary.below_threshold == 2
    assert select(ROWS, VIDEOS, _config(mode="transductive", threshold=0.0)).summary.used == 5


def test_refusals_failures_and_unknown_videos_are_counted_not_used() -> None:
    rows = [*ROWS, _row("elsewhere"), _row("x", status=Status.REFUSED),
            _row("y", status=Status.FAILED)]
    summary = select(rows, VIDEOS, _config()).summary
    assert (summary.stored, summary.not_labelled, summary.unknown_video, summary.offered) == \
        (9, 2, 1, 6)


def test_several_answers_for_one_video_are_refused_until_a_filter_picks_one() -> None:
    rows = [*ROWS, _row("pool-a", 0, model="other")]
    with pytest.raises(AmbiguousLabels, match=r"1 videos \(e\.g\. pool-a\).*--pseudo-model"):
        select(rows, VIDEOS, _config())
    assert select(rows, VIDEOS, _config(model="other")).summary.used == 1
    assert select(rows, VIDEOS, _config(model="m")).summary.used == 2
    # a failed second try does not make a video ambiguous
    assert select([*ROWS, _row("pool-a", model="other", status=Status.FAILED)], VIDEOS,
                  _config()).summary.used == 2


def test_missing_store_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "absent.sqlite"
    with pytest.raises(FileNotFoundError, match="hidemo label"):
        read_store(PseudoLabelConfig(store=path))
    assert not path.exists()


def test_store_rows_are_read_under_the_filters(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    with LabelStore.open(path) as store:
        for row in [*ROWS, _row("pool-a", model="other")]:
            store.put(row.key, row.video_id, row.outcome)
    assert len(read_store(PseudoLabelConfig(store=path))) == 7
    rows = read_store(PseudoLabelConfig(store=path, model="m"))
    assert select(rows, VIDEOS, PseudoLabelConfig(store=path, model="m")).summary.used == 2


@st.composite
def _stores(draw: st.DrawFn) -> tuple[list[VideoRef], list[StoredLabel]]:
    count = draw(st.integers(1, 25))
    videos, rows = [], []
    for index in range(count):
        split = draw(st.sampled_from(["train", "val", "test"]))
        label = draw(st.sampled_from([None, 0, 1]))
        videos.append(VideoRef(f"v{index}", split, label, draw(st.sampled_from([None, 0, 1]))))
        if draw(st.booleans()):
            status = draw(st.sampled_from(list(Status)))
            rows.append(_row(f"v{index}", draw(st.integers(0, 1)),
                             draw(st.floats(0.0, 1.0)), status=status))
    if draw(st.booleans()):
        rows.append(_row("not-in-the-features"))
    return videos, rows


@settings(max_examples=150, deadline=None)
@given(_stores(), st.floats(0.0, 1.0), st.sampled_from(["inductive", "transductive"]))
def test_selections_respect_the_mode_the_threshold_and_gold(data, threshold, mode) -> None:
    videos, rows = data
    selection = select(rows, videos, _config(threshold=threshold, mode=mode))
    by_id = {v.video_id: v for v in videos}
    for item in selection.videos:
        video = by_id[item.video_id]
        assert item.confidence >= threshold
        assert not (video.split == "train" and video.label is not None)  # gold wins
        if mode == "inductive":
            assert video.split == "train"  # never an evaluation video
    summary = selection.summary
    assert summary.used == len(selection.videos) == sum(summary.used_per_split.values())
    assert summary.offered == summary.gold_kept + summary.evaluation_excluded + \
        summary.below_threshold + summary.used


# -- the training set it makes -----------------------------------------------------------------

def _features(count: int = 24, fraction: float = 0.5) -> list[VideoFeatures]:
    profile = get_profile("tiny")
    spec = synthetic.SyntheticSpec(videos=count, duration=(5.0, 6.0),
                                   unlabelled_fraction=fraction)
    return synthetic.generate(
        spec, image_dim=profile.image.dim, text_dim=profile.text.dim,
        image_rate=profile.classifier.image_rate, keypoint_rate=profile.classifier.keypoint_rate,
        embed_texts=lambda texts: np.zeros((len(texts), profile.text.dim), np.float32))


def test_synthetic_pool_hides_whole_training_subjects_and_keeps_the_features() -> None:
    plain, pooled = _features(60, 0.0), _features(60, 0.6)
    labels_of: dict[str, set] = {}
    for before, after in zip(plain, pooled, strict=True):
        assert np.array_equal(before.image, after.image)
        assert np.array_equal(before.keypoints, after.keypoints)
        assert "hidden_label" not in before.meta
        if after.label is None:
            assert after.split == "train" and after.meta["hidden_label"] == before.label
        else:
            assert after.label == before.label and "hidden_label" not in after.meta
        labels_of.setdefault(after.subject, set()).add(after.label is None)
    assert all(len(kinds) == 1 for kinds in labels_of.values())  # whole subjects
    pool = Counter(v.label is None for v in pooled if v.split == "train")
    assert pool[True] > pool[False] > 0


def test_pseudo_videos_are_relabelled_copies_with_reasoning_as_text() -> None:
    videos = _features()
    pool = [v for v in videos if v.label is None][:2]
    rows = [_row(pool[0].video_id, 0, reasoning="tired"),
            _row(pool[1].video_id, 1, reasoning="happy")]
    selection = select(rows, [VideoRef.of(v) for v in videos], _config())
    copies = pseudo_videos(videos, selection)
    assert [c.label for c in copies] == [0, 1]
    assert all(v.label is None for v in pool)  # the originals are untouched
    assert np.array_equal(copies[0].text, pool[0].text)
    seen: list[str] = []

    def embed(texts):
        seen.extend(texts)
        return np.full((len(texts), 64), 7.0, np.float32)

    with_reasoning = pseudo_videos(videos, selection, embed)
    assert seen == ["tired", "happy"]
    assert with_reasoning[1].transcript == "happy" and float(with_reasoning[1].text[0]) == 7.0
    assert with_reasoning[0].meta["pseudo_label"] == {"label": 0, "confidence": 0.9}


def test_window_weights_follow_their_video_and_survive_relabelling() -> None:
    videos = [v for v in _features() if v.label is not None][:4]
    profile = get_profile("tiny").classifier
    windows = cut_windows(videos, WindowSpec(profile.window_seconds, profile.image_rate,
                                             profile.keypoint_rate), 96, 64, stride=1.0)
    assert windows.weights is None
    weighted = windows.with_video_weights(np.array([1.0, 1.0, 0.5, 0.5]))
    assert np.array_equal(weighted.weights, np.where(windows.video_index >= 2, 0.5, 1.0))
    assert weighted.with_labels(weighted.video_labels[::-1]).weights is weighted.weights
    with pytest.raises(ValueError, match="one positive weight"):
        windows.with_video_weights(np.array([1.0, 0.0, 1.0, 1.0]))


def test_weighted_loss_and_class_balance_use_the_weighted_class_mass() -> None:
    labels = np.array([0, 1, 1, 1])
    weights = np.array([1.0, 1.0, 0.5, 0.5], np.float32)
    assert trainer.class_counts(labels, weights).tolist() == [1.0, 2.0]
    assert trainer.class_weights(labels, weights).tolist() == pytest.approx([1.5, 0.75])
    assert trainer.class_weights(labels).tolist() == pytest.approx([2.0, 2 / 3])
    torch.manual_seed(0)
    logits, target = torch.randn(8, 2), torch.tensor([0, 1, 1, 0, 1, 1, 1, 0])
    per_class = torch.tensor([1.6, 0.7])
    mean = nn.CrossEntropyLoss(weight=per_class, label_smoothing=0.1)(logits, target)
    each = nn.CrossEntropyLoss(weight=per_class, label_smoothing=0.1,
                               reduction="none")(logits, target)
    ones = trainer._weighted_mean(each, torch.ones(8), per_class[target])
    assert float(ones) == pytest.approx(float(mean), rel=1e-6)
    # a window of weight 2 counts as that window twice
    twice = trainer._weighted_mean(each[:2], torch.tensor([2.0, 1.0]), per_class[target[:2]])
    doubled = trainer._weighted_mean(each[[0, 0, 1]], torch.ones(3), per_class[target[[0, 0, 1]]])
    assert float(twice) == pytest.approx(float(doubled), rel=1e-6)


def test_fit_with_weights_of_one_trains_like_fit_without() -> None:
    from training.models import ClassifierConfig, HiddenEmotionClassifier

    windows = cut_windows([v for v in _features(24, 0.0) if v.split == "train"],
                          WindowSpec(4.0, 2.0, 5.0), 96, 64, stride=2.0)
    settings = trainer.FitSettings(epochs=2, lr=1e-3, imbalance="both", embedding_jitter=0.5)
    models = []
    for data in (windows, windows.with_video_weights(np.ones(len(windows.video_ids)))):
        torch.manual_seed(0)
        model = HiddenEmotionClassifier(ClassifierConfig.from_profile(get_profile("tiny")))
        history = trainer.fit(model, data, settings, ("image", "keypoints", "text"))
        models.append((model, history))
    (plain, plain_history), (weighted, weighted_history) = models
    assert weighted_history[-1]["train_loss"] == pytest.approx(plain_history[-1]["train_loss"],
                                                               abs=1e-5)
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(weighted.state_dict()[name], value, atol=1e-4, rtol=1e-4)


# -- the teacher -------------------------------------------------------------------------------

def test_simulated_teacher_is_as_accurate_and_calibrated_as_set() -> None:
    ids = [f"v{i}" for i in range(4000)]
    for accuracy in (0.7, 0.9):
        calibrated = SimulatedTeacher(accuracy, "calibrated", seed=3)
        verdicts = [calibrated.verdict(i, truth=1) for i in ids]
        right = np.array([v.label == "positive" for v in verdicts])
        confidence = np.array([v.confidence for v in verdicts])
        assert right.mean() == pytest.approx(accuracy, abs=0.03)
        assert confidence.mean() == pytest.approx(right.mean(), abs=0.03)
        sure = confidence >= 0.75
        assert right[sure].mean() == pytest.approx(confidence[sure].mean(), abs=0.04)
        assert right[sure].mean() > right[~sure].mean()
        over = [SimulatedTeacher(accuracy, "overconfident", seed=3).verdict(i, 1) for i in ids]
        assert [v.label for v in over] == [v.label for v in verdicts]  # same right/wrong
        assert np.mean([v.confidence for v in over]) > right.mean() + 0.05


def test_reasoning_carries_the_label_words_only_when_the_teacher_is_right() -> None:
    teacher = SimulatedTeacher(0.7, seed=1)
    positive, negative = set(synthetic.POSITIVE_WORDS), set(synthetic.NEGATIVE_WORDS)
    kinds = Counter()
    for index in range(300):
        verdict = teacher.verdict(f"v{index}", truth=1)
        words = set(verdict.reasoning.rstrip(".").split())
        assert not words & negative  # never the wrong label's words
        kinds[verdict.label == "positive", bool(words & positive)] += 1
    assert kinds[False, True] == 0 and kinds[True, True] > 150 and kinds[False, False] > 40


def test_simulation_labels_the_pool_and_evaluation_videos_once(tmp_path: Path) -> None:
    videos = _features()
    teacher = SimulatedTeacher(0.8, seed=0)
    with LabelStore.open(tmp_path / "labels.sqlite") as store:
        first = simulate(store, videos, teacher)
        again = simulate(store, videos, teacher)
        rows = store.labels(provider="simulated", model="acc0.8-calibrated-seed0")
    wanted = [v for v in videos if v.label is None or v.split != "train"]
    assert first.written == len(wanted) == len(rows) and first.skipped == len(videos) - \
        len(wanted)
    assert again.written == 0 and again.kept == len(wanted)
    by_id = {v.video_id: v for v in videos}
    for row in rows:
        assert row.key.content_hash == hashlib.sha256(row.video_id.encode()).hexdigest()
        assert true_label(by_id[row.video_id]) is not None


# -- configuration, identity, reporting --------------------------------------------------------

def test_pseudo_settings_are_part_of_the_run_identity(tmp_path: Path) -> None:
    plain = TrainConfig(out=tmp_path)
    old = {k: v for k, v in plain.model_dump(mode="json").items() if k != "pseudo_labels"}
    old["synthetic"].pop("unlabelled_fraction")
    assert TrainConfig.model_validate(old).identity() == plain.identity()  # old runs resume
    base = TrainConfig(out=tmp_path, pseudo_labels=_config())
    assert base.identity() != plain.identity()
    for change in ({"threshold": 0.7}, {"weight": 0.5}, {"reasoning_text": True},
                   {"mode": "transductive"}, {"model": "x"}, {"store": Path("other.sqlite")}):
        other = TrainConfig(out=tmp_path, pseudo_labels=_config(**change))
        assert other.identity() != base.identity(), change
    with pytest.raises(ValueError, match="extra"):
        PseudoLabelConfig(store=STORE, thresold=0.5)
    with pytest.raises(ValueError, match="without pseudo-labels"):
        TrainConfig(out=tmp_path, pseudo_labels=_config(), shuffle_labels=True)


def test_cli_options_reach_the_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from training import recipe
    from training.train_cli import add_train_parser, train_command

    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers(dest="job"))
    seen = {}

    def fake_run(config, say):
        seen["config"] = config
        return {"stage1": {}, "stage2": {"all": {"test": {"video": {}, "window": {}}}},
                "pseudo_labels": {"mode": "transductive", "threshold": 0.75, "weight": 0.5,
                                  "reasoning_text": True, "used": 3, "offered": 4,
                                  "agreement_used": {"accuracy": 1.0}}}

    monkeypatch.setattr(recipe, "run_training", fake_run)
    args = parser.parse_args(["train", "--out", str(tmp_path), "--pseudo-labels", "l.sqlite",
                              "--pseudo-threshold", "0.75", "--pseudo-weight", "0.5",
                              "--pseudo-reasoning-text", "--pseudo-mode", "transductive",
                              "--pseudo-model", "m", "--synthetic-unlabelled-fraction", "0.5"])
    assert train_command(args) == 0
    config = seen["config"]
    assert config.pseudo_labels == PseudoLabelConfig(
        store=Path("l.sqlite"), threshold=0.75, weight=0.5, reasoning_text=True,
        mode="transductive", model="m")
    assert config.synthetic.unlabelled_fraction == 0.5
    args = parser.parse_args(["train", "--out", str(tmp_path)])
    assert train_command(args) == 0 and seen["config"].pseudo_labels is None
    with pytest.raises(ValueError, match="store"):
        train_command(parser.parse_args(["train", "--out", str(tmp_path),
                                         "--pseudo-threshold", "0.5"]))


def test_metrics_section_and_summary_state_the_mode() -> None:
    from training.train_cli import format_summary

    summary = select(ROWS, VIDEOS, _config(mode="transductive", threshold=0.8)).summary
    section = describe(_config(mode="transductive", threshold=0.8, weight=0.5), summary, 12)
    assert section["mode"] == "transductive" and section["threshold"] == 0.8
    assert section["weight"] == 0.5 and section["reasoning_text"] is False
    assert section["test_time_text"] == "transcript" and section["windows_added"] == 12
    assert section["used"] == 3 and section["used_per_split"]["test"] == 1
    json.dumps(section)  # it goes into metrics.json as is
    line = mode_line(section)
    assert "transductive (evaluation videos in training)" in line and "threshold 0.8" in line
    assert "inductive (evaluation videos never in training)" in mode_line(
        describe(_config(), select(ROWS, VIDEOS, _config()).summary, 0))
    block = {"test": {"video": {}, "window": {}}}
    metrics = {"stage1": {}, "stage2": {"all": block}, "pseudo_labels": section}
    assert line in format_summary(metrics)
    assert "pseudo" not in format_summary({**metrics, "pseudo_labels": None})


# -- end to end --------------------------------------------------------------------------------

@pytest.mark.slow
def test_train_with_pseudo_labels_end_to_end(tiny_engine_dir: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    """`hidemo train --pseudo-labels` on a tiny synthetic set: metrics.json states the
    settings and its counts are the store's."""
    from hidemo.cli import main
    from training import recipe

    profile = get_profile("tiny")
    config = TrainConfig(out=tmp_path / "gen", profile="tiny", engine_dir=tiny_engine_dir,
                         synthetic={"videos": 64, "duration": (6.0, 9.0),
                                    "unlabelled_fraction": 0.6})
    store = recipe._generate_synthetic(config, profile, tmp_path / "features", lambda _: None)
    videos = store.load_all()
    labels = tmp_path / "labels.sqlite"
    teacher = SimulatedTeacher(0.8, seed=0)
    with LabelStore.open(labels) as label_store:
        simulate(label_store, videos, teacher)
        rows = label_store.labels()
    split_of = {v.video_id: v.split for v in videos}
    out = tmp_path / "run"
    code = main(["train", "--out", str(out), "--data", str(tmp_path / "features"),
                 "--engine-dir", str(tiny_engine_dir), "--profile", "tiny", "--seeds", "0",
                 "--stage1-epochs", "2", "--stage2-epochs", "2", "--threads", "2",
                 "--no-install", "--pseudo-labels", str(labels), "--pseudo-threshold", "0.7",
                 "--pseudo-weight", "0.5", "--pseudo-reasoning-text"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    section = metrics["pseudo_labels"]
    assert (section["mode"], section["threshold"], section["weight"],
            section["reasoning_text"]) == ("inductive", 0.7, 0.5, True)
    pool = [r for r in rows if split_of[r.video_id] == "train"]
    assert section["stored"] == section["offered"] == len(rows)
    assert section["evaluation_excluded"] == len(rows) - len(pool)
    assert section["used"] == sum(r.outcome.verdict.confidence >= 0.7 for r in pool) > 0
    assert section["below_threshold"] == len(pool) - section["used"]
    assert section["windows_added"] > 0
    assert metrics["data"]["videos"]["train"] == sum(
        v.split == "train" and v.label is not None for v in videos)  # gold only
    assert "pseudo-labels: inductive" in capsys.readouterr().out
    saved = json.loads((out / "config.json").read_text())["config"]["pseudo_labels"]
    assert saved["threshold"] == 0.7 and saved["mode"] == "inductive"
    resumed_otherwise = main([
        "train", "--out", str(out), "--data", str(tmp_path / "features"),
        "--engine-dir", str(tiny_engine_dir), "--profile", "tiny", "--seeds", "0",
        "--stage1-epochs", "2", "--stage2-epochs", "2", "--no-install",
        "--pseudo-labels", str(labels), "--pseudo-threshold", "0.7", "--pseudo-weight", "0.5",
        "--pseudo-reasoning-text", "--pseudo-mode", "transductive"])
    assert resumed_otherwise != 0
    assert "other settings (pseudo_labels)" in capsys.readouterr().err


def test_pseudo_options_without_a_store_are_refused_with_the_fix(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "hidemo", "train", "--out",
                           str(tmp_path / "run"), "--pseudo-threshold", "0.5"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "need --pseudo-labels STORE" in done.stderr
    assert not (tmp_path / "run").exists()  # refused before anything was written
