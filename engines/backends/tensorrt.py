"""TensorRT backend: runs a serialized plan built by ``export/tensorrt_build.py``.

A plan is valid for exactly one TensorRT version and one GPU model, so its file name says
both (:func:`plan_file_name`); everything else about the engine (signature, precision,
hashes, parity) lives in the JSON manifest, never inside the plan. The manifest's ``plans``
(:class:`engines.plans.PlanRecord`) lists every plan built for the engine, so one engine
folder can hold plans for a desktop GPU and a Jetson side by side;
:meth:`TensorRTEngine.from_manifest` picks the one for this machine and refuses, with the
command that fixes it, when there is none.

Device memory comes from torch CUDA tensors (:class:`TorchCudaMemory`): torch is already a
dependency of the project (exporter, torch backend), its caching allocator avoids a
``cudaMalloc`` per call, it owns streams and pinned host staging, and it maps dtypes. The
alternative, cuda-python, would add a second CUDA binding with manual malloc/free and
error-code checks for no gain here. The memory strategy is injected through the constructor
(:class:`DeviceMemory`), so a deployment without torch can supply another one.

``import tensorrt`` happens only inside functions: this module imports everywhere, and
:class:`BackendUnavailable` says what to install when TensorRT or a CUDA device is missing.

Example:
    >>> plan_file_name("detector", "10.3.0", "NVIDIA H100", precision="fp16")
    'detector.trt10.3.0.NVIDIA_H100.fp16.plan'
    >>> engine = TensorRTEngine.from_manifest(manifest, engine_dir)  # doctest: +SKIP
    >>> engine.run({"x": np.zeros((4, 8), np.float32)})["y"].shape  # doctest: +SKIP
    (4, 3)
"""

from __future__ import annotations

import collections
import contextlib
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from engines.engine import Engine
from engines.manifest import (
    EngineManifest,
    EngineMissing,
    EngineStale,
    sha256_file,
)
from engines.plans import no_plan_message, select_plan, tensorrt_build_command
from engines.spec import Signature, SignatureError

MIN_TRT_MAJOR = 10
"""Name-based IO tensors, ``execute_async_v3`` and always-explicit-batch networks."""

INSTALL_HINT = (
    "install TensorRT >= 10 for this machine's CUDA (x86-64: `pip install tensorrt-cu12` "
    "from a machine that reaches pypi.nvidia.com; Jetson: it ships with JetPack), or run "
    "this engine on the onnxruntime backend instead"
)

_log = logging.getLogger("hidemo.tensorrt")


class BackendUnavailable(RuntimeError):
    """The TensorRT backend cannot run here: TensorRT, torch CUDA or a GPU is missing."""


class PlanError(RuntimeError):
    """A plan cannot be used: unreadable by this TensorRT/GPU, or it disagrees with its
    signature. :meth:`TensorRTEngine.from_manifest` turns it into an ``EngineStale``."""


def import_tensorrt() -> ModuleType:
    """Import ``tensorrt`` or raise :class:`BackendUnavailable` naming what to install."""
    try:
        import tensorrt
    except (ImportError, OSError) as exc:  # OSError: package present, libnvinfer missing
        raise BackendUnavailable(
            f"TensorRT backend unavailable: `import tensorrt` failed ({exc}); {INSTALL_HINT}"
        ) from exc
    version = str(getattr(tensorrt, "__version__", "0"))
    major = version.split(".")[0]
    if not major.isdigit() or int(major) < MIN_TRT_MAJOR:
        raise BackendUnavailable(
            f"TensorRT backend unavailable: found tensorrt {version}, hidemo needs "
            f">= {MIN_TRT_MAJOR} (name-based IO tensors, execute_async_v3); {INSTALL_HINT}"
        )
    return tensorrt


def _cuda_device_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - a broken CUDA install means "no device" here
        return 0


@dataclass(frozen=True)
class CudaDevice:
    """The GPU a plan is built for or runs on: what a plan's validity depends on."""

    index: int
    name: str
    compute_capability: str
    """``major.minor``, e.g. ``9.0`` for Hopper."""


def cuda_device(device_id: int = 0) -> CudaDevice:
    """Name and compute capability of CUDA device ``device_id`` (through torch).

    Raises :class:`BackendUnavailable` when there is no such device.
    """
    if _cuda_device_count() <= device_id:
        raise BackendUnavailable(
            f"no CUDA device cuda:{device_id}: TensorRT plans are built and run on an NVIDIA "
            "GPU seen by a CUDA build of torch"
        )
    import torch

    major, minor = torch.cuda.get_device_capability(device_id)
    return CudaDevice(device_id, torch.cuda.get_device_name(device_id), f"{major}.{minor}")


def tensorrt_available() -> bool:
    """True when ``tensorrt`` (>= 10) imports and torch sees at least one CUDA device."""
    try:
        import_tensorrt()
    except BackendUnavailable:
        return False
    return _cuda_device_count() > 0


# ---------------------------------------------------------------------------- plan names

_ENGINE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_TRT_VERSION = re.compile(r"^[0-9]+(\.[0-9A-Za-z]+)*$")
_PRECISION = re.compile(r"^[a-z0-9]+$")


def plan_file_name(
    engine_name: str, trt_version: str, gpu_name: str, *, precision: str = "fp32"
) -> str:
    """File name of a plan: ``<engine>.trt<version>.<GPU>.<precision>.plan``.

    The name carries what makes a plan valid (TensorRT version, GPU model) so plans for
    several machines can sit in one engine folder; the GPU name is reduced to letters,
    digits and ``_`` (``"NVIDIA H100 80GB HBM3"`` -> ``NVIDIA_H100_80GB_HBM3``).
    """
    if not _ENGINE_NAME.match(engine_name or ""):
        raise ValueError(
            f"engine_name {engine_name!r}: use letters, digits, '_' and '-' only (dots "
            "separate the fields of a plan's file name)"
        )
    version = str(trt_version).strip()
    if not _TRT_VERSION.match(version):
        raise ValueError(
            f"trt_version {trt_version!r}: expected a version such as '10.3.0' "
            "(tensorrt.__version__)"
        )
    gpu = re.sub(r"[^A-Za-z0-9]+", "_", gpu_name or "").strip("_")
    if not gpu:
        raise ValueError(
            f"gpu_name {gpu_name!r}: empty after keeping letters and digits; pass the CUDA "
            "device name (torch.cuda.get_device_name())"
        )
    if not _PRECISION.match(precision or ""):
        raise ValueError(f"precision {precision!r}: expected a word such as 'fp32' or 'fp16'")
    return f"{engine_name}.trt{version}.{gpu}.{precision}.plan"


def current_plan_file_name(
    engine_name: str, *, precision: str, device_id: int = 0, gpu_name: str | None = None
) -> str:
    """:func:`plan_file_name` for the TensorRT installed here and CUDA device ``device_id``."""
    trt = import_tensorrt()
    if gpu_name is None:
        if _cuda_device_count() <= device_id:
            raise BackendUnavailable(
                f"no CUDA device cuda:{device_id}: a plan is named after the GPU it runs on"
            )
        import torch

        gpu_name = torch.cuda.get_device_name(device_id)
    return plan_file_name(engine_name, trt.__version__, gpu_name, precision=precision)


# ---------------------------------------------------------------------------- logging


def make_logger(trt: ModuleType, *, keep: int = 20) -> Any:
    """A ``trt.ILogger`` that forwards to Python logging (``hidemo.tensorrt``).

    TensorRT reports why a build or a deserialization failed only through its logger; the
    last ``keep`` error messages stay on ``logger.errors`` so our exceptions can quote them.
    """
    levels = {
        "INTERNAL_ERROR": logging.CRITICAL,
        "ERROR": logging.ERROR,
        "WARNING": logging.WARNING,
        "INFO": logging.INFO,
        "VERBOSE": logging.DEBUG,
    }

    class _Bridge(trt.ILogger):  # type: ignore[name-defined,misc]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # documented: the base must be initialised explicitly
            self.errors: collections.deque[str] = collections.deque(maxlen=keep)

        def log(self, severity: Any, msg: str) -> None:
            name = getattr(severity, "name", str(severity)).rsplit(".", 1)[-1]
            level = levels.get(name, logging.INFO)
            if level >= logging.ERROR:
                self.errors.append(str(msg))
            _log.log(level, "%s", msg)

    return _Bridge()


# ---------------------------------------------------------------------------- device memory


@dataclass(frozen=True)
class DeviceArray:
    """A device buffer: ``ptr`` is what TensorRT binds; ``handle`` keeps the memory alive."""

    handle: Any
    ptr: int


class DeviceMemory(Protocol):
    """Where a :class:`TensorRTEngine` gets its buffers and its stream.

    ``upload`` and ``empty`` enqueue on ``stream_handle``; ``download`` returns a host array
    that is valid once ``synchronize`` has returned.
    """

    device: str
    device_name: str

    @property
    def stream_handle(self) -> int: ...

    def scope(self) -> contextlib.AbstractContextManager[Any]: ...

    def upload(self, array: np.ndarray) -> DeviceArray: ...

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> DeviceArray: ...

    def download(self, buffer: DeviceArray) -> np.ndarray: ...

    def synchronize(self) -> None: ...


class TorchCudaMemory:
    """:class:`DeviceMemory` on torch CUDA tensors and one dedicated torch CUDA stream.

    Inputs go through pinned staging buffers (the copy is truly asynchronous, and read-only
    arrays, such as zero-copy ZeroMQ frames, need no writable view); outputs come back as
    ordinary numpy arrays, so callers do not hold on to pinned memory.
    """

    def __init__(self, device_id: int = 0) -> None:
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailable(
                "TensorRT backend unavailable: it allocates GPU memory through torch, which "
                "is not installed; install a CUDA build of torch"
            ) from exc
        if _cuda_device_count() <= device_id:
            raise BackendUnavailable(
                f"TensorRT backend unavailable: no CUDA device cuda:{device_id} (torch "
                f"{torch.__version__}, torch.cuda.is_available() = "
                f"{torch.cuda.is_available()}); TensorRT plans run only on an NVIDIA GPU "
                "with a CUDA build of torch; use the onnxruntime backend on this machine"
            )
        self._torch = torch
        self._device = torch.device("cuda", device_id)
        # TensorRT deserializes and executes on the calling thread's current device.
        torch.cuda.set_device(self._device)
        self._stream = torch.cuda.Stream(device=self._device)
        self.device = f"cuda:{device_id}"
        self.device_name = torch.cuda.get_device_name(device_id)

    @property
    def stream_handle(self) -> int:
        return int(self._stream.cuda_stream)

    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        with self._torch.cuda.device(self._device), self._torch.cuda.stream(self._stream):
            yield

    def _dtype(self, dtype: np.dtype) -> Any:
        try:
            return self._torch.from_numpy(np.empty(0, dtype=dtype)).dtype
        except TypeError as exc:
            raise PlanError(f"dtype {dtype} has no torch equivalent for a device buffer") from exc

    def upload(self, array: np.ndarray) -> DeviceArray:
        staging = self._torch.empty(array.shape, dtype=self._dtype(array.dtype), pin_memory=True)
        staging.numpy()[...] = array
        tensor = staging.to(self._device, non_blocking=True)
        return DeviceArray((staging, tensor), int(tensor.data_ptr()))

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> DeviceArray:
        tensor = self._torch.empty(shape, dtype=self._dtype(dtype), device=self._device)
        return DeviceArray(tensor, int(tensor.data_ptr()))

    def download(self, buffer: DeviceArray) -> np.ndarray:
        # Blocking copy issued on the current (our) stream: it waits for the inference.
        return buffer.handle.cpu().numpy()

    def synchronize(self) -> None:
        self._stream.synchronize()


# ---------------------------------------------------------------------------- the engine


class TensorRTEngine(Engine):
    """A deserialized TensorRT plan behind the :class:`Engine` interface.

    Inputs and outputs are matched to the plan's IO tensors by name; per call the engine
    sets every input's shape (dynamic batch / sequence within the plan's optimization
    profile), sizes the outputs from ``context.get_tensor_shape``, enqueues
    ``execute_async_v3`` on its stream and returns numpy arrays. One execution context per
    engine: calls are serialized by a lock; run replicas in separate processes.
    """

    def __init__(
        self,
        name: str,
        plan_path: Path,
        signature: Signature,
        *,
        random_weights: bool,
        device_id: int = 0,
        memory: DeviceMemory | None = None,
    ) -> None:
        trt = import_tensorrt()
        super().__init__(name, signature, random_weights=random_weights)
        self._trt = trt
        self._memory: DeviceMemory = memory if memory is not None else TorchCudaMemory(device_id)
        self._lock = threading.Lock()
        plan_path = Path(plan_path)
        if not plan_path.is_file():
            raise FileNotFoundError(
                f"engine {name!r}: TensorRT plan {plan_path} does not exist; build it on this "
                "machine with `hidemo engines build --tensorrt --profile <profile> --engine-dir "
                f"{plan_path.parent}`"
            )
        self._logger = make_logger(trt)
        with self._memory.scope():
            self._runtime = trt.Runtime(self._logger)
            self._engine = self._runtime.deserialize_cuda_engine(plan_path.read_bytes())
            if self._engine is None:
                raise PlanError(
                    f"engine {name!r}: TensorRT {trt.__version__} could not deserialize "
                    f"{plan_path} on {self._memory.device_name} ("
                    f"{'; '.join(self._logger.errors) or 'no error logged'}); a plan runs "
                    "only with the TensorRT version and GPU it was built with: rebuild it here"
                )
            self._inputs, self._outputs = self._bind_io(plan_path)
            self._context = self._engine.create_execution_context()
        if self._context is None:
            raise PlanError(f"engine {name!r}: TensorRT could not create an execution context")

    @classmethod
    def from_manifest(
        cls,
        manifest: EngineManifest,
        engine_dir: Path,
        *,
        device_id: int = 0,
        memory: DeviceMemory | None = None,
    ) -> TensorRTEngine:
        """Load the plan that the manifest lists for this TensorRT version and GPU.

        Raises ``EngineMissing`` when the manifest has no plan for this machine and
        ``EngineStale`` when the plan's bytes or contents disagree with the manifest, or it
        was built from another ONNX; both carry the build command that fixes them.
        """
        trt = import_tensorrt()
        memory = memory if memory is not None else TorchCudaMemory(device_id)
        engine_dir = Path(engine_dir)
        fix = tensorrt_build_command(manifest.profile, engine_dir)
        plan = select_plan(manifest.plans, trt.__version__, memory.device_name)
        if plan is None:
            raise EngineMissing(
                no_plan_message(manifest.name, manifest.plans, trt.__version__,
                                memory.device_name),
                fix,
            )
        plan_path = engine_dir / plan.file
        if plan.onnx_sha256 != manifest.onnx_sha256:
            raise EngineStale(
                f"engine {manifest.name!r}: plan {plan_path} was built from another ONNX "
                f"(sha256 {plan.onnx_sha256[:12]}, the engine's is {manifest.onnx_sha256[:12]})",
                fix,
            )
        if not plan_path.is_file() or sha256_file(plan_path) != plan.sha256:
            raise EngineStale(
                f"engine {manifest.name!r}: plan {plan_path} is missing or does not match the "
                "sha256 in its manifest",
                fix,
            )
        try:
            return cls(
                manifest.name,
                plan_path,
                manifest.signature,
                random_weights=manifest.random_weights,
                device_id=device_id,
                memory=memory,
            )
        except PlanError as exc:
            raise EngineStale(str(exc), fix) from exc

    def _bind_io(
        self, plan_path: Path
    ) -> tuple[dict[str, dict[str, Any]], dict[str, np.dtype]]:
        """Match the signature to the plan's IO tensors; refuse any disagreement."""
        trt, engine = self._trt, self._engine
        modes: dict[str, Any] = {}
        dtypes: dict[str, np.dtype] = {}
        for index in range(engine.num_io_tensors):
            tensor = engine.get_tensor_name(index)
            modes[tensor] = engine.get_tensor_mode(tensor)
            trt_dtype = engine.get_tensor_dtype(tensor)
            try:
                dtypes[tensor] = np.dtype(trt.nptype(trt_dtype))
            except TypeError as exc:  # bf16, fp8, int4: no numpy dtype to hand back
                raise PlanError(
                    f"engine {self.name!r}: tensor {tensor!r} in plan {plan_path} is "
                    f"{trt_dtype}, which has no numpy dtype; export the ONNX with float32 or "
                    "float16 inputs and outputs"
                ) from exc
        plan_inputs = [n for n, m in modes.items() if m == trt.TensorIOMode.INPUT]
        plan_outputs = [n for n, m in modes.items() if m == trt.TensorIOMode.OUTPUT]
        sig = self.signature
        if sorted(plan_inputs) != sorted(sig.input_names) or not set(sig.output_names) <= set(
            plan_outputs
        ):
            raise PlanError(
                f"engine {self.name!r}: plan {plan_path} has inputs {plan_inputs} and outputs "
                f"{plan_outputs}; the signature wants inputs {sig.input_names} and outputs "
                f"{sig.output_names}; rebuild the plan from the engine's current ONNX"
            )
        for spec in (*sig.inputs, *sig.outputs):
            if dtypes[spec.name] != np.dtype(spec.dtype):
                raise PlanError(
                    f"engine {self.name!r}: tensor {spec.name!r} is {dtypes[spec.name]} in "
                    f"plan {plan_path} but {spec.dtype} in the signature; rebuild the plan "
                    "from the engine's current ONNX (or fix the manifest's signature)"
                )
        inputs: dict[str, dict[str, Any]] = {}
        for tensor in plan_inputs:
            try:
                low, _, high = engine.get_tensor_profile_shape(tensor, 0)
                limits = (tuple(low), tuple(high))
            except Exception:  # noqa: BLE001 - static inputs may report no profile
                limits = None
            inputs[tensor] = {"dtype": dtypes[tensor], "limits": limits}
        # Every output must be bound, also those the signature does not return.
        return inputs, {n: dtypes[n] for n in plan_outputs}

    @property
    def backend(self) -> str:
        return "tensorrt"

    @property
    def device(self) -> str:
        return self._memory.device

    @property
    def profile_limits(self) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]] | None]:
        """Per input, the (min, max) shapes of the plan's optimization profile."""
        return {n: info["limits"] for n, info in self._inputs.items()}

    def _check_limits(self, name: str, shape: tuple[int, ...]) -> None:
        limits = self._inputs[name]["limits"]
        if limits is None:
            return
        low, high = limits
        if len(low) == len(shape) and not all(
            lo <= s <= hi for s, lo, hi in zip(shape, low, high, strict=True)
        ):
            raise SignatureError(
                f"engine {self.name!r}: input {name!r} has shape {shape}, outside the plan's "
                f"optimization profile (min {low}, max {high}); split the batch, or rebuild "
                "the plan with wider axis ranges"
            )

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._lock:
            context, memory = self._context, self._memory
            if context is None:
                raise RuntimeError(f"engine {self.name!r} is closed")
            self._logger.errors.clear()  # so an error message quotes this call only
            keep: list[DeviceArray] = []  # device memory must outlive the enqueued work
            with memory.scope():
                for name in self._inputs:
                    array = feeds[name]
                    self._check_limits(name, array.shape)
                    if not context.set_input_shape(name, array.shape):
                        raise SignatureError(
                            f"engine {self.name!r}: TensorRT refused shape {array.shape} for "
                            f"input {name!r} ({'; '.join(self._logger.errors) or 'see log'})"
                        )
                    buffer = memory.upload(array)
                    keep.append(buffer)
                    context.set_tensor_address(name, buffer.ptr)
                outputs: dict[str, DeviceArray] = {}
                for name, dtype in self._outputs.items():
                    shape = tuple(int(d) for d in context.get_tensor_shape(name))
                    if any(d < 0 for d in shape):
                        raise PlanError(
                            f"engine {self.name!r}: output {name!r} has a data-dependent shape "
                            f"{shape}; this backend needs output shapes known from the inputs"
                        )
                    outputs[name] = memory.empty(shape, dtype)
                    context.set_tensor_address(name, outputs[name].ptr)
                if not context.execute_async_v3(memory.stream_handle):
                    raise RuntimeError(
                        f"engine {self.name!r}: TensorRT execution failed ("
                        f"{'; '.join(self._logger.errors) or 'see the hidemo.tensorrt log'})"
                    )
                host = {n: memory.download(outputs[n]) for n in self.signature.output_names}
                memory.synchronize()
            del keep
            return host

    def close(self) -> None:
        with self._lock:
            self._context = None
            self._engine = None
            self._runtime = None
