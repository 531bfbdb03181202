"""load_engine's choice of backend: a manifest's TensorRT plan, refusals, onnxruntime providers.

No TensorRT here: a stand-in ``tensorrt`` module gives a version, the CUDA device is patched,
and ``TensorRTEngine.from_manifest`` is replaced by a recorder, so what is tested is which
plan the runtime picks and what it says when there is none, never TensorRT itself. The
onnxruntime cases run the real CPU onnxruntime.
"""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tensorrt_fixtures import add_plan, install_relu

import engines.backends.tensorrt as trt_backend
from engines.backends import onnxruntime as ort_backend
from engines.backends.onnxruntime import (
    CPU,
    CUDA,
    TENSORRT,
    OnnxRuntimeEngine,
    ProviderUnavailable,
    resolve_providers,
)
from engines.backends.tensorrt import BackendUnavailable, CudaDevice
from engines.manifest import EngineManifest, EngineMissing, EngineStale
from engines.runtime import load_engine


class Loaded:
    """What the patched ``TensorRTEngine.from_manifest`` returns: the plan it was asked for."""

    def __init__(self, manifest: EngineManifest, engine_dir: Path) -> None:
        self.manifest, self.engine_dir = manifest, engine_dir


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A machine with TensorRT ``version`` and GPU ``gpu`` (both settable by the test)."""
    state = types.SimpleNamespace(version="10.3.0", gpu="NVIDIA H100", loads=[], fail=None)
    module = types.ModuleType("tensorrt")
    monkeypatch.setitem(sys.modules, "tensorrt", module)
    monkeypatch.setattr(trt_backend, "_cuda_device_count", lambda: 1)
    monkeypatch.setattr(trt_backend, "cuda_device",
                        lambda index=0: CudaDevice(index, state.gpu, "9.0"))

    def from_manifest(cls: type, manifest: EngineManifest, engine_dir: Path,
                      **_: Any) -> Loaded:
        if state.fail is not None:
            raise state.fail
        state.loads.append(manifest.name)
        return Loaded(manifest, engine_dir)

    monkeypatch.setattr(trt_backend.TensorRTEngine, "from_manifest", classmethod(from_manifest))

    def sync() -> None:
        module.__version__ = state.version

    state.sync = sync
    return state


def _with_plan(engine_dir: Path) -> EngineManifest:
    return add_plan(engine_dir, install_relu(engine_dir), version="10.3.0", gpu="NVIDIA H100")


@pytest.mark.parametrize("backend", ["tensorrt", "auto"])
def test_the_plan_for_this_version_and_gpu_is_loaded(machine: Any, tmp_path: Path,
                                                     backend: str) -> None:
    _with_plan(tmp_path)
    machine.sync()
    engine = load_engine(tmp_path, "relu", backend)
    assert isinstance(engine, Loaded) and machine.loads == ["relu"]


@pytest.mark.parametrize("version, gpu", [("10.4.0", "NVIDIA H100"), ("10.3.0", "NVIDIA A100")])
def test_tensorrt_without_a_matching_plan_names_the_build_command(
    machine: Any, tmp_path: Path, version: str, gpu: str
) -> None:
    manifest = _with_plan(tmp_path)
    machine.version, machine.gpu = version, gpu
    machine.sync()
    with pytest.raises(EngineMissing) as info:
        load_engine(tmp_path, "relu", "tensorrt")
    message = str(info.value)
    assert f"no TensorRT plan for TensorRT {version} on {gpu}" in message
    assert manifest.plans[0].file in message  # what there is instead
    assert info.value.fix == (
        f"hidemo engines build --tensorrt --profile tiny --engine-dir {tmp_path}")
    assert machine.loads == []


def test_auto_without_a_matching_plan_logs_and_runs_onnxruntime(
    machine: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _with_plan(tmp_path)
    machine.version = "10.4.0"
    machine.sync()
    with caplog.at_level(logging.INFO, logger="engines.runtime"):
        engine = load_engine(tmp_path, "relu", "auto")
    assert isinstance(engine, OnnxRuntimeEngine) and engine.backend == "onnxruntime:cpu"
    assert "no TensorRT plan for TensorRT 10.4.0" in caplog.text
    assert "hidemo engines build --tensorrt" in caplog.text


def test_auto_falls_back_with_a_warning_when_the_plan_will_not_load(
    machine: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _with_plan(tmp_path)
    machine.sync()
    machine.fail = EngineStale("engine 'relu': TensorRT could not deserialize", "rebuild")
    with caplog.at_level(logging.WARNING, logger="engines.runtime"):
        engine = load_engine(tmp_path, "relu", "auto")
    assert isinstance(engine, OnnxRuntimeEngine)
    assert "cannot be used" in caplog.text and "could not deserialize" in caplog.text
    with pytest.raises(EngineStale, match="could not deserialize"):
        load_engine(tmp_path, "relu", "tensorrt")


def test_without_tensorrt_auto_uses_onnxruntime_and_tensorrt_refuses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails
    _with_plan(tmp_path)
    assert isinstance(load_engine(tmp_path, "relu", "auto"), OnnxRuntimeEngine)
    with pytest.raises(BackendUnavailable) as info:
        load_engine(tmp_path, "relu", "tensorrt")
    assert "hidemo engines build --tensorrt --profile tiny" in str(info.value)
    assert "backend 'onnxruntime'" in str(info.value)


def test_a_tampered_plan_refuses_the_engine_on_every_backend(machine: Any,
                                                             tmp_path: Path) -> None:
    manifest = _with_plan(tmp_path)
    machine.sync()
    (tmp_path / manifest.plans[0].file).write_bytes(b"swapped")
    for backend in ("auto", "tensorrt", "onnxruntime"):
        with pytest.raises(EngineStale, match=r"TensorRT plan .* does not match"):
            load_engine(tmp_path, "relu", backend)
    assert machine.loads == []


# ------------------------------------------------------------------ onnxruntime providers


def test_resolve_providers_keeps_order_and_logs_the_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    wanted = [TENSORRT, CUDA, CPU]
    assert resolve_providers(wanted, {CUDA, CPU}, required=False) == [CUDA, CPU]
    with caplog.at_level(logging.INFO, logger=ort_backend.__name__):
        assert resolve_providers(wanted, {CPU}, required=False) == [CPU]
    assert "running on the CPU" in caplog.text
    assert resolve_providers([CUDA], {CPU}, required=False) == [CPU]


def test_pinned_gpu_providers_that_are_missing_are_refused() -> None:
    with pytest.raises(ProviderUnavailable, match="onnxruntime-gpu") as info:
        resolve_providers([CUDA, CPU], {CPU}, required=True)
    assert "CUDAExecutionProvider" in str(info.value)
    with pytest.raises(ProviderUnavailable, match="TensorrtExecutionProvider"):
        resolve_providers([TENSORRT, CUDA, CPU], {CUDA, CPU}, required=True)
    assert resolve_providers([CPU], {CPU}, required=True) == [CPU]


def test_load_engine_with_pinned_cuda_never_runs_silently_on_the_cpu(tmp_path: Path) -> None:
    if CUDA in ort_backend.available_providers():
        pytest.skip("this onnxruntime has CUDA: the refusal is for machines without it")
    install_relu(tmp_path)
    with pytest.raises(ProviderUnavailable, match="not available"):
        load_engine(tmp_path, "relu", "onnxruntime", providers=[CUDA, CPU])
    engine = load_engine(tmp_path, "relu", "onnxruntime")  # not pinned: logged CPU fallback
    assert engine.backend == "onnxruntime:cpu"


@pytest.mark.filterwarnings("ignore:Specified provider")
def test_a_gpu_provider_that_fails_to_start_is_caught_after_the_session(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """onnxruntime lists CUDA but cannot start it (here: this build has no CUDA at all, so the
    real session falls back to the CPU): pinned, refused; not pinned, a warning."""
    import onnxruntime as ort

    if CUDA in ort_backend.available_providers():
        pytest.skip("CUDA would start here")
    monkeypatch.setattr(ort, "get_available_providers", lambda: [CUDA, CPU])
    manifest = install_relu(tmp_path)
    onnx_path = tmp_path / manifest.onnx_file
    with pytest.raises(ProviderUnavailable, match="could not start"):
        OnnxRuntimeEngine("relu", onnx_path, manifest.signature, random_weights=True,
                          providers=[CUDA, CPU], required=True)
    with caplog.at_level(logging.WARNING, logger=ort_backend.__name__):
        engine = OnnxRuntimeEngine("relu", onnx_path, manifest.signature, random_weights=True,
                                   providers=[CUDA, CPU])
    assert "could not start ['CUDAExecutionProvider']" in caplog.text
    out = engine.run({"x": np.array([[-1, 2, -3, 4]], np.float32)})
    np.testing.assert_array_equal(out["y"], [[0, 2, 0, 4]])
