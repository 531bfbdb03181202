"""Load a verified engine on the best backend present. The one door into ``engines/``.

``backend="auto"`` prefers a native TensorRT plan that the manifest lists for this TensorRT
version and GPU, then onnxruntime with CUDA (and its TensorRT provider when present), then
onnxruntime on the CPU; each step down is logged. ``backend="tensorrt"`` takes the plan or
refuses, naming ``hidemo engines build --tensorrt``. Every path first reads and verifies the
manifest (plans included): a missing, stale or unverified engine is refused.

:func:`open_engine` is what the adapters, the live stages and the benchmark call: it returns
the manifest with the engine (the adapters read its ``preprocess``).

Example:
    >>> engine = load_engine(Path("artifacts/engines/edge"), "detector")  # doctest: +SKIP
    >>> engine, manifest = open_engine("artifacts/engines/edge", "classifier")  # doctest: +SKIP
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
from engines.plans import no_plan_message, select_plan, tensorrt_build_command
from engines.serving.settings import TritonSettings
from engines.sources.mediapipe import KEYPOINT_ROLE
from engines.sources.roles import ROLES

log = logging.getLogger(__name__)

BackendChoice = Backend | str | TritonSettings
"""Where an engine runs: a local backend by name, or a Triton server (its settings): the
engines those settings list are served there, every other one runs locally on ``auto``."""


def local_backend(backend: BackendChoice, name: str) -> Backend | TritonSettings:
    """``backend`` for engine ``name``: the Triton settings when that engine is served,
    else the local backend (``auto`` for an engine a Triton run keeps local)."""
    if isinstance(backend, TritonSettings):
        return backend if name in backend.engines else Backend.AUTO
    return Backend(backend)


def open_engine(engine_dir: Path | str, name: str, backend: BackendChoice = Backend.AUTO, *,
                threads: int = 0) -> tuple[Engine, EngineManifest]:
    """Read, verify and load engine ``name``; the manifest comes back with it.

    ``backend="torch"`` rebuilds the perception engines from their torch sources; an engine
    whose module lives in training/ (the window classifier), which the torch backend cannot
    rebuild, runs on onnxruntime instead (logged), so one backend setting serves a whole run.
    """
    engine_dir = Path(engine_dir)
    manifest = read_manifest(engine_dir, name)
    chosen = local_backend(backend, name)
    if chosen is Backend.TORCH and manifest.role not in ROLES and manifest.role != KEYPOINT_ROLE:
        log.info("%s: backend torch covers the perception engines; this one runs on "
                 "onnxruntime", manifest.name)
        chosen = Backend.ONNXRUNTIME
    engine = load_engine(engine_dir, name, chosen, threads=threads, manifest=manifest)
    return engine, manifest


def load_engine(engine_dir: Path, name: str, backend: BackendChoice = Backend.AUTO, *,
                threads: int = 0, device_id: int = 0, weights_dir: Path | None = None,
                providers: list[str] | None = None, trt_fp16: bool = False,
                manifest: EngineManifest | None = None) -> Engine:
    """Verify then open engine ``name`` from ``engine_dir`` on ``backend``.

    ``providers`` pins onnxruntime's execution providers: each GPU provider named must be
    available, else :class:`~engines.backends.onnxruntime.ProviderUnavailable`. Default:
    TensorRT, CUDA, CPU, whichever this onnxruntime build has (the fallback is logged).
    ``trt_fp16`` lets onnxruntime's TensorRT provider use fp16 kernels. Triton settings
    as ``backend``: the engine is served there (:mod:`engines.backends.triton`) when the
    settings list it, after the same local verification.
    """
    engine_dir = Path(engine_dir)
    backend = local_backend(backend, name)
    manifest = manifest or read_manifest(engine_dir, name)
    verify(manifest, engine_dir)
    if manifest.random_weights:
        log.warning("engine %s (%s) has RANDOM weights: its outputs are meaningless",
                    name, manifest.model)
    if isinstance(backend, TritonSettings):
        from engines.backends.triton import TritonEngine

        return TritonEngine.open(engine_dir, manifest, backend)
    if backend is Backend.TFLITE:
        from engines.backends.tflite import TfliteEngine

        return TfliteEngine.from_manifest(manifest, threads=threads)
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
        trt_fp16=trt_fp16,
        required=providers is not None,
    )


def onnxruntime_preference() -> list[str]:
    """Providers in order of preference; unavailable ones are skipped by the backend."""
    return [ort_backend.TENSORRT, ort_backend.CUDA, ort_backend.CPU]


def _open_tensorrt(manifest: EngineManifest, engine_dir: Path, device_id: int, *,
                   required: bool) -> Engine | None:
    """The native plan built for this GPU and TensorRT version.

    ``required`` (backend ``tensorrt``): refuse when there is none. Otherwise (``auto``):
    None, with a log line saying why, so the caller falls back to onnxruntime. The plan is
    chosen from the manifest before any GPU memory or stream is set up.
    """
    from engines.backends import tensorrt as trt_backend

    fix = tensorrt_build_command(manifest.profile, engine_dir)
    if not trt_backend.tensorrt_available():
        if required:
            raise trt_backend.BackendUnavailable(
                "backend 'tensorrt' requested but TensorRT (>= 10) or a CUDA GPU is not "
                "available here; install TensorRT 10 for your CUDA and GPU, then run "
                f"`{fix}`, or use backend 'onnxruntime'"
            )
        log.debug("%s: TensorRT or a CUDA GPU is not available; using onnxruntime",
                  manifest.name)
        return None
    version = trt_backend.import_tensorrt().__version__
    gpu = trt_backend.cuda_device(device_id).name
    if select_plan(manifest.plans, version, gpu) is None:
        message = no_plan_message(manifest.name, manifest.plans, version, gpu)
        if required:
            raise EngineMissing(message, fix)
        log.info("%s; using onnxruntime (build one: %s)", message, fix)
        return None
    try:
        return trt_backend.TensorRTEngine.from_manifest(manifest, engine_dir,
                                                        device_id=device_id)
    except (EngineRefused, trt_backend.BackendUnavailable) as exc:
        if required:
            raise
        log.warning("%s: its TensorRT plan cannot be used (%s); using onnxruntime",
                    manifest.name, str(exc).splitlines()[0])
        return None


def _load_torch(manifest: EngineManifest, engine_dir: Path, weights_dir: Path | None,
                threads: int) -> Engine:
    """Rebuild the source model the engine came from; refuse if it is not the same source."""
    from engines.backends.torch_eager import TorchEngine
    from engines.profiles import get_profile
    from engines.sources import WeightsLocator, build_source

    if manifest.role == KEYPOINT_ROLE:
        return _load_onnx_on_torch(manifest, engine_dir, threads)
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


def _load_onnx_on_torch(manifest: EngineManifest, engine_dir: Path, threads: int) -> Engine:
    """A converted engine (no torch source exists) on torch through onnx2torch: the verified
    ONNX file itself becomes the module, on CUDA when torch sees a GPU."""
    import torch

    from engines.backends.onnx_torch import onnx_module
    from engines.backends.torch_eager import TorchEngine

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return TorchEngine(manifest.name, onnx_module(engine_dir / manifest.onnx_file),
                       manifest.signature, random_weights=manifest.random_weights,
                       device=device, threads=threads)
