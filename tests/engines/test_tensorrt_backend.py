"""Tests for the TensorRT backend (engines/backends/tensorrt.py) and builder (export/).

Three kinds of test live here:

* Pure Python, run everywhere: the import guard, plan file names, and the derivation of
  min/opt/max profile shapes from a Signature's named dynamic axes.
* Wiring, run everywhere: a small hand-written fake ``tensorrt`` module is put into
  ``sys.modules`` so that our code can be driven without TensorRT. These tests check only
  that our code calls the documented TensorRT 10 Python API in the documented order, passes
  the right names, shapes and addresses, and turns failures into useful errors. They say
  nothing about TensorRT's behaviour: the fake is ours, not NVIDIA's.
* Real, skipped unless ``tensorrt`` imports and a CUDA device is visible: build a plan from
  a tiny ONNX file, run it, and compare with onnxruntime.
"""

from __future__ import annotations

import enum
import hashlib
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import engines.backends.tensorrt as backend
from engines.backends.tensorrt import (
    BackendUnavailable,
    DeviceArray,
    PlanError,
    TensorRTEngine,
    TorchCudaMemory,
    current_plan_file_name,
    plan_file_name,
    tensorrt_available,
)
from engines.manifest import (
    EngineManifest,
    EngineMissing,
    EngineStale,
    ParityResult,
    SourceInfo,
)
from engines.plans import PlanRecord
from engines.spec import Signature, SignatureError, TensorSpec
from export.tensorrt_build import (
    PlanBuildError,
    build_plan,
    check_shape_profiles,
    profile_shapes,
)

REPO_ROOT = Path(__file__).resolve().parents[2]

LINEAR = Signature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=("batch", 8)),),
    outputs=(TensorSpec(name="y", dtype="float32", shape=("batch", 3)),),
)
WEIGHT = np.arange(24, dtype=np.float32).reshape(8, 3) / 10.0
BIAS = np.array([0.5, -1.0, 2.0], np.float32)


# ------------------------------------------------------------------ the guard, no TensorRT


def test_modules_import_and_report_unavailable_without_tensorrt() -> None:
    """In a fresh interpreter where ``import tensorrt`` fails, both modules still import."""
    code = (
        "import sys; sys.modules['tensorrt'] = None\n"
        "import engines.backends.tensorrt as b, export.tensorrt_build\n"
        "assert b.tensorrt_available() is False\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr


def test_constructing_without_tensorrt_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail
    with pytest.raises(BackendUnavailable) as info:
        TensorRTEngine("linear", tmp_path / "linear.plan", LINEAR, random_weights=True)
    message = str(info.value)
    assert "import tensorrt" in message
    assert "pip install tensorrt-cu12" in message
    assert "onnxruntime" in message  # the way out on a machine without TensorRT
    assert isinstance(info.value, RuntimeError)
    assert tensorrt_available() is False


def test_build_plan_without_tensorrt_raises_backend_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        build_plan(tmp_path / "m.onnx", tmp_path / "m.plan", LINEAR, {}, False, 1 << 20)


def test_old_tensorrt_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="8.6.1"))
    with pytest.raises(BackendUnavailable, match=r"found tensorrt 8\.6\.1.*>= 10"):
        backend.import_tensorrt()


def test_tensorrt_without_cuda_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    monkeypatch.setattr(backend, "_cuda_device_count", lambda: 0)
    assert tensorrt_available() is False
    with pytest.raises(BackendUnavailable, match="no CUDA device cuda:0"):
        TensorRTEngine("linear", tmp_path / "linear.plan", LINEAR, random_weights=True)


def test_torch_cuda_memory_needs_a_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backend, "_cuda_device_count", lambda: 0)
    with pytest.raises(BackendUnavailable, match="CUDA build of torch"):
        TorchCudaMemory(0)


def test_torch_cuda_memory_round_trip() -> None:
    """Device memory without TensorRT: runs wherever torch sees a CUDA device."""
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    memory = TorchCudaMemory(0)
    source = np.arange(6, dtype=np.float32).reshape(2, 3)
    source.setflags(write=False)  # read-only input, as a zero-copy ZeroMQ frame
    with memory.scope():
        uploaded = memory.upload(source)
        result = memory.empty((2, 3), np.dtype(np.float32))
        assert uploaded.ptr and result.ptr and uploaded.ptr != result.ptr
        result.handle.copy_(uploaded.handle[1] * 2)  # enqueued on the engine's stream
        host = memory.download(result)
        memory.synchronize()
    np.testing.assert_array_equal(host, source * 2)
    assert memory.device == "cuda:0" and memory.device_name


# ------------------------------------------------------------------ plan names


def test_plan_file_name_says_version_gpu_and_precision() -> None:
    name = plan_file_name("detector", "10.3.0", "NVIDIA H100", precision="fp16")
    assert name == "detector.trt10.3.0.NVIDIA_H100.fp16.plan"
    assert plan_file_name("window_classifier", "10.13.0.35", "NVIDIA H100 80GB HBM3") == (
        "window_classifier.trt10.13.0.35.NVIDIA_H100_80GB_HBM3.fp32.plan"
    )
    assert plan_file_name("text", "10.3.0", "Orin (nvgpu)").split(".")[-3] == "Orin_nvgpu"


def test_plan_file_names_differ_by_version_and_gpu() -> None:
    names = {
        plan_file_name("detector", version, gpu)
        for version in ("10.3.0", "10.4.0")
        for gpu in ("NVIDIA H100", "NVIDIA GeForce RTX 4090")
    }
    assert len(names) == 4


@pytest.mark.parametrize(
    "args, word",
    [
        (("det.v2", "10.3.0", "H100"), "engine_name"),
        (("a/b", "10.3.0", "H100"), "engine_name"),
        (("", "10.3.0", "H100"), "engine_name"),
        (("det", "ten", "H100"), "trt_version"),
        (("det", "10.3.0", " () "), "gpu_name"),
    ],
)
def test_plan_file_name_rejects_bad_parts(args: tuple[str, str, str], word: str) -> None:
    with pytest.raises(ValueError, match=word):
        plan_file_name(*args)


def test_current_plan_file_name_uses_installed_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT(version="10.3.0").module)
    name = current_plan_file_name("detector", precision="fp16", gpu_name="NVIDIA H100")
    assert name == "detector.trt10.3.0.NVIDIA_H100.fp16.plan"


# ------------------------------------------------------------------ profile shapes

MULTI = Signature(
    inputs=(
        TensorSpec(name="pixels", dtype="float32", shape=("batch", 3, 224, 224)),
        TensorSpec(name="tokens", dtype="int64", shape=("batch", "sequence")),
        TensorSpec(name="scale", dtype="float32", shape=(1,)),
    ),
    outputs=(TensorSpec(name="emb", dtype="float32", shape=("batch", 384)),),
)
RANGES = {"batch": (1, 4, 8), "sequence": (1, 64, 256)}


def test_profile_shapes_from_named_axes() -> None:
    shapes = profile_shapes(MULTI, RANGES)
    assert shapes == {
        "pixels": ((1, 3, 224, 224), (4, 3, 224, 224), (8, 3, 224, 224)),
        "tokens": ((1, 1), (4, 64), (8, 256)),
    }  # "scale" has no dynamic axis: no profile needed
    check_shape_profiles(MULTI, shapes)


def test_profile_shapes_ignores_ranges_for_axes_not_used() -> None:
    assert profile_shapes(LINEAR, RANGES) == {"x": ((1, 8), (4, 8), (8, 8))}


def test_profile_shapes_names_the_missing_axis() -> None:
    with pytest.raises(ValueError) as info:
        profile_shapes(MULTI, {"batch": (1, 4, 8)})
    message = str(info.value)
    assert "'tokens'" in message and "axis 1 'sequence'" in message
    assert "'sequence': (min, opt, max)" in message


@pytest.mark.parametrize(
    "bad", [(4, 2, 8), (0, 1, 2), (1, 4), (1, 4, 8, 16), (1.0, 4, 8), (True, 4, 8), "1-8"]
)
def test_profile_shapes_rejects_bad_ranges(bad: Any) -> None:
    with pytest.raises(ValueError, match="'batch'"):
        profile_shapes(LINEAR, {"batch": bad})


@pytest.mark.parametrize(
    "profiles, words",
    [
        ({}, "no shape profile"),
        ({"x": ((1, 8), (4, 8), (8, 8)), "z": ((1,), (1,), (1,))}, "not inputs"),
        ({"x": ((1, 8), (4, 8))}, "(min, opt, max)"),
        ({"x": ((1,), (4,), (8,))}, "must be 2 integers"),
        ({"x": ((1, 8), (4, 9), (8, 8))}, "fixed to 8"),
        ({"x": ((4, 8), (2, 8), (8, 8))}, "1 <= min <= opt <= max"),
    ],
)
def test_check_shape_profiles_names_the_problem(profiles: dict, words: str) -> None:
    with pytest.raises(ValueError) as info:
        check_shape_profiles(LINEAR, profiles)
    assert words in str(info.value)


# ------------------------------------------------------------------ the fake tensorrt


class FakeTensorRT:
    """A stand-in for the ``tensorrt`` module, recording every call in ``calls``.

    It implements just the documented TensorRT 10 Python surface that our code uses, with
    the documented return conventions (``None`` for a failed build or deserialization,
    ``False`` for a failed parse or shape). It checks our wiring, not TensorRT.
    """

    def __init__(
        self,
        *,
        version: str = "10.3.0",
        parse_ok: bool = True,
        parse_errors: tuple[str, ...] = (),
        build_result: bytes | None = b"FAKE-PLAN",
        net_inputs: tuple[tuple[str, tuple[int, ...]], ...] = (("x", (-1, 8)),),
        net_outputs: tuple[str, ...] = ("y",),
        deserialize_ok: bool = True,
        engine_io: tuple[tuple[str, str, str], ...] = (("x", "INPUT", "FLOAT"),
                                                        ("y", "OUTPUT", "FLOAT")),
        profile: tuple[tuple[int, ...], ...] = ((1, 8), (4, 8), (8, 8)),
        compute: Callable[[Any], None] | None = None,
        with_fp16_flag: bool = True,
    ) -> None:
        self.calls: list[tuple[Any, ...]] = []
        calls = self.calls
        module = types.ModuleType("tensorrt")
        module.__version__ = version

        class Severity(enum.Enum):
            INTERNAL_ERROR = 0
            ERROR = 1
            WARNING = 2
            INFO = 3
            VERBOSE = 4

        class ILogger:
            def __init__(self) -> None:
                pass

        ILogger.Severity = Severity  # type: ignore[attr-defined]

        TensorIOMode = enum.Enum("TensorIOMode", "NONE INPUT OUTPUT")
        DataType = enum.Enum("DataType", "FLOAT HALF INT32 INT64 BF16")
        MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE")
        BuilderFlag = enum.Enum("BuilderFlag", "FP16 TF32" if with_fp16_flag else "TF32")
        np_types = {DataType.FLOAT: np.float32, DataType.HALF: np.float16,
                    DataType.INT32: np.int32, DataType.INT64: np.int64}

        class ParserError:
            def __init__(self, desc: str, node: int) -> None:
                self._desc, self._node = desc, node

            def desc(self) -> str:
                return self._desc

            def node(self) -> int:
                return self._node

            def code(self) -> int:
                return 8

        class Network:
            num_inputs = len(net_inputs)
            num_outputs = len(net_outputs)

            def get_input(self, index: int) -> Any:
                name, shape = net_inputs[index]
                return types.SimpleNamespace(name=name, shape=shape)

            def get_output(self, index: int) -> Any:
                return types.SimpleNamespace(name=net_outputs[index], shape=(-1, 3))

        class OnnxParser:
            def __init__(self, network: Network, logger: ILogger) -> None:
                calls.append(("OnnxParser",))
                self.num_errors = 0

            def parse_from_file(self, path: str) -> bool:
                calls.append(("parse_from_file", path))
                self.num_errors = len(parse_errors)
                return parse_ok

            def get_error(self, index: int) -> ParserError:
                return ParserError(parse_errors[index], node=index + 10)

        class Profile:
            def set_shape(self, name: str, low: Any, opt: Any, high: Any) -> None:
                calls.append(("set_shape", name, low, opt, high))

        class Config:
            def set_memory_pool_limit(self, pool: Any, size: int) -> None:
                calls.append(("set_memory_pool_limit", pool.name, size))

            def set_flag(self, flag: Any) -> None:
                calls.append(("set_flag", flag.name))

            def add_optimization_profile(self, profile: Profile) -> int:
                calls.append(("add_optimization_profile",))
                return 0

            def create_timing_cache(self, data: bytes) -> Any:
                calls.append(("create_timing_cache", bytes(data)))
                return types.SimpleNamespace(serialize=lambda: b"CACHE+" + bytes(data))

            def set_timing_cache(self, cache: Any, ignore_mismatch: bool) -> bool:
                calls.append(("set_timing_cache", ignore_mismatch))
                self.cache = cache
                return True

            def get_timing_cache(self) -> Any:
                return self.cache

        class Builder:
            def __init__(self, logger: ILogger) -> None:
                calls.append(("Builder",))
                self.logger = logger

            def create_network(self, flags: int) -> Network:
                calls.append(("create_network", flags))
                return Network()

            def create_builder_config(self) -> Config:
                calls.append(("create_builder_config",))
                return Config()

            def create_optimization_profile(self) -> Profile:
                calls.append(("create_optimization_profile",))
                return Profile()

            def build_serialized_network(self, network: Network, config: Config) -> Any:
                calls.append(("build_serialized_network",))
                if build_result is None:
                    self.logger.log(Severity.ERROR, "no tactic fits the workspace")
                return build_result

        class Context:
            def __init__(self) -> None:
                self.shapes: dict[str, tuple[int, ...]] = {}
                self.addresses: dict[str, int] = {}

            def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
                calls.append(("set_input_shape", name, tuple(shape)))
                self.shapes[name] = tuple(shape)
                low, high = profile[0], profile[2]
                return all(lo <= s <= hi for s, lo, hi in zip(shape, low, high, strict=True))

            def get_tensor_shape(self, name: str) -> tuple[int, ...]:
                calls.append(("get_tensor_shape", name))
                return (self.shapes["x"][0], 3)

            def set_tensor_address(self, name: str, ptr: int) -> None:
                calls.append(("set_tensor_address", name, ptr))
                self.addresses[name] = ptr

            def execute_async_v3(self, stream_handle: int) -> bool:
                calls.append(("execute_async_v3", stream_handle))
                if compute is not None:
                    compute(self)
                return True

        class Engine:
            num_io_tensors = len(engine_io)

            def get_tensor_name(self, index: int) -> str:
                return engine_io[index][0]

            def get_tensor_mode(self, name: str) -> Any:
                return TensorIOMode[dict((n, m) for n, m, _ in engine_io)[name]]

            def get_tensor_dtype(self, name: str) -> Any:
                return DataType[dict((n, d) for n, _, d in engine_io)[name]]

            def get_tensor_profile_shape(self, name: str, index: int) -> Any:
                return list(profile)

            def create_execution_context(self) -> Context:
                calls.append(("create_execution_context",))
                self.context = Context()
                return self.context

        class Runtime:
            def __init__(self, logger: ILogger) -> None:
                calls.append(("Runtime",))
                self.logger = logger

            def deserialize_cuda_engine(self, data: bytes) -> Engine | None:
                calls.append(("deserialize_cuda_engine", bytes(data)))
                if not deserialize_ok:
                    self.logger.log(Severity.ERROR, "plan built by another TensorRT version")
                    return None
                module.engine = Engine()
                return module.engine

        module.ILogger = ILogger
        module.Builder = Builder
        module.OnnxParser = OnnxParser
        module.Runtime = Runtime
        module.TensorIOMode = TensorIOMode
        module.DataType = DataType
        module.MemoryPoolType = MemoryPoolType
        module.BuilderFlag = BuilderFlag
        def nptype(dtype: Any) -> Any:
            if dtype not in np_types:
                raise TypeError("Could not resolve TensorRT datatype to a numpy datatype.")
            return np_types[dtype]

        module.nptype = nptype
        self.module = module

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]


class HostMemory:
    """A :class:`DeviceMemory` on host numpy arrays with made-up addresses."""

    device = "cuda:0"
    device_name = "Fake GPU"
    stream_handle = 0xC0FFEE

    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls
        self.buffers: dict[int, np.ndarray] = {}
        self._next = 0x1000

    def scope(self) -> Any:
        import contextlib

        return contextlib.nullcontext()

    def _add(self, array: np.ndarray) -> DeviceArray:
        ptr, self._next = self._next, self._next + 0x1000
        self.buffers[ptr] = array
        return DeviceArray(array, ptr)

    def upload(self, array: np.ndarray) -> DeviceArray:
        self.calls.append(("upload", array.shape))
        return self._add(np.array(array, copy=True))

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> DeviceArray:
        self.calls.append(("empty", shape, np.dtype(dtype).name))
        return self._add(np.zeros(shape, dtype))

    def download(self, buffer: DeviceArray) -> np.ndarray:
        self.calls.append(("download", buffer.ptr))
        return self.buffers[buffer.ptr].copy()

    def synchronize(self) -> None:
        self.calls.append(("synchronize",))


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    path = tmp_path / "linear.onnx"
    path.write_bytes(b"not parsed by the fake")
    return path


# ------------------------------------------------------------------ builder wiring


def test_build_plan_calls_the_builder_api_in_order(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path, tmp_path: Path
) -> None:
    fake = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    plan = tmp_path / "plans" / "linear.trt10.3.0.Fake_GPU.fp16.plan"
    shapes = profile_shapes(LINEAR, {"batch": (1, 4, 8)})

    written = build_plan(onnx_file, plan, LINEAR, shapes, fp16=True, workspace_bytes=1 << 28)

    assert written == plan and plan.read_bytes() == b"FAKE-PLAN"
    assert sorted(p.name for p in plan.parent.iterdir()) == [plan.name]  # no temp file left
    assert fake.calls == [
        ("Builder",),
        ("create_network", 0),
        ("OnnxParser",),
        ("parse_from_file", str(onnx_file)),
        ("create_builder_config",),
        ("set_memory_pool_limit", "WORKSPACE", 1 << 28),
        ("set_flag", "FP16"),
        ("create_optimization_profile",),
        ("set_shape", "x", (1, 8), (4, 8), (8, 8)),
        ("add_optimization_profile",),
        ("build_serialized_network",),
    ]


def test_build_plan_reads_and_rewrites_the_timing_cache(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path, tmp_path: Path
) -> None:
    fake = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    cache = tmp_path / "timing.trt10.3.0.Fake_GPU.cache"
    shapes = profile_shapes(LINEAR, RANGES)
    build_plan(onnx_file, tmp_path / "a.plan", LINEAR, shapes, timing_cache=cache)
    assert ("create_timing_cache", b"") in fake.calls  # none yet: an empty cache
    assert ("set_timing_cache", False) in fake.calls  # a mismatched cache is not accepted
    assert fake.names().index("set_timing_cache") < fake.names().index(
        "build_serialized_network")
    assert cache.read_bytes() == b"CACHE+"

    fake.calls.clear()
    build_plan(onnx_file, tmp_path / "b.plan", LINEAR, shapes, timing_cache=cache)
    assert ("create_timing_cache", b"CACHE+") in fake.calls  # the second build reuses it
    assert cache.read_bytes() == b"CACHE+CACHE+"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["a.plan", "b.plan", cache.name, onnx_file.name])  # no temp file left


def test_build_plan_fp32_sets_no_precision_flag(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path, tmp_path: Path
) -> None:
    fake = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    build_plan(onnx_file, tmp_path / "l.plan", LINEAR, profile_shapes(LINEAR, RANGES), False,
               1 << 20)
    assert "set_flag" not in fake.names()


def test_parse_errors_are_reported_by_index_and_description(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path, tmp_path: Path
) -> None:
    fake = FakeTensorRT(parse_ok=False, parse_errors=("Unsupported op Foo", "bad initializer"))
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    plan = tmp_path / "l.plan"
    with pytest.raises(PlanBuildError) as info:
        build_plan(onnx_file, plan, LINEAR, profile_shapes(LINEAR, RANGES), False, 1 << 20)
    message = str(info.value)
    assert str(onnx_file) in message and "2 error(s)" in message
    assert "[0] Unsupported op Foo (node 10)" in message
    assert "[1] bad initializer (node 11)" in message
    assert "build_serialized_network" not in fake.names()
    assert not plan.exists()


def test_failed_build_quotes_tensorrt_log_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path, tmp_path: Path
) -> None:
    fake = FakeTensorRT(build_result=None)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    with pytest.raises(PlanBuildError, match="no tactic fits the workspace"):
        build_plan(onnx_file, tmp_path / "l.plan", LINEAR, profile_shapes(LINEAR, RANGES),
                   False, 1 << 20)
    assert list(tmp_path.iterdir()) == [onnx_file]


def test_network_names_must_match_the_signature(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path, tmp_path: Path
) -> None:
    fake = FakeTensorRT(net_inputs=(("input", (-1, 8)),))
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    with pytest.raises(PlanBuildError, match=r"inputs \['input'\].*wants inputs \['x'\]"):
        build_plan(onnx_file, tmp_path / "l.plan", LINEAR, profile_shapes(LINEAR, RANGES),
                   False, 1 << 20)


def test_axis_fixed_in_onnx_but_dynamic_in_signature_is_refused(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path, tmp_path: Path
) -> None:
    fake = FakeTensorRT(net_inputs=(("x", (1, 8)),))
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    with pytest.raises(PlanBuildError, match="axis 0 is fixed to 1 in the ONNX graph"):
        build_plan(onnx_file, tmp_path / "l.plan", LINEAR, profile_shapes(LINEAR, RANGES),
                   False, 1 << 20)


def test_fp16_without_the_flag_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path, tmp_path: Path
) -> None:
    fake = FakeTensorRT(version="11.0.0", with_fp16_flag=False)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    with pytest.raises(PlanBuildError, match="export an fp16 ONNX"):
        build_plan(onnx_file, tmp_path / "l.plan", LINEAR, profile_shapes(LINEAR, RANGES),
                   True, 1 << 20)


def test_build_plan_checks_inputs_before_touching_tensorrt(
    monkeypatch: pytest.MonkeyPatch, onnx_file: Path, tmp_path: Path
) -> None:
    fake = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        build_plan(tmp_path / "missing.onnx", tmp_path / "l.plan", LINEAR, {}, False, 1 << 20)
    with pytest.raises(ValueError, match="workspace_bytes"):
        build_plan(onnx_file, tmp_path / "l.plan", LINEAR, {}, False, 0)
    with pytest.raises(ValueError, match="no shape profile"):
        build_plan(onnx_file, tmp_path / "l.plan", LINEAR, {}, False, 1 << 20)
    assert fake.calls == []


# ------------------------------------------------------------------ engine wiring


def _linear_compute(memory: HostMemory) -> Callable[[Any], None]:
    def compute(context: Any) -> None:
        x = memory.buffers[context.addresses["x"]]
        memory.buffers[context.addresses["y"]][...] = x @ WEIGHT + BIAS

    return compute


def _fake_with_memory(**options: Any) -> tuple[FakeTensorRT, HostMemory]:
    holder: dict[str, HostMemory] = {}
    fake = FakeTensorRT(compute=lambda ctx: _linear_compute(holder["m"])(ctx), **options)
    holder["m"] = HostMemory(fake.calls)  # one call log for TensorRT and memory
    return fake, holder["m"]


def test_engine_runs_through_the_runtime_api_in_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake, memory = _fake_with_memory()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    plan = tmp_path / "linear.plan"
    plan.write_bytes(b"FAKE-PLAN")

    engine = TensorRTEngine("linear", plan, LINEAR, random_weights=True, memory=memory)
    assert fake.calls == [
        ("Runtime",),
        ("deserialize_cuda_engine", b"FAKE-PLAN"),
        ("create_execution_context",),
    ]
    assert engine.backend == "tensorrt" and engine.device == "cuda:0"
    assert engine.profile_limits == {"x": ((1, 8), (8, 8))}

    fake.calls.clear()
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    out = engine.run({"x": x})

    np.testing.assert_allclose(out["y"], x @ WEIGHT + BIAS, rtol=1e-6)
    assert list(out) == ["y"]
    addresses = fake.module.engine.context.addresses
    assert fake.calls == [
        ("set_input_shape", "x", (3, 8)),
        ("upload", (3, 8)),
        ("set_tensor_address", "x", addresses["x"]),
        ("get_tensor_shape", "y"),
        ("empty", (3, 3), "float32"),
        ("set_tensor_address", "y", addresses["y"]),
        ("execute_async_v3", HostMemory.stream_handle),
        ("download", addresses["y"]),
        ("synchronize",),
    ]
    assert addresses["x"] != addresses["y"]

    fake.calls.clear()
    engine.run({"x": np.ones((7, 8), np.float32)})  # a new batch size: shapes set again
    assert ("set_input_shape", "x", (7, 8)) in fake.calls
    assert ("empty", (7, 3), "float32") in fake.calls


def test_shape_outside_the_profile_is_refused_before_execution(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake, memory = _fake_with_memory()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    plan = tmp_path / "linear.plan"
    plan.write_bytes(b"FAKE-PLAN")
    engine = TensorRTEngine("linear", plan, LINEAR, random_weights=True, memory=memory)
    with pytest.raises(SignatureError, match=r"\(9, 8\), outside .* max \(8, 8\)"):
        engine.run({"x": np.zeros((9, 8), np.float32)})
    assert "execute_async_v3" not in fake.names()


def test_extra_plan_outputs_are_bound_but_not_returned(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    io = (("x", "INPUT", "FLOAT"), ("y", "OUTPUT", "FLOAT"), ("aux", "OUTPUT", "FLOAT"))
    fake, memory = _fake_with_memory(engine_io=io)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    plan = tmp_path / "linear.plan"
    plan.write_bytes(b"FAKE-PLAN")
    engine = TensorRTEngine("linear", plan, LINEAR, random_weights=True, memory=memory)
    out = engine.run({"x": np.ones((2, 8), np.float32)})
    assert list(out) == ["y"]
    assert set(fake.module.engine.context.addresses) == {"x", "y", "aux"}


@pytest.mark.parametrize(
    "options, words",
    [
        ({"deserialize_ok": False}, "plan built by another TensorRT version"),
        ({"engine_io": (("input", "INPUT", "FLOAT"), ("y", "OUTPUT", "FLOAT"))},
         "wants inputs ['x']"),
        ({"engine_io": (("x", "INPUT", "HALF"), ("y", "OUTPUT", "FLOAT"))},
         "'x' is float16 in plan"),
        ({"engine_io": (("x", "INPUT", "FLOAT"), ("y", "OUTPUT", "BF16"))},
         "which has no numpy dtype"),
    ],
)
def test_unusable_plans_raise_plan_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, options: dict, words: str
) -> None:
    fake, memory = _fake_with_memory(**options)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    plan = tmp_path / "linear.plan"
    plan.write_bytes(b"FAKE-PLAN")
    with pytest.raises(PlanError) as info:
        TensorRTEngine("linear", plan, LINEAR, random_weights=True, memory=memory)
    assert words in str(info.value)


def test_missing_plan_file_names_the_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake, memory = _fake_with_memory()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    with pytest.raises(FileNotFoundError, match=r"nope\.plan does not exist"):
        TensorRTEngine("linear", tmp_path / "nope.plan", LINEAR, random_weights=True,
                       memory=memory)


def test_closed_engine_refuses_to_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake, memory = _fake_with_memory()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    plan = tmp_path / "linear.plan"
    plan.write_bytes(b"FAKE-PLAN")
    with TensorRTEngine("linear", plan, LINEAR, random_weights=True, memory=memory) as engine:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        engine.run({"x": np.ones((2, 8), np.float32)})


# ------------------------------------------------------------------ loading from a manifest


def _plan(file: str, data: bytes | None, version: str = "10.3.0", gpu: str = "Fake GPU",
          onnx_sha256: str = "0" * 64) -> PlanRecord:
    digest = hashlib.sha256(data).hexdigest() if data is not None else "0" * 64
    return PlanRecord(file=file, sha256=digest, tensorrt_version=version, gpu_name=gpu,
                      compute_capability="9.0", precision="fp16",
                      profile_shapes={"x": ((1, 8), (4, 8), (8, 8))}, onnx_sha256=onnx_sha256,
                      created="2026-11-25T00:00:00Z")


def _manifest(plans: list[PlanRecord], precision: str = "fp32") -> EngineManifest:
    return EngineManifest(
        name="linear",
        role="test",
        profile="desktop",
        model="linear-8x3",
        signature=LINEAR,
        onnx_file="linear.onnx",
        onnx_sha256="0" * 64,
        source=SourceInfo(kind="random-init", description="Linear(8, 3), seed 0",
                          sha256="1" * 64),
        opset=17,
        precision=precision,
        backend="tensorrt",
        device="cuda:0",
        parity=ParityResult(passed=True, tolerance=1e-3, max_abs_diff={"y": 0.0},
                            shapes_checked=[{"x": [2, 8]}]),
        versions={"tensorrt": "10.3.0"},
        config={},
        git_commit=None,
        created="2026-11-25T00:00:00Z",
        plans=plans,
    )


def test_from_manifest_picks_the_plan_for_this_version_and_gpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake, memory = _fake_with_memory()
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    ours = plan_file_name("linear", "10.3.0", "Fake GPU", precision="fp16")
    other = plan_file_name("linear", "10.3.0", "Jetson Orin", precision="fp16")
    (tmp_path / ours).write_bytes(b"FAKE-PLAN")
    (tmp_path / other).write_bytes(b"ORIN-PLAN")
    plans = [_plan(other, b"ORIN-PLAN", gpu="Jetson Orin"), _plan(ours, b"FAKE-PLAN")]

    engine = TensorRTEngine.from_manifest(_manifest(plans), tmp_path, memory=memory)

    assert ("deserialize_cuda_engine", b"FAKE-PLAN") in fake.calls
    assert engine.random_weights and engine.name == "linear"


def test_from_manifest_without_a_plan_for_this_machine_names_the_fix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake, memory = _fake_with_memory(version="10.4.0")
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    old = plan_file_name("linear", "10.3.0", "Fake GPU", precision="fp16")
    with pytest.raises(EngineMissing) as info:
        TensorRTEngine.from_manifest(_manifest([_plan(old, None)]), tmp_path, memory=memory)
    assert "TensorRT 10.4.0 on Fake GPU" in str(info.value)
    assert old in str(info.value)
    assert info.value.fix == (
        f"hidemo engines build --tensorrt --profile desktop --engine-dir {tmp_path}")


def test_from_manifest_refuses_a_modified_or_incompatible_plan(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake, memory = _fake_with_memory(deserialize_ok=False)
    monkeypatch.setitem(sys.modules, "tensorrt", fake.module)
    name = plan_file_name("linear", "10.3.0", "Fake GPU", precision="fp16")
    (tmp_path / name).write_bytes(b"FAKE-PLAN")
    with pytest.raises(EngineStale, match="sha256"):
        TensorRTEngine.from_manifest(_manifest([_plan(name, None)]), tmp_path, memory=memory)
    with pytest.raises(EngineStale, match="built from another ONNX"):
        TensorRTEngine.from_manifest(_manifest([_plan(name, b"FAKE-PLAN", onnx_sha256="9" * 64)]),
                                     tmp_path, memory=memory)
    with pytest.raises(EngineStale, match="could not deserialize") as info:
        TensorRTEngine.from_manifest(_manifest([_plan(name, b"FAKE-PLAN")]), tmp_path,
                                     memory=memory)
    assert info.value.fix.startswith("hidemo engines build --tensorrt")


# ------------------------------------------------------------------ real TensorRT


def tiny_linear_onnx(folder: Path) -> Path:
    """A Linear(8, 3) as ONNX with a dynamic ``batch`` axis, names as in ``LINEAR``."""
    import warnings

    import torch

    torch.manual_seed(0)
    model = torch.nn.Linear(8, 3).eval()
    path = folder / "linear.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model,
            (torch.zeros(2, 8),),
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    return path


def test_tiny_onnx_has_a_dynamic_batch(tmp_path: Path) -> None:
    """The end-to-end test's model, checked here on CPU so that only TensorRT is untested."""
    pytest.importorskip("onnxruntime")
    from engines.backends.onnxruntime import OnnxRuntimeEngine

    engine = OnnxRuntimeEngine("linear", tiny_linear_onnx(tmp_path), LINEAR, random_weights=True)
    for batch in (1, 5):
        assert engine.run({"x": np.ones((batch, 8), np.float32)})["y"].shape == (batch, 3)


@pytest.fixture
def real_tensorrt() -> Any:
    trt = pytest.importorskip("tensorrt")
    if not tensorrt_available():
        pytest.skip("tensorrt imports but torch sees no CUDA device (or TensorRT < 10)")
    return trt


@pytest.mark.parametrize("precision, tolerance", [("fp32", 1e-2), ("fp16", 5e-2)])
def test_real_plan_matches_onnxruntime(
    real_tensorrt: Any, tmp_path: Path, precision: str, tolerance: float
) -> None:
    """Build a plan from a tiny ONNX, run it at several batch sizes, compare with ORT.

    Tolerances allow TF32 (on by default for fp32 in TensorRT on Ampere and later) and fp16.
    """
    from engines.backends.onnxruntime import OnnxRuntimeEngine

    onnx_path = tiny_linear_onnx(tmp_path)
    plan = tmp_path / current_plan_file_name("linear", precision=precision)
    build_plan(onnx_path, plan, LINEAR, profile_shapes(LINEAR, {"batch": (1, 4, 8)}),
               fp16=precision == "fp16", workspace_bytes=1 << 28)
    assert plan.stat().st_size > 0

    reference = OnnxRuntimeEngine("linear", onnx_path, LINEAR, random_weights=True)
    rng = np.random.default_rng(0)
    with TensorRTEngine("linear", plan, LINEAR, random_weights=True) as engine:
        assert engine.device == "cuda:0"
        for batch in (1, 5, 8):
            feeds = {"x": rng.standard_normal((batch, 8)).astype(np.float32)}
            got, want = engine.run(feeds)["y"], reference.run(feeds)["y"]
            assert got.shape == want.shape == (batch, 3)
            np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)
        readonly = np.ones((2, 8), np.float32)
        readonly.setflags(write=False)  # as a zero-copy ZeroMQ frame would be
        np.testing.assert_allclose(engine.run({"x": readonly})["y"],
                                   reference.run({"x": readonly})["y"], atol=tolerance)
        with pytest.raises(SignatureError, match="outside"):
            engine.run({"x": np.zeros((9, 8), np.float32)})
