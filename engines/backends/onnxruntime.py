"""ONNX Runtime backend: the default everywhere; CPU here, CUDA / TensorRT providers when present.

The TensorRT execution provider compiles the ONNX graph into a plan on first use; that
plan is cached in a folder named after the ONNX Runtime version, the TensorRT version
and the GPU, because a plan is only valid for exactly those.

Providers are an ordered preference. A provider this onnxruntime build lacks is never
skipped silently: with ``required=True`` (the caller pinned the providers) asking for a GPU
provider that cannot run raises :class:`ProviderUnavailable`; otherwise the fallback is
logged. onnxruntime itself falls back to the CPU when a GPU provider is compiled in but
cannot start (no CUDA libraries): the session's providers are checked after creation too.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from engines.engine import Engine
from engines.spec import Signature

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
GPU_PROVIDERS = (TENSORRT, CUDA)

log = logging.getLogger(__name__)


class ProviderUnavailable(RuntimeError):
    """A GPU execution provider was asked for and cannot run here; the message says why."""


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def trt_cache_dir(engine_dir: Path, device_id: int = 0) -> Path:
    """Versioned cache folder for TensorRT-EP plans: ``trt-cache/ort<ver>-trt<ver>-<gpu>``."""
    import onnxruntime as ort

    try:
        import tensorrt

        trt_version = tensorrt.__version__
    except (ImportError, OSError):
        trt_version = "unknown"
    gpu = _gpu_name(device_id).replace(" ", "_") or f"gpu{device_id}"
    return Path(engine_dir) / "trt-cache" / f"ort{ort.__version__}-trt{trt_version}-{gpu}"


def _gpu_name(device_id: int) -> str:
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(device_id))
    except Exception:  # noqa: BLE001 - the name only labels a cache folder
        return ""


def _install_hint(present: Collection[str]) -> str:
    import onnxruntime as ort

    return (f"this onnxruntime {ort.__version__} offers {sorted(present)}; install "
            "onnxruntime-gpu for this machine's CUDA (the TensorRT provider also needs "
            "TensorRT's libraries), or ask for the CPU: backend 'onnxruntime' without "
            "GPU providers")


def resolve_providers(wanted: Sequence[str], present: Collection[str], *,
                      required: bool) -> list[str]:
    """The providers of ``wanted`` that ``present`` offers, in order.

    ``required`` (the caller pinned the providers): every GPU provider of ``wanted`` must be
    present, else :class:`ProviderUnavailable`. Otherwise a missing provider is skipped and
    the fallback logged. Never empty: with nothing left, the CPU.
    """
    kept = [p for p in wanted if p in present]
    missing = [p for p in wanted if p not in present]
    missing_gpu = [p for p in missing if p in GPU_PROVIDERS]
    if missing_gpu and required:
        raise ProviderUnavailable(
            f"onnxruntime: asked for {missing_gpu}, not available; " + _install_hint(present))
    if missing_gpu and not any(p in GPU_PROVIDERS for p in kept):
        names = " or ".join(p.removesuffix("ExecutionProvider") for p in missing_gpu)
        log.info("onnxruntime: no %s provider here, running on the CPU", names)
    elif missing:
        log.info("onnxruntime: %s not available here; using %s", missing, kept)
    return kept or [CPU]


class OnnxRuntimeEngine(Engine):
    """An ``onnxruntime.InferenceSession`` behind the :class:`Engine` interface.

    ``providers`` is an ordered preference such as ``["TensorrtExecutionProvider",
    "CUDAExecutionProvider", "CPUExecutionProvider"]``; providers that this onnxruntime
    build lacks are skipped with a log line, so the same call works on a laptop and on a
    Jetson, unless ``required`` (see :func:`resolve_providers`). ``trt_fp16`` lets the
    TensorRT provider pick fp16 kernels; off by default because parity was checked in fp32.
    """

    def __init__(
        self,
        name: str,
        onnx_path: Path,
        signature: Signature,
        *,
        random_weights: bool,
        providers: list[str] | None = None,
        threads: int = 0,
        device_id: int = 0,
        trt_cache: Path | None = None,
        trt_fp16: bool = False,
        required: bool = False,
    ) -> None:
        import onnxruntime as ort

        super().__init__(name, signature, random_weights=random_weights)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # ENABLE_ALL crashed ORT 1.32 on fp16 Transformer graphs; EXTENDED
        # gives the same speed on the fp32 graphs we measured.
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.log_severity_level = 3
        present = set(ort.get_available_providers())
        wanted = resolve_providers(providers or [CPU], present, required=required)
        provider_args: list[tuple[str, dict[str, object]]] = []
        for provider in wanted:
            if provider == TENSORRT:
                cache = trt_cache or Path(onnx_path).parent / "trt-cache"
                cache.mkdir(parents=True, exist_ok=True)
                provider_args.append(
                    (
                        provider,
                        {
                            "device_id": device_id,
                            "trt_engine_cache_enable": True,
                            "trt_engine_cache_path": str(cache),
                            "trt_timing_cache_enable": True,
                            "trt_timing_cache_path": str(cache),
                            "trt_fp16_enable": trt_fp16,
                        },
                    )
                )
            elif provider == CUDA:
                provider_args.append((provider, {"device_id": device_id}))
            else:
                provider_args.append((provider, {}))
        self.session = ort.InferenceSession(
            str(onnx_path),
            sess_options=options,
            providers=[p for p, _ in provider_args],
            provider_options=[o for _, o in provider_args],
        )
        self._providers = self.session.get_providers()
        self._check_started(wanted, present, required=required)
        self._device_id = device_id
        self._output_names = signature.output_names

    def _check_started(self, wanted: list[str], present: Collection[str], *,
                       required: bool) -> None:
        """onnxruntime drops a GPU provider that fails to start (CUDA libraries missing) and
        runs on the CPU with only a log line of its own: refuse or say so."""
        lost = [p for p in wanted if p in GPU_PROVIDERS and p not in self._providers]
        if not lost:
            return
        message = (f"engine {self.name!r}: onnxruntime could not start {lost} (usually "
                   f"missing CUDA/cuDNN/TensorRT libraries) and runs on {self._providers}; "
                   + _install_hint(present))
        if required:
            raise ProviderUnavailable(message)
        log.warning("%s", message)

    @property
    def backend(self) -> str:
        first = self._providers[0]
        label = {TENSORRT: "tensorrt-ep", CUDA: "cuda", CPU: "cpu"}.get(first, first)
        return f"onnxruntime:{label}"

    @property
    def device(self) -> str:
        return "cpu" if self._providers[0] == CPU else f"cuda:{self._device_id}"

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(self._output_names, feeds)
        return dict(zip(self._output_names, outputs, strict=True))

    def close(self) -> None:
        del self.session
