"""DINOv2 image embeddings of person crops, batched, around the image-embedder engine.

Each crop (any size, BGR) is letterboxed into the engine's square ``image_size`` (aspect
kept: a squashed person is a different pose), converted to RGB, scaled to [0, 1] and
normalised with the ImageNet mean and std from the manifest. Padding is the mean colour,
which normalises to zero: the border adds no signal. Crops go through the engine in chunks
of ``max_batch`` (an engine, a TensorRT plan especially, has a largest batch).

Example:
    >>> embedder = ImageEmbedder.from_engine_dir("artifacts/engines/edge")  # doctest: +SKIP
    >>> embedder.embed([crop_a, crop_b]).cls.shape  # doctest: +SKIP
    (2, 384)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engines.runtime import BackendChoice

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.adapters.common import require_preprocess, require_rgb
from engines.adapters.detector import bgr_to_nchw, check_bgr_image, letterbox
from engines.adapters.records import ImageEmbeddings
from engines.engine import Backend, Engine
from engines.manifest import EngineManifest
from engines.runtime import open_engine

IMAGE_KEYS = ("image_size", "mean", "std", "channels")
"""Preprocess entries an image-embedder manifest must carry (engines.sources.image)."""


def _interpolation(crop_hw: tuple[int, int], size: int) -> int:
    """Area averaging when shrinking (no aliasing on large crops), bilinear when enlarging."""
    return cv2.INTER_AREA if max(crop_hw) > size else cv2.INTER_LINEAR


def embedder_batch(crops: Sequence[np.ndarray], size: int, mean: np.ndarray,
                   std: np.ndarray, *, first_index: int = 0) -> np.ndarray:
    """Letterboxed, RGB, normalised NCHW float32 batch of BGR ``crops``.

    ``mean`` and ``std`` are the RGB (3,) statistics of [0, 1] pixels. ``first_index`` only
    numbers the crops in error messages.
    """
    pad_bgr = tuple(round(float(v) * 255) for v in mean[::-1])
    canvas = np.empty((len(crops), size, size, 3), np.uint8)
    for index, crop in enumerate(crops):
        check_bgr_image(crop, f"crops[{first_index + index}]")
        letterbox(crop, size, pad_bgr, interpolation=_interpolation(crop.shape[:2], size),
                  out=canvas[index])
    # (pixel / 255 - mean) / std, folded into one multiply-add per channel
    return bgr_to_nchw(canvas, 1.0 / (255.0 * std), -mean / std)


class ImageEmbedder:
    """Image embedder on an :class:`Engine`: ``embed(crops)`` -> :class:`ImageEmbeddings`."""

    def __init__(self, engine: Engine, manifest: EngineManifest, *, max_batch: int = 32) -> None:
        require_preprocess(manifest, IMAGE_KEYS, "image embedder")
        if max_batch < 1:
            raise ValueError(f"max_batch is {max_batch}; it must be at least 1")
        pre: dict[str, Any] = manifest.preprocess
        require_rgb(manifest, "image embedder")
        self.engine = engine
        self.manifest = manifest
        self.max_batch = max_batch
        self.image_size = int(pre["image_size"])
        self.mean = np.asarray(pre["mean"], np.float64)
        self.std = np.asarray(pre["std"], np.float64)
        self.random_weights = bool(manifest.random_weights or engine.random_weights)
        self._input = engine.signature.input_names[0]
        outputs = {spec.name: spec for spec in engine.signature.outputs}
        if not {"cls", "patch_mean"} <= set(outputs):
            raise ValueError(
                f"image embedder {manifest.name!r} outputs {sorted(outputs)}; expected 'cls' "
                "and 'patch_mean' (rebuild with `hidemo engines build`)"
            )
        self.dim = int(outputs["cls"].shape[-1])

    @classmethod
    def from_engine_dir(cls, engine_dir: Path | str, backend: BackendChoice = Backend.AUTO,
                        *, name: str = "image_embedder", **options: Any) -> ImageEmbedder:
        """Verify and load engine ``name`` from ``engine_dir``; ``options`` go to ``__init__``."""
        engine, manifest = open_engine(engine_dir, name, backend)
        return cls(engine, manifest, **options)

    def embed(self, crops: Sequence[np.ndarray]) -> ImageEmbeddings:
        """Embeddings of BGR ``crops`` (any sizes), in order; empty input gives (0, D)."""
        cls_parts = [np.zeros((0, self.dim), np.float32)]
        patch_parts = list(cls_parts)
        for start in range(0, len(crops), self.max_batch):
            chunk = crops[start:start + self.max_batch]
            pixels = embedder_batch(chunk, self.image_size, self.mean, self.std,
                                    first_index=start)
            out = self.engine.run({self._input: pixels})
            cls_parts.append(out["cls"])
            patch_parts.append(out["patch_mean"])
        return ImageEmbeddings(np.concatenate(cls_parts), np.concatenate(patch_parts),
                               self.random_weights)

    def close(self) -> None:
        """Release the engine."""
        self.engine.close()
