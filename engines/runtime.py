"""Load a verified engine on the best backend present. The one door into ``engines/``.

``backend="auto"`` prefers a native TensorRT plan built for this GPU, then onnxruntime with
CUDA (and its TensorRT provider when present), then onnxruntime on the CPU. Every path
first reads and verifies the manifest: a missing, stale or unverified engine is refused.

Example:
    >>> engine = load_engine(Path("artifacts/engines/edge"), "detector")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from pathlib import Path

from engines.backends import onnxruntime as ort_backend
from engines.engine import Backend, Engine
from engines.manifest import (
    EngineManifest,
    EngineMissing,
    EngineRefused,
    EngineStale,
    build_command,
    read_manifest,
    verify,
)

log = logging.getLogger(__name__)


def load_engine(engine_dir: Path, name: str, backend: Backend | str = Backend.AUTO, *,
                threads: int = 0, device_id: int = 0, weights_dir: Path | None = None,
                providers: list[str] | None = None,
                manifest: EngineManifest | None = None) -> Engine:
    """Verify then open engine ``name`` from ``engine_dir`` on ``backend``.

    ``providers`` pins onnxruntime's execution providers (default: TensorRT, CUDA, CPU,
    whichever this onnxruntime build has).
    """
    engine_dir = Path(engine_dir)
    backend = Backend(backend)
    manifest = manifest or read_manifest(engine_dir, name)
    verify(manifest, engine_dir)
    if manifest.random_weights:
        log.warning("engine %s (%s) has RANDOM weights: its outputs are meaningless",
                    name, manifest.model)
    if backend is Backend.TORCH:
        return _load_torch(manifest, engine_dir, weights_dir, threads)
    if backend in (Backend.AUTO, Backend.TENSORRT):
        engine = _open_tensorrt(manifest, engine_dir, device_id,
                                required=backend is Backend.TENSORRT)
        if engine is not None:
            return engine
    return ort_backend.OnnxRuntimeEngine(
        name,
        engine_dir / manifest.onnx_file,
        manifest.signature,
        random_weights=manifest.random_weights,
        providers=providers or onnxruntime_preference(),
        threads=threads,
        device_id=device_id,
        trt_cache=ort_backend.trt_cache_dir(engine_dir, device_id)
        if ort_backend.TENSORRT in ort_backend.available_providers() else None,
    )


def onnxruntime_preference() -> list[str]:
    """Providers in order of preference; unavailable ones are skipped by the backend."""
    return [ort_backend.TENSORRT, ort_backend.CUDA, ort_backend.CPU]


def _open_tensorrt(manifest: EngineManifest, engine_dir: Path, device_id: int, *,
                   required: bool) -> Engine | None:
    """The native plan built for this GPU and TensorRT version; None (auto) when there is none."""
    from engines.backends import tensorrt as trt_backend

    if not trt_backend.tensorrt_available():
        if required:
            raise trt_backend.BackendUnavailable(
                "backend 'tensorrt' requested but TensorRT (or a CUDA GPU) is not available "
                "here; install TensorRT 10 for your CUDA and GPU, or use --backend onnxruntime"
            )
        return None
    try:
        return trt_backend.TensorRTEngine.from_manifest(manifest, engine_dir,
                                                        device_id=device_id)
    except EngineMissing:
        if required:
            raise
        log.info("%s: no TensorRT plan for this GPU; using onnxruntime", manifest.name)
        return None


def _load_torch(manifest: EngineManifest, engine_dir: Path, weights_dir: Path | None,
                threads: int) -> Engine:
    """Rebuild the source model the engine came from; refuse if it is not the same source."""
    from engines.backends.torch_eager import TorchEngine
    from engines.profiles import get_profile
    from engines.sources import WeightsLocator, build_source
    from engines.sources.base import ROLES

    if manifest.role not in ROLES:
        # The window classifier's torch module lives in training/, which engines/ may not
        # import; its torch reference is export.classifier.build_classifier_source.
        raise EngineRefused(
            f"engine {manifest.name!r} (role {manifest.role!r}): the torch backend rebuilds "
            f"only the perception sources {list(ROLES)}; this engine's model lives in "
            "training/ and runs here on onnxruntime",
            "use backend 'onnxruntime' (or 'auto'): load_engine(..., backend='onnxruntime'), "
            "hidemo bench engines --backends onnxruntime",
        )
    locator = WeightsLocator(weights_dir) if weights_dir else WeightsLocator()
    source = build_source(manifest.role, get_profile(manifest.profile), locator)
    if source.source.sha256 != manifest.source.sha256:
        raise EngineStale(
            f"engine {manifest.name!r}: the torch source found now ({source.source.description})"
            f" is not the one the engine was built from ({manifest.source.description})",
            build_command(manifest.profile, engine_dir),
        )
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return TorchEngine(manifest.name, source.module, manifest.signature,
                       random_weights=manifest.random_weights, device=device, threads=threads)
