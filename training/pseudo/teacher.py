"""A trained hidemo classifier as a pseudo-label teacher (self-training, works offline).

Where a VLM looks at frames, this teacher reads the video's stored features: it cuts the
video into windows exactly as evaluation does (the profile's window length at the store's
rates, half a window apart unless the run evaluated at another stride), averages the
positive probability of its windows, and answers the class on that side of 0.5 with the
probability of that class as its confidence. Its reasoning is a short factual text made
from the numbers, including what each modality says alone (its mask is the only one left
on, as in stage 1 and at serving time), so it can feed the text modality like a VLM's
explanation would.

The model id is ``<name>@<sha256[:12] of model.safetensors>``: the weights, not the path,
decide whether two labelling runs are the same (a retrained model is a new cache entry).

Example:
    >>> teacher = CheckpointTeacher.from_run(Path("runs/x"), Path("runs/x/f"))  # doctest: +SKIP
    >>> teacher.label(LabelInput("syn0001", "", ())).verdict.label  # doctest: +SKIP
    'positive'
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engines.profiles import PROFILES, get_profile
from engines.record import Record
from training.features.store import FeatureStore, VideoFeatures
from training.models.checkpoint import WEIGHTS_FILE, is_checkpoint, load_checkpoint
from training.models.classifier import HiddenEmotionClassifier
from training.models.config import ClassifierConfig
from training.pseudo.records import (
    LABEL_NAMES,
    LabelInput,
    LabelOutcome,
    Status,
    Usage,
    Verdict,
    canonical_json,
    file_sha256,
)
from training.trainer import ALL_MODALITIES, MODALITY_MASKS, predict, window_tensors
from training.windows import WindowSet, WindowSpec, cut_windows

PROVIDER = "teacher"
PROMPT_VERSION = "none"
"""A checkpoint has no prompt; the key's prompt part is constant."""
STAGE2_FOLDER = "stage2-all"
INSTALL_PARENT = "classifier"
"""``hidemo train`` installs to ``WEIGHTS/classifier/<profile>``: such a folder's name is the
profile it was trained for."""


@dataclass(frozen=True)
class CheckpointSource:
    """Which checkpoint a teacher loads and what is known about how it was trained."""

    folder: Path
    name: str
    """Human part of the model id: the checkpoint folder's name, or ``<run>-seed<N>``."""
    profile: str | None
    """The profile it was trained for, when the folder says (a run, an installed model)."""
    eval_stride: float | None = None
    """The run's evaluation stride (None: half a window, the recipe's default)."""
    seed: int | None = None


class ModalityReading(Record):
    """What one modality says alone, over the windows where it is present."""

    probability: float | None
    """Mean positive probability with only this modality's mask on; None when absent."""
    windows: int
    """Windows in which the modality has at least one present slot."""


class TeacherReading(Record):
    """The numbers behind one video's pseudo-label."""

    windows: int
    window_seconds: float
    positive_probability: float
    """Mean over all windows, all modalities on (what evaluation scores)."""
    alone: dict[str, ModalityReading]

    @property
    def class_id(self) -> int:
        return int(self.positive_probability >= 0.5)  # evaluation's threshold

    @property
    def confidence(self) -> float:
        p = self.positive_probability
        return p if self.class_id == 1 else 1.0 - p

    def driver(self) -> str | None:
        """The present modality that, alone, leans furthest towards the call; None when no
        modality alone reaches the call (the combination decides)."""
        sign = 1.0 if self.class_id == 1 else -1.0
        leaning = {m: sign * (r.probability - 0.5) for m, r in self.alone.items()
                   if r.probability is not None}
        if not leaning:
            return None
        best = max(leaning, key=leaning.__getitem__)
        return best if leaning[best] >= 0 else None

    def reasoning(self) -> str:
        """A short factual account of the numbers (the teacher's 'explanation')."""
        name = LABEL_NAMES[self.class_id]
        parts = [f"Trained hidemo classifier over {self.windows} window(s) of "
                 f"{self.window_seconds:g} s: mean positive probability "
                 f"{self.positive_probability:.2f}, so {name} (confidence "
                 f"{self.confidence:.2f})."]
        alone = []
        for modality in ALL_MODALITIES:
            reading = self.alone[modality]
            if reading.probability is None:
                alone.append(f"{modality} absent")
            else:
                alone.append(f"{modality} {reading.probability:.2f} "
                             f"({reading.windows}/{self.windows} windows)")
        parts.append("Positive probability per modality alone: " + ", ".join(alone) + ".")
        driver = self.driver()
        if driver is None:
            parts.append(f"No modality alone leans {name}; the call comes from their "
                         "combination.")
        else:
            parts.append(f"{driver.capitalize()} drives the call.")
        return " ".join(parts)



def installed_seed(metrics: Mapping[str, Any]) -> int:
    """The seed whose stage-2 model ``hidemo train`` installed (or would have).

    The same rule as ``recipe._install``, replicated here rather than imported (a private
    function of a module that is being changed): the seed ``metrics.json`` records under
    ``installed``; else, when any seed has validation metrics, the seed with the best
    validation video balanced accuracy (a seed without val counts its test score, ties go
    to the earlier seed); else the first seed.
    """
    if metrics.get("installed"):
        return int(metrics["installed"]["seed"])
    seeds: dict[str, Any] = metrics["stage2"]["all"]["seeds"]
    if not seeds:
        raise ValueError("metrics.json lists no stage-2 seeds")

    def score(seed: str) -> float:
        chosen = seeds[seed]["val"] or seeds[seed]["test"]
        return float(chosen["video"]["balanced_accuracy"])

    if any(result.get("val") for result in seeds.values()):
        return int(max(seeds, key=score))
    return int(next(iter(seeds)))


def resolve_source(path: Path) -> CheckpointSource:
    """A checkpoint folder as is, or a ``hidemo train --out`` run's installed stage-2 model."""
    path = Path(path)
    if is_checkpoint(path):
        profile = path.name if path.parent.name == INSTALL_PARENT and path.name in PROFILES \
            else None
        return CheckpointSource(path, path.name, profile)
    config_path, metrics_path = path / "config.json", path / "metrics.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{path} is neither a classifier checkpoint (model.safetensors "
                                "+ config.json) nor a `hidemo train --out` run folder")
    if not metrics_path.is_file():
        raise FileNotFoundError(f"{path} is a training run without metrics.json: it has not "
                                "finished; run `hidemo train` with the same --out to finish it")
    config = json.loads(config_path.read_text())["config"]
    seed = installed_seed(json.loads(metrics_path.read_text()))
    folder = path / f"seed{seed}" / STAGE2_FOLDER
    if not is_checkpoint(folder):
        raise FileNotFoundError(f"run {path}: seed {seed}'s stage-2 checkpoint {folder} is "
                                "missing")
    return CheckpointSource(folder, f"{path.resolve().name}-seed{seed}", config.get("profile"),
                            eval_stride=config.get("eval_stride"), seed=seed)


def _check_compatible(source: CheckpointSource, config: ClassifierConfig,
                      extra: Mapping[str, Any], store: FeatureStore, spec: WindowSpec) -> None:
    """Refuse a store the checkpoint was not trained for (its scores would be noise)."""
    info = store.info
    if source.profile is not None and source.profile != info.profile:
        raise ValueError(f"checkpoint {source.folder} was trained for profile "
                         f"{source.profile!r}, but feature store {store.root} holds "
                         f"{info.profile!r} features; label with a {info.profile} checkpoint "
                         "or re-extract the features")
    widths = (config.image_dim, config.text_dim)
    if widths != (info.image_dim, info.text_dim):
        raise ValueError(f"checkpoint {source.folder} takes image/text embeddings of width "
                         f"{widths[0]}/{widths[1]}, feature store {store.root} holds "
                         f"{info.image_dim}/{info.text_dim} (profile {info.profile!r})")
    window = extra.get("window")
    if window:
        trained = WindowSpec(float(window["window_seconds"]), float(window["image_rate"]),
                             float(window["keypoint_rate"]))
        if trained != spec:
            raise ValueError(f"checkpoint {source.folder} was trained on windows {trained}, "
                             f"feature store {store.root} gives {spec}")


class CheckpointTeacher:
    """A :class:`~training.pseudo.records.Labeler` backed by a trained classifier."""

    provider = PROVIDER
    prompt_version = PROMPT_VERSION
    needs_images = False

    def __init__(self, model: HiddenEmotionClassifier, store: FeatureStore, spec: WindowSpec,
                 *, model_id: str, stride: float | None = None) -> None:
        self.network = model.eval()
        self.store = store
        self.spec = spec
        self.stride = stride or spec.window_seconds / 2
        self.model = model_id

    @classmethod
    def from_run(cls, path: Path, features: Path) -> CheckpointTeacher:
        """Load the teacher from a run folder or a checkpoint folder (see
        :func:`resolve_source`) to label the videos of the feature store ``features``."""
        source = resolve_source(path)
        store = FeatureStore.open(Path(features))
        profile = get_profile(store.info.profile)
        spec = WindowSpec(profile.classifier.window_seconds, store.info.image_rate,
                          store.info.keypoint_rate)
        model, config, extra = load_checkpoint(source.folder)
        _check_compatible(source, config, extra, store, spec)
        digest = file_sha256(source.folder / WEIGHTS_FILE)
        return cls(model, store, spec, model_id=f"{source.name}@{digest[:12]}",
                   stride=source.eval_stride)

    def read(self, video: VideoFeatures) -> TeacherReading:
        """Score one video: all modalities, then each modality alone."""
        windows = cut_windows([video], self.spec, self.store.info.image_dim,
                              self.store.info.text_dim, stride=self.stride)
        overall = predict(self.network, windows)
        return TeacherReading(windows=len(windows), window_seconds=self.spec.window_seconds,
                              positive_probability=float(overall.mean()),
                              alone=self._alone(windows))

    def _alone(self, windows: WindowSet) -> dict[str, ModalityReading]:
        feeds = window_tensors(windows)
        out = {}
        for modality, mask in MODALITY_MASKS.items():
            present = feeds[mask].reshape(len(windows), -1).sum(dim=1).numpy() > 0
            if not present.any():
                out[modality] = ModalityReading(probability=None, windows=0)
                continue
            probs = predict(self.network, windows, (modality,))
            out[modality] = ModalityReading(probability=float(probs[present].mean()),
                                            windows=int(present.sum()))
        return out

    def label(self, item: LabelInput) -> LabelOutcome:
        """Label ``item.video_id`` from its stored features; a video the store lacks (or
        cannot read) is a failed outcome naming the video and the store."""
        start = time.perf_counter()
        try:
            video = self.store.get(item.video_id)
        except FileNotFoundError:
            return self._failed(f"video {item.video_id!r} is not in feature store "
                                f"{self.store.root}; extract its features first", start)
        except (OSError, ValueError, KeyError) as exc:
            return self._failed(f"video {item.video_id!r}: its features in store "
                                f"{self.store.root} cannot be read ({exc})", start)
        reading = self.read(video)
        if all(r.probability is None for r in reading.alone.values()):
            return self._failed(f"video {item.video_id!r} in feature store {self.store.root} "
                                "has no image, keypoint or text features in any window", start)
        verdict = Verdict(label=LABEL_NAMES[reading.class_id],
                          confidence=float(np.clip(reading.confidence, 0.0, 1.0)),
                          reasoning=reading.reasoning())
        seconds = time.perf_counter() - start
        return LabelOutcome(status=Status.LABELLED, verdict=verdict,
                            responses=(canonical_json(reading.model_dump(mode="json")),),
                            usage=Usage(0, 0, None), attempts=1, seconds=seconds,
                            call_seconds=seconds)

    def _failed(self, error: str, start: float) -> LabelOutcome:
        seconds = time.perf_counter() - start
        return LabelOutcome(status=Status.FAILED, usage=Usage(0, 0, None), attempts=1,
                            error=error, seconds=seconds, call_seconds=seconds)

    def close(self) -> None:
        """Nothing to release (no connection, no engine session)."""
