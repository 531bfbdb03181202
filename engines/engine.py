"""The one interface every backend implements: named arrays in, named arrays out, batched.

Callers (adapters, the live pipeline, the benchmark) only see :class:`Engine`; which runtime
sits behind it is chosen once, by :func:`engines.runtime.load_engine`.

Example:
    >>> engine = load_engine("artifacts/engines/edge", "image_embedder")  # doctest: +SKIP
    >>> out = engine.run({"pixels": np.zeros((4, 3, 224, 224), np.float32)})  # doctest: +SKIP
    >>> out["cls"].shape  # doctest: +SKIP
    (4, 384)
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np

from engines.spec import Signature


class Backend(enum.StrEnum):
    """Runtimes an engine can run on. ``AUTO`` resolves to the fastest one present."""

    AUTO = "auto"
    TENSORRT = "tensorrt"
    ONNXRUNTIME = "onnxruntime"
    TORCH = "torch"
    TFLITE = "tflite"
    """Keypoint engines only: the ``.tflite`` they were converted from, on its interpreter."""


class Engine(ABC):
    """A loaded model with a fixed :class:`Signature`.

    ``run`` takes a batch (every input's axis 0 is ``batch`` unless the signature says
    otherwise) and returns every declared output as a numpy array on the host.
    """

    def __init__(self, name: str, signature: Signature, *, random_weights: bool) -> None:
        self.name = name
        self.signature = signature
        self.random_weights = random_weights

    @property
    @abstractmethod
    def backend(self) -> str:
        """Backend label, with its accelerator where that matters (``onnxruntime:cpu``)."""

    @property
    @abstractmethod
    def device(self) -> str:
        """Where the computation runs: ``cpu`` or ``cuda:N``."""

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Validate ``feeds`` against the signature, then run the model once on the batch."""
        feeds = dict(feeds)
        self.signature.check_feeds(feeds)
        return self._run(feeds)

    @abstractmethod
    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Backend-specific inference on already-validated feeds."""

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release runtime resources; the engine is unusable afterwards."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        flag = ", RANDOM WEIGHTS" if self.random_weights else ""
        return f"<{type(self).__name__} {self.name} on {self.backend}{flag}>"
