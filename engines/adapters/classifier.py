"""The window classifier engine: its signature, and the adapter that runs it on windows.

The engine takes one grid per modality (see :mod:`engines.adapters.windows`) and returns
logits and probabilities over :data:`CLASS_NAMES`. Sequence axes are dynamic and separate
per modality, so every modality keeps its own analysis rate.

Example:
    >>> classifier_signature(96, 64).input_names[:2]
    ['image', 'image_mask']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.adapters.common import require_preprocess
from engines.adapters.openpose_layout import NUM_CHANNELS, NUM_KEYPOINTS
from engines.adapters.windows import WindowBatch
from engines.engine import Backend, Engine
from engines.manifest import EngineManifest
from engines.runtime import open_engine
from engines.spec import Signature, TensorSpec

CLASS_NAMES = ("negative", "positive")
"""Output classes. iMiGUE's ``Lose`` is negative (0) and ``Win`` is positive (1)."""

CLASSIFIER_NAME = "classifier"
WINDOW_KEYS = ("window_seconds", "image_rate", "keypoint_rate", "image_dim", "text_dim")
"""What the classifier's manifest ``preprocess`` records: how its windows must be built."""


def classifier_signature(image_dim: int, text_dim: int) -> Signature:
    """Inputs and outputs of the window classifier for the given embedding widths."""
    return Signature(
        inputs=(
            TensorSpec(name="image", dtype="float32", shape=("batch", "image_seq", image_dim)),
            TensorSpec(name="image_mask", dtype="float32", shape=("batch", "image_seq")),
            TensorSpec(name="keypoints", dtype="float32",
                       shape=("batch", "keypoint_seq", NUM_KEYPOINTS, NUM_CHANNELS)),
            TensorSpec(name="keypoints_mask", dtype="float32", shape=("batch", "keypoint_seq")),
            TensorSpec(name="text", dtype="float32", shape=("batch", text_dim)),
            TensorSpec(name="text_mask", dtype="float32", shape=("batch", 1)),
        ),
        outputs=(
            TensorSpec(name="logits", dtype="float32", shape=("batch", len(CLASS_NAMES))),
            TensorSpec(name="probs", dtype="float32", shape=("batch", len(CLASS_NAMES))),
        ),
    )


@dataclass(frozen=True)
class WindowPredictions:
    """Per window: probabilities (B, 2) over :data:`CLASS_NAMES` and the label index."""

    probs: np.ndarray
    random_weights: bool = False

    @property
    def labels(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    @property
    def label_names(self) -> list[str]:
        return [CLASS_NAMES[i] for i in self.labels]


class WindowClassifier:
    """Runs the classifier engine on :class:`WindowBatch` es, in chunks of ``max_batch``."""

    def __init__(self, engine: Engine, manifest: EngineManifest, *, max_batch: int = 64) -> None:
        require_preprocess(manifest, WINDOW_KEYS, "window classifier")
        self.engine = engine
        self.manifest = manifest
        self.max_batch = max_batch
        window = manifest.preprocess
        self.window_seconds = float(window["window_seconds"])
        self.image_rate = float(window["image_rate"])
        self.keypoint_rate = float(window["keypoint_rate"])
        self.image_dim = int(window["image_dim"])
        self.text_dim = int(window["text_dim"])

    @classmethod
    def from_engine_dir(cls, engine_dir: Path | str, backend: Backend | str = Backend.AUTO,
                        name: str = CLASSIFIER_NAME, **kwargs: int) -> WindowClassifier:
        engine, manifest = open_engine(engine_dir, name, backend)
        return cls(engine, manifest, **kwargs)

    @property
    def random_weights(self) -> bool:
        return self.engine.random_weights

    def classify(self, batch: WindowBatch) -> WindowPredictions:
        probs = []
        feeds = batch.feeds()
        for lo in range(0, len(batch), self.max_batch):
            chunk = {k: v[lo:lo + self.max_batch] for k, v in feeds.items()}
            probs.append(self.engine.run(chunk)["probs"])
        out = np.concatenate(probs) if probs else np.zeros((0, len(CLASS_NAMES)), np.float32)
        return WindowPredictions(out, self.random_weights)

    def close(self) -> None:
        self.engine.close()
