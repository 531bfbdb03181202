"""The paper's two-stage recipe over several seeds, and ``DIR/metrics.json``.

Stage 1 trains each modality alone (image, keypoints, text), each a full classifier whose
other modalities are masked. Stage 2 starts a new classifier from the three stage-1
encoders and fine-tunes everything jointly (with modality dropout, so that any subset of
modalities still gives a sensible prediction). Every run is evaluated per window and per
video on the test split (and on val when there is one); each seed's numbers and their
mean and spread go to ``metrics.json`` with the generator's best possible accuracy when the
data is synthetic.

Layout of ``DIR``::

    config.json                  resolved TrainConfig + git commit
    features/                    the synthetic feature store (when --data synthetic)
    seed0/stage1-image/          model.safetensors, config.json, result.json, state.pt
    seed0/stage2-all/            ...
    metrics.json, learning_curves.png

Runs with a ``result.json`` are done and are loaded, not retrained: a killed
``hidemo train`` started again with the same folder continues where it stopped.

With ``pseudo_labels`` (:mod:`training.pseudo.merge`), stage 1 still trains on gold labels
only; stage 2 trains on the gold windows plus the windows of the selected pseudo-labelled
videos, weighted, and ``metrics.json`` states the mode (inductive or transductive), the
threshold, the weight, whether reasoning fed the text modality, the counts and the
teacher's agreement with the labels known. Evaluation always scores gold labels.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.profiles import Profile, get_profile
from engines.provenance import git_commit, library_versions, utc_now
from training.config import TrainConfig
from training.data import synthetic
from training.features.store import FeatureStore, StoreInfo, VideoFeatures
from training.metrics import summarize
from training.models import HiddenEmotionClassifier
from training.models.checkpoint import load_checkpoint, save_checkpoint
from training.models.config import ClassifierConfig
from training.pseudo import merge
from training.trainer import ALL_MODALITIES, FitSettings, evaluate, fit
from training.windows import WindowSet, WindowSpec, cut_windows

log = logging.getLogger(__name__)

Say = Callable[[str], None]
INSTALL_SUBDIR = "classifier"
"""Trained classifiers are installed to WEIGHTS_DIR/classifier/PROFILE (read by export)."""


@dataclass(frozen=True)
class Splits:
    train: WindowSet
    val: WindowSet | None
    test: WindowSet
    test_videos: list[VideoFeatures]
    train_majority: int


def load_run_splits(run_dir: Path) -> tuple[TrainConfig, Splits]:
    """The windows a finished run was trained and tested on (for evaluating its engines)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a training run (no config.json); pass the "
                                "--out folder of `hidemo train`")
    config = TrainConfig.model_validate(json.loads(path.read_text())["config"])
    profile = get_profile(config.profile)
    store = _load_store(config, profile, log.info)
    return config, _split(store.load_all(), _window_spec(profile, store), store.info, config)


def run_training(config: TrainConfig, say: Say = log.info) -> dict[str, Any]:
    """Train, evaluate, write ``metrics.json`` and (optionally) install; returns the metrics."""
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    _claim_folder(out, config)
    profile = get_profile(config.profile)
    store = _load_store(config, profile, say)
    spec = _window_spec(profile, store)
    videos = store.load_all()
    splits = _split(videos, spec, store.info, config)
    say(f"windows: {len(splits.train)} train, {len(splits.val or [])} val, "
        f"{len(splits.test)} test ({spec.window_seconds:g} s, image {spec.image_rate:g} fps, "
        f"keypoints {spec.keypoint_rate:g} fps)")
    stage2_splits, pseudo = _with_pseudo_labels(config, profile, store, videos, spec, splits,
                                                say)
    model_config = ClassifierConfig.from_profile(
        profile, keypoint_encoder=config.keypoint_encoder, **config.model)

    stage1: dict[str, dict[str, Any]] = {m: {} for m in ALL_MODALITIES}
    stage2: dict[str, Any] = {}
    histories: dict[str, dict[int, list]] = {}
    for seed in config.seeds:
        encoders = {}
        for modality in ALL_MODALITIES:
            model, result = _run(out / f"seed{seed}" / f"stage1-{modality}", model_config,
                                 splits, config, seed, (modality,), None, say)
            encoders[modality] = model
            stage1[modality][str(seed)] = result
            histories.setdefault(f"stage 1: {modality}", {})[seed] = result["history"]
        model, result = _run(out / f"seed{seed}" / "stage2-all", model_config, stage2_splits,
                             config, seed, ALL_MODALITIES, encoders, say)
        stage2[str(seed)] = result
        histories.setdefault("stage 2: all", {})[seed] = result["history"]

    metrics = _metrics(config, profile, store, splits, model_config, stage1, stage2)
    metrics["pseudo_labels"] = pseudo
    if config.install and not config.shuffle_labels:
        metrics["installed"] = _install(config, profile, out, stage2, spec, say)
    _plot(out / "learning_curves.png", histories)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    say(f"wrote {out / 'metrics.json'} and {out / 'learning_curves.png'}")
    return metrics


def _window_spec(profile: Profile, store: FeatureStore) -> WindowSpec:
    """The profile's window length at the rates the features were extracted at."""
    return WindowSpec(profile.classifier.window_seconds, store.info.image_rate,
                      store.info.keypoint_rate)


def _claim_folder(out: Path, config: TrainConfig) -> None:
    """Refuse to resume a folder that holds a run with other settings."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        saved = TrainConfig.model_validate(previous["config"]).identity()
        if saved != config.identity():
            changed = sorted(k for k in saved if saved[k] != config.identity().get(k))
            raise ValueError(f"{out} holds a run with other settings ({', '.join(changed)}); "
                             "use another --out, or the same settings to resume it")
    path.write_text(json.dumps({"config": config.model_dump(mode="json"),
                                "git_commit": git_commit(), "created": utc_now()}, indent=2))


def _load_store(config: TrainConfig, profile: Profile, say: Say) -> FeatureStore:
    if config.data != "synthetic":
        store = FeatureStore.open(Path(config.data))
        if store.info.profile != profile.name:
            raise ValueError(f"feature store {config.data} was extracted with profile "
                             f"{store.info.profile!r}, training asked for {profile.name!r}; "
                             f"pass --profile {store.info.profile}")
        return store
    root = Path(config.out) / "features"
    if (root / "store.json").is_file() and FeatureStore.open(root).video_ids():
        return FeatureStore.open(root)
    return _generate_synthetic(config, profile, root, say)


def _engine_dir(config: TrainConfig, profile: Profile) -> Path:
    return config.engine_dir or Path("artifacts") / "engines" / profile.name


def _generate_synthetic(config: TrainConfig, profile: Profile, root: Path,
                        say: Say) -> FeatureStore:
    from engines.adapters.text_embedder import TextEmbedder

    engine_dir = _engine_dir(config, profile)
    embedder = TextEmbedder.from_engine_dir(engine_dir)
    spec = synthetic.SyntheticSpec(videos=config.synthetic.videos, seed=config.synthetic.seed,
                                   duration=tuple(config.synthetic.duration),
                                   label_noise=config.synthetic.label_noise,
                                   positive_fraction=config.synthetic.positive_fraction,
                                   unlabelled_fraction=config.synthetic.unlabelled_fraction)
    say(f"generating {spec.videos} synthetic videos (text embedded by {engine_dir})")
    try:
        videos = synthetic.generate(
            spec, image_dim=profile.image.dim, text_dim=profile.text.dim,
            image_rate=profile.classifier.image_rate,
            keypoint_rate=profile.classifier.keypoint_rate,
            embed_texts=lambda texts: embedder.embed(list(texts)).vectors)
    finally:
        embedder.close()
    info = StoreInfo(profile=profile.name, image_dim=profile.image.dim,
                     text_dim=profile.text.dim, image_rate=profile.classifier.image_rate,
                     keypoint_rate=profile.classifier.keypoint_rate,
                     engines={"text_embedder": embedder.manifest.onnx_sha256},
                     random_weights=embedder.random_weights, source="synthetic",
                     extra={"generator": spec.model_dump(mode="json")})
    if root.exists():
        shutil.rmtree(root)
    store = FeatureStore.create(root, info)
    for video in videos:
        store.put(video)
    return store


def _split(videos: Sequence[VideoFeatures], spec: WindowSpec, info: StoreInfo,
           config: TrainConfig) -> Splits:
    by_split: dict[str, list[VideoFeatures]] = {"train": [], "val": [], "test": []}
    for video in videos:
        if video.label is None:
            continue
        if video.split not in by_split:
            raise ValueError(f"video {video.video_id}: split {video.split!r}; expected "
                             "train, val or test")
        by_split[video.split].append(video)
    for name in ("train", "test"):
        if not by_split[name]:
            raise ValueError(f"no labelled {name} videos in the data; the manifest's split "
                             "column must name train and test videos")
    eval_stride = config.eval_stride or spec.window_seconds / 2

    def windows(name: str, stride: float) -> WindowSet:
        return cut_windows(by_split[name], spec, info.image_dim, info.text_dim, stride=stride)

    train = windows("train", config.train_stride)
    if config.shuffle_labels:
        permuted = np.random.default_rng(12345).permutation(train.video_labels)
        train = train.with_labels(permuted)
    majority = int(np.bincount(train.video_labels, minlength=2).argmax())
    return Splits(train, windows("val", eval_stride) if by_split["val"] else None,
                  windows("test", eval_stride), by_split["test"], majority)


def _with_pseudo_labels(config: TrainConfig, profile: Profile, store: FeatureStore,
                        videos: Sequence[VideoFeatures], spec: WindowSpec, splits: Splits,
                        say: Say) -> tuple[Splits, dict[str, Any] | None]:
    """Stage 2's splits: the gold training windows plus the selected pseudo-labelled ones
    (weighted); val and test stay as they are (gold labels). Unchanged without a store."""
    settings = config.pseudo_labels
    if settings is None:
        return splits, None
    selection = merge.select(merge.read_store(settings),
                             [merge.VideoRef.of(v) for v in videos], settings)
    summary = selection.summary
    embed = _ReasoningEmbedder(_engine_dir(config, profile), store) \
        if settings.reasoning_text and selection.videos else None
    try:
        relabelled = merge.pseudo_videos(videos, selection, embed)
    finally:
        if embed is not None:
            embed.close()
    section = merge.describe(settings, summary, 0)
    say(f"{merge.mode_line(section)}; {summary.gold_kept} gold videos kept their labels, "
        f"{summary.evaluation_excluded} evaluation videos left out, "
        f"{summary.below_threshold} below the threshold")
    if not relabelled:
        return splits, section
    gold = [v for v in videos if v.split == "train" and v.label is not None]
    train = cut_windows([*gold, *relabelled], spec, store.info.image_dim, store.info.text_dim,
                        stride=config.train_stride)
    train = train.with_video_weights(np.r_[np.ones(len(gold)),
                                           np.full(len(relabelled), settings.weight)])
    section["windows_added"] = int(np.sum(train.video_index >= len(gold)))
    return replace(splits, train=train), section


class _ReasoningEmbedder:
    """The profile's text engine as a ``texts -> vectors`` function (closed after use)."""

    def __init__(self, engine_dir: Path, store: FeatureStore) -> None:
        from engines.adapters.text_embedder import TextEmbedder

        self.embedder = TextEmbedder.from_engine_dir(engine_dir)
        expected = store.info.engines.get("text_embedder")
        if expected is not None and expected != self.embedder.manifest.onnx_sha256:
            self.embedder.close()
            raise ValueError(
                f"--pseudo-reasoning-text: the text engine in {engine_dir} "
                f"({self.embedder.manifest.onnx_sha256[:12]}) is not the one the features' "
                f"transcripts were embedded with ({expected[:12]}); pass that engine's "
                "--engine-dir so reasoning and transcripts share one embedding space")

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        return self.embedder.embed(list(texts)).vectors

    def close(self) -> None:
        self.embedder.close()


def _run(folder: Path, model_config: ClassifierConfig, splits: Splits, config: TrainConfig,
         seed: int, modalities: Sequence[str], encoders: dict[str, torch.nn.Module] | None,
         say: Say) -> tuple[torch.nn.Module, dict[str, Any]]:
    """One training run (a stage and a modality set, for one seed), or its saved result."""
    result_path = folder / "result.json"
    if result_path.is_file():
        model, _, _ = load_checkpoint(folder)
        return model, json.loads(result_path.read_text())
    stage2 = encoders is not None
    torch.manual_seed(seed)
    model = HiddenEmotionClassifier(model_config)
    if stage2:
        model.image_encoder.load_state_dict(encoders["image"].image_encoder.state_dict())
        model.keypoint_encoder.load_state_dict(
            encoders["keypoints"].keypoint_encoder.state_dict())
        model.text_encoder.load_state_dict(encoders["text"].text_encoder.state_dict())
    settings = FitSettings(
        epochs=config.stage2_epochs if stage2 else config.stage1_epochs,
        lr=config.stage2_lr if stage2 else config.stage1_lr,
        weight_decay=config.weight_decay, batch_size=config.batch_size,
        imbalance=config.imbalance, seed=seed, label_smoothing=config.label_smoothing,
        encoder_lr_scale=config.stage2_encoder_lr_scale if stage2 else 1.0,
        embedding_jitter=config.embedding_jitter, device=config.device)
    name = f"seed {seed} {'stage 2' if stage2 else 'stage 1'} {'+'.join(modalities)}"
    history = fit(model, splits.train, settings, modalities, val=splits.val,
                  state_path=folder / "state.pt", description=name)
    result = {"modalities": list(modalities), "seed": seed,
              "test": evaluate(model, splits.test, modalities),
              "val": evaluate(model, splits.val, modalities) if splits.val else None,
              "history": history}
    video = result["test"]["video"]
    say(f"{name}: test video accuracy {video['accuracy']:.3f}, balanced "
        f"{video['balanced_accuracy']:.3f}")
    save_checkpoint(model, model_config, folder, {"seed": seed, "modalities": list(modalities)})
    result_path.write_text(json.dumps(result, indent=2))
    (folder / "state.pt").unlink(missing_ok=True)
    return model, result


def _summary(per_seed: dict[str, Any]) -> dict[str, Any]:
    return {"seeds": {seed: {k: r[k] for k in ("test", "val")} for seed, r in per_seed.items()},
            "test": {level: summarize([r["test"][level] for r in per_seed.values()])
                     for level in ("window", "video")}}


def _metrics(config: TrainConfig, profile: Profile, store: FeatureStore, splits: Splits,
             model_config: ClassifierConfig, stage1: dict[str, dict[str, Any]],
             stage2: dict[str, Any]) -> dict[str, Any]:
    from training.models.latency import window_latency_ms

    model = HiddenEmotionClassifier(model_config)
    metrics: dict[str, Any] = {
        "profile": profile.name,
        "data": {"source": store.info.source, "path": str(store.root),
                 "videos": {"train": len(splits.train.video_ids),
                            "val": len(splits.val.video_ids) if splits.val else 0,
                            "test": len(splits.test.video_ids)},
                 "windows": {"train": len(splits.train), "test": len(splits.test)},
                 "test_label_counts": np.bincount(splits.test.video_labels,
                                                  minlength=2).tolist(),
                 "random_weight_features": store.info.random_weights,
                 "shuffled_labels": config.shuffle_labels},
        "best_possible": _best_possible(store, splits),
        "stage1": {m: _summary(runs) for m, runs in stage1.items()},
        "stage2": {"all": _summary(stage2)},
        "model": {"config": model_config.to_dict(),
                  "parameters": model.count_parameters(),
                  "cpu_ms_per_window": window_latency_ms(
                      model, image_slots=profile.classifier.image_slots,
                      keypoint_slots=profile.classifier.keypoint_slots)},
        "config": config.model_dump(mode="json"),
        "git_commit": git_commit(),
        "versions": library_versions(),
        "created": utc_now(),
    }
    return metrics


def _best_possible(store: FeatureStore, splits: Splits) -> dict[str, Any] | None:
    """The generator's ceiling on this test set (synthetic data only)."""
    if store.info.source != "synthetic":
        return None
    spec = synthetic.SyntheticSpec.model_validate(store.info.extra["generator"])
    videos, majority = splits.test_videos, splits.train_majority
    return {
        "video_accuracy": {"all": synthetic.best_possible(videos, majority),
                           **{m: synthetic.best_possible(videos, majority, [m])
                              for m in synthetic.MODALITIES}},
        "expected_video_accuracy": {
            "all": synthetic.expected_best_possible(spec),
            **{m: synthetic.expected_best_possible(spec, [m]) for m in synthetic.MODALITIES}},
        "note": "best predictor: the clean label whenever a modality carries it, else the "
                "training majority; scored against the observed (noisy) test labels",
    }


def _install(config: TrainConfig, profile: Profile, out: Path, stage2: dict[str, Any],
             spec: WindowSpec, say: Say) -> dict[str, Any]:
    """Copy the stage-2 model with the best validation score where `engines build` looks."""
    def score(seed: str) -> float:
        result = stage2[seed]
        chosen = result["val"] or result["test"]
        return chosen["video"]["balanced_accuracy"]

    seed = max(stage2, key=score) if any(r["val"] for r in stage2.values()) else \
        next(iter(stage2))
    model, model_config, _ = load_checkpoint(out / f"seed{seed}" / "stage2-all")
    target = Path(config.weights_dir) / INSTALL_SUBDIR / profile.name
    save_checkpoint(model, model_config, target, {
        "window": {"window_seconds": spec.window_seconds, "image_rate": spec.image_rate,
                   "keypoint_rate": spec.keypoint_rate},
        "trained": {"run": str(out.resolve()), "seed": int(seed), "git_commit": git_commit(),
                    "created": utc_now()}})
    say(f"installed seed {seed}'s stage-2 model to {target}; `hidemo engines build --profile "
        f"{profile.name}` rebuilds the classifier engine from it")
    return {"seed": int(seed), "path": str(target)}


def _plot(path: Path, histories: dict[str, dict[int, list]]) -> None:
    from training.plots import learning_curves

    learning_curves(path, histories)
