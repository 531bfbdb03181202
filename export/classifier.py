"""The window classifier's engine: its torch source, and an optional int8 variant for CPUs.

Source: the checkpoint ``hidemo train`` installs at ``<weights_dir>/classifier/<profile>/``
(``model.safetensors`` + ``config.json``, see :mod:`training.models.checkpoint`), hashed as
a folder so a retrained model makes the engine stale; without one, the profile's
architecture (``ClassifierConfig.from_profile``) with seeded random weights, said loudly.
The window spec (seconds, rates) comes from the checkpoint when it saved one, else from the
profile; it goes into the manifest's ``preprocess`` so the adapter builds matching windows.

int8 (``hidemo engines build --int8``): ``classifier_int8`` is the fp32 ONNX through
onnxruntime's dynamic quantization (weights QUInt8: QInt8 weights take the U8S8 kernels, whose
VPMADDUBSW int16 sums saturate on AVX2 CPUs without VNNI), weight MatMuls only (the attention
products stay fp32). It has its
own manifest (precision ``int8``) and a looser parity gate, :data:`INT8_TOLERANCE` on the
probabilities; :func:`int8_drift` measures what that costs in accuracy on labelled windows.

Example:
    >>> source = build_classifier_source(get_profile("tiny"), WeightsLocator())  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engines.adapters.classifier import CLASSIFIER_NAME, classifier_signature
from engines.adapters.openpose_layout import LOWER_BODY, NUM_CHANNELS, NUM_KEYPOINTS, RIGHT_HAND
from engines.engine import Engine
from engines.manifest import EngineManifest, ParityResult, SourceInfo, hash_source, sha256_json
from engines.profiles import Profile
from engines.sources.base import RANDOM_SEED, SourceModel, WeightsLocator, warn_random
from export.install import BuildOutcome, Progress, build_engine
from export.onnx_export import DEFAULT_OPSET
from export.parity import check_onnx_parity

log = logging.getLogger(__name__)

CLASSIFIER_INT8_NAME = f"{CLASSIFIER_NAME}_int8"
CHECKPOINT_SUBDIR = "classifier"

INT8_TOLERANCE = 0.05
"""Max abs difference of int8 vs torch probabilities. Dynamic quantization rounds each
weight to 1/255 of its tensor's range and each activation per call; on our random-weight
tiny and edge models that moved probabilities by about 1e-3 to 1e-2. 0.05 still catches a
broken graph (saturation moves them by 0.1-0.5) while tolerating a bit of rounding noise;
whether that noise flips decisions is measured by :func:`int8_drift`, not assumed."""

QUANTIZATION = {"method": "onnxruntime.quantize_dynamic", "weight_type": "QUInt8",
                "per_channel": False, "MatMulConstBOnly": True}
"""Recorded in the int8 manifest's config (and so in its identity)."""

PARITY_SHAPES = [
    {"batch": 1, "image_seq": 16, "keypoint_seq": 16},
    {"batch": 3, "image_seq": 64, "keypoint_seq": 64},
    {"batch": 3, "image_seq": 256, "keypoint_seq": 256},
    {"batch": 1, "image_seq": 16, "keypoint_seq": 256},
]
"""Window lengths 16, 64, 256 for both sequences, batch 1 and 3, and one with unequal
lengths: a trace-time size baked into a Reshape fails all but one of them."""


def checkpoint_dir(locator: WeightsLocator, profile: str) -> Path:
    """Where ``hidemo train`` installs the profile's final classifier."""
    return locator.weights_dir / CHECKPOINT_SUBDIR / profile


def build_classifier_source(profile: Profile, locator: WeightsLocator) -> SourceModel:
    """The classifier's torch source: the installed checkpoint, else seeded random weights."""
    import torch

    from training.models import ClassifierConfig, HiddenEmotionClassifier, load_checkpoint
    from training.models.checkpoint import is_checkpoint

    folder = checkpoint_dir(locator, profile.name)
    window = {"window_seconds": profile.classifier.window_seconds,
              "image_rate": profile.classifier.image_rate,
              "keypoint_rate": profile.classifier.keypoint_rate}
    if is_checkpoint(folder):
        model, config, extra = load_checkpoint(folder)
        _check_widths(config, profile, folder)
        window.update({k: float(v) for k, v in extra.get("window", {}).items() if k in window})
        source = SourceInfo(kind="checkpoint",
                            description=f"hidemo classifier checkpoint {folder}",
                            sha256=hash_source(folder), path=str(folder.resolve()))
    else:
        config = ClassifierConfig.from_profile(profile)
        warn_random(CLASSIFIER_NAME, "the window classifier", str(folder))
        torch.manual_seed(RANDOM_SEED)
        model = HiddenEmotionClassifier(config)
        # ``path`` is where a trained checkpoint would be: once `hidemo train` installs one
        # there, the runtime refuses this random engine instead of serving it silently.
        # The awaited folder is part of the identity: the same random engine built for
        # another weights folder must be rebuilt, or it would watch the wrong place.
        source = SourceInfo(
            kind="random-init",
            description=f"ClassifierConfig {config.to_dict()}, seed {RANDOM_SEED}",
            sha256=sha256_json({"config": config.to_dict(), "seed": RANDOM_SEED,
                                "awaits": str(folder.resolve())}),
            path=str(folder.resolve()))
    model = model.float().eval()
    preprocess = {**window, "image_dim": config.image_dim, "text_dim": config.text_dim}
    return SourceModel(
        name=CLASSIFIER_NAME,
        model=(f"hidemo window classifier ({config.keypoint_encoder} keypoints, "
               f"d{config.d_model} x{config.layers} layers)"),
        module=model,
        signature=classifier_signature(config.image_dim, config.text_dim),
        source=source,
        config={"model": config.to_dict(), "window": window},
        sample_feeds=window_sample_feeds(config.image_dim, config.text_dim),
        parity_shapes=[dict(shape) for shape in PARITY_SHAPES],
        preprocess=preprocess,
    )


def _check_widths(config: Any, profile: Profile, folder: Path) -> None:
    if (config.image_dim, config.text_dim) != (profile.image.dim, profile.text.dim):
        raise ValueError(
            f"classifier checkpoint {folder} takes {config.image_dim}-d image and "
            f"{config.text_dim}-d text embeddings; profile {profile.name!r} makes "
            f"{profile.image.dim}-d and {profile.text.dim}-d (trained on another profile?)"
        )


def window_sample_feeds(image_dim: int,
                        text_dim: int) -> Callable[[dict[str, int]], dict[str, np.ndarray]]:
    """Realistic windows for parity: some empty slots, no lower body, a hand out of view in
    half the frames, and per sample (i mod 4) all present / no keypoints / no text / no image.
    Masked slots are zero, as :func:`engines.adapters.windows.build_window` leaves them."""

    def sample_feeds(sizes: dict[str, int]) -> dict[str, np.ndarray]:
        batch, ti, tk = sizes["batch"], sizes["image_seq"], sizes["keypoint_seq"]
        rng = np.random.default_rng(batch * 1_000_003 + ti * 1009 + tk)
        image_mask = (rng.random((batch, ti)) > 0.2).astype(np.float32)
        keypoints_mask = (rng.random((batch, tk)) > 0.15).astype(np.float32)
        text_mask = np.ones((batch, 1), np.float32)
        for index in range(batch):
            missing = index % 4
            if missing == 1:
                keypoints_mask[index] = 0
            elif missing == 2:
                text_mask[index] = 0
            elif missing == 3:
                image_mask[index] = 0
        image = rng.standard_normal((batch, ti, image_dim)).astype(np.float32)
        keypoints = rng.normal(0.0, 0.6, (batch, tk, NUM_KEYPOINTS, NUM_CHANNELS))
        keypoints[..., 2] = rng.uniform(0.3, 1.0, (batch, tk, NUM_KEYPOINTS))
        keypoints[:, :, list(LOWER_BODY)] = 0.0
        keypoints[:, : tk // 2, RIGHT_HAND] = 0.0
        text = rng.standard_normal((batch, text_dim)).astype(np.float32)
        return {
            "image": image * image_mask[..., None],
            "image_mask": image_mask,
            "keypoints": (keypoints * keypoints_mask[..., None, None]).astype(np.float32),
            "keypoints_mask": keypoints_mask,
            "text": text * text_mask,
            "text_mask": text_mask,
        }

    return sample_feeds


def quantize_int8(fp32_onnx: Path, out_path: Path) -> Path:
    """Dynamic int8 of ``fp32_onnx``: QUInt8 weights, weight MatMuls only (see module doc)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet_root_logger():
        quantize_dynamic(str(fp32_onnx), str(out_path), weight_type=QuantType.QUInt8,
                         per_channel=False, extra_options={"MatMulConstBOnly": True})
    return out_path


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """onnxruntime's quantizer logs one line per tensor on the root logger (and a generic
    "consider pre-processing" warning); hide them so the build log stays readable."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def check_int8_parity(source: SourceModel, onnx_path: Path) -> ParityResult:
    """int8 engine vs the torch source at the parity shapes; gated on ``probs`` only (int8
    logits drift in proportion to their magnitude, which says little about decisions)."""
    raw = check_onnx_parity(source, onnx_path, INT8_TOLERANCE)
    probs = raw.max_abs_diff["probs"]
    log.info("%s: int8 vs torch max abs diff: probs %.3g, logits %.3g (not gated)",
             source.name, probs, raw.max_abs_diff["logits"])
    return raw.model_copy(update={"passed": probs <= INT8_TOLERANCE,
                                  "max_abs_diff": {"probs": probs}})


def build_int8_engine(source: SourceModel, fp32: EngineManifest, profile: str,
                      engine_dir: Path, *, force: bool = False, opset: int = DEFAULT_OPSET,
                      progress: Progress | None = None) -> BuildOutcome:
    """Quantize the verified fp32 classifier engine into ``classifier_int8`` (own manifest)."""
    int8_source = dataclasses.replace(
        source, name=CLASSIFIER_INT8_NAME,
        config={**source.config, "quantization": QUANTIZATION, "fp32_onnx": fp32.onnx_sha256})
    fp32_path = Path(engine_dir) / fp32.onnx_file
    return build_engine(int8_source, profile, engine_dir, force=force, opset=opset,
                        progress=progress, produce=lambda out: quantize_int8(fp32_path, out),
                        parity_check=check_int8_parity, precision="int8")


def int8_drift(fp32_engine: Engine, int8_engine: Engine,
               batches: Iterable[Mapping[str, np.ndarray]],
               labels: Iterable[np.ndarray] | None = None) -> dict[str, float]:
    """What int8 costs on real windows: run both engines on the same batches of feeds.

    Returns ``windows``, ``max_prob_diff``, ``mean_prob_diff``, ``decision_flips`` (fraction
    of windows whose argmax differs) and, with ``labels`` (one int array per batch),
    ``accuracy_fp32``, ``accuracy_int8`` and ``accuracy_drop``.
    """
    label_list = None if labels is None else [np.asarray(y) for y in labels]
    diffs, flips, correct32, correct8, count = [], 0, 0, 0, 0
    for index, feeds in enumerate(batches):
        p32 = fp32_engine.run(dict(feeds))["probs"]
        p8 = int8_engine.run(dict(feeds))["probs"]
        diffs.append(np.abs(p32.astype(np.float64) - p8).max(axis=1))
        flips += int((p32.argmax(1) != p8.argmax(1)).sum())
        count += len(p32)
        if label_list is not None:
            y = label_list[index]
            correct32 += int((p32.argmax(1) == y).sum())
            correct8 += int((p8.argmax(1) == y).sum())
    every = np.concatenate(diffs) if diffs else np.zeros(0)
    report = {"windows": float(count),
              "max_prob_diff": float(every.max(initial=0.0)),
              "mean_prob_diff": float(every.mean()) if count else 0.0,
              "decision_flips": flips / count if count else 0.0}
    if label_list is not None and count:
        report.update(accuracy_fp32=correct32 / count, accuracy_int8=correct8 / count,
                      accuracy_drop=(correct32 - correct8) / count)
    return report
