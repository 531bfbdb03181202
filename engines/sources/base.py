"""What every source builder returns and where weights are looked for.

The builders import this module; the dispatch by role that imports them is
:mod:`engines.sources.roles`, so neither side imports the other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines.manifest import SourceInfo
from engines.spec import Signature

log = logging.getLogger(__name__)

RANDOM_SEED = 0

@dataclass
class SourceModel:
    """A torch module ready to export, with everything the manifest needs to describe it.

    ``module`` takes the signature's inputs as positional tensors and returns a tuple in
    the signature's output order. ``sample_feeds(sizes)`` makes a realistic input for the
    named dynamic axes (``{"batch": 2, "sequence": 16}``), used for parity and benchmarks.
    """

    name: str
    model: str
    module: Any
    signature: Signature
    source: SourceInfo
    config: dict[str, Any]
    sample_feeds: Callable[[dict[str, int]], dict[str, np.ndarray]]
    parity_shapes: list[dict[str, int]]
    preprocess: dict[str, Any] = field(default_factory=dict)
    extra_files: dict[str, Path] = field(default_factory=dict)
    """Files the engine needs at run time, by purpose (``{"tokenizer": .../tokenizer.json}``).
    The build copies each beside the engine and records its name in ``preprocess[purpose]``."""
    exporter: str = "torch"
    """``torch`` (torch.onnx.export) or ``ultralytics`` (ultralytics' own exporter)."""
    native: Any = None
    """The library object the module came from (an ultralytics ``YOLO``), for its exporter."""

    def __post_init__(self) -> None:
        # Wrappers are new modules (training mode by default), and torch.onnx.export restores
        # the mode it found: eval here, or dropout turns on after the first export.
        self.module.eval()

    @property
    def random_weights(self) -> bool:
        return self.source.random_weights


@dataclass(frozen=True)
class WeightsLocator:
    """Where checkpoints are looked for: a weights folder first, then the Hugging Face cache.

    ``weights/yolo11x.pt`` for ultralytics; ``weights/facebook/dinov2-base/`` (a
    ``save_pretrained`` folder) for transformers, else ``from_pretrained(model_id,
    local_files_only=True)`` which finds a model already in the Hugging Face cache.
    """

    weights_dir: Path = Path("weights")

    def file(self, name: str) -> Path | None:
        path = self.weights_dir / name
        return path if path.is_file() else None

    def pretrained_dir(self, model_id: str) -> Path | None:
        local = self.weights_dir / model_id
        if (local / "config.json").is_file():
            return local
        try:
            from huggingface_hub import snapshot_download

            cached = Path(snapshot_download(model_id, local_files_only=True))
        except Exception:  # noqa: BLE001 - any failure means "not in the cache"
            return None
        return cached if (cached / "config.json").is_file() else None


def warn_random(role: str, model: str, looked: str) -> None:
    log.warning(
        "%s: no weights for %s (looked in %s); building the architecture with RANDOM "
        "weights. Latency is real, predictions are meaningless. Put the checkpoint there "
        "and rebuild to use real weights.",
        role, model, looked,
    )
