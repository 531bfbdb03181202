"""The manifest gate on a hand-made ONNX file: refusals and their messages (fast, no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from engines.backends.onnxruntime import OnnxRuntimeEngine
from engines.manifest import (
    EngineManifest,
    EngineMissing,
    EngineStale,
    ParityFailed,
    ParityResult,
    SourceInfo,
    engine_state,
    hash_source,
    read_manifest,
    sha256_file,
    verify,
)
from engines.runtime import load_engine
from engines.spec import Signature, TensorSpec

SIGNATURE = Signature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=("batch", 4)),),
    outputs=(TensorSpec(name="y", dtype="float32", shape=("batch", 4)),),
)


def _write_relu_onnx(path: Path) -> None:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node], "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _install(engine_dir: Path, *, source: SourceInfo | None = None,
             parity_passed: bool = True) -> EngineManifest:
    engine_dir.mkdir(parents=True, exist_ok=True)
    onnx_path = engine_dir / "relu-abc.onnx"
    _write_relu_onnx(onnx_path)
    manifest = EngineManifest(
        name="relu", role="relu", profile="tiny", model="relu",
        signature=SIGNATURE, onnx_file=onnx_path.name, onnx_sha256=sha256_file(onnx_path),
        source=source or SourceInfo(kind="random-init", description="none", sha256="0" * 64),
        opset=17, precision="fp32", backend="onnxruntime", device="cpu",
        parity=ParityResult(passed=parity_passed, tolerance=1e-4,
                            max_abs_diff={"y": 0.0 if parity_passed else 0.5},
                            shapes_checked=[{"x": [1, 4]}]),
        versions={}, config={}, git_commit=None, created="2026-11-25T00:00:00+00:00",
    )
    manifest.write(engine_dir)
    return manifest


def test_verified_engine_loads_and_runs(tmp_path: Path) -> None:
    _install(tmp_path)
    engine = load_engine(tmp_path, "relu")
    assert isinstance(engine, OnnxRuntimeEngine)
    out = engine.run({"x": np.array([[-1, 2, -3, 4]], np.float32)})
    np.testing.assert_array_equal(out["y"], [[0, 2, 0, 4]])
    assert engine.random_weights
    assert engine_state(tmp_path, "relu")[0] == "random-weights"


def test_manifest_round_trips(tmp_path: Path) -> None:
    written = _install(tmp_path)
    assert read_manifest(tmp_path, "relu") == written


def test_missing_manifest_names_the_build_command(tmp_path: Path) -> None:
    with pytest.raises(EngineMissing, match="no manifest") as info:
        load_engine(tmp_path, "detector")
    assert "hidemo engines build" in info.value.fix
    assert engine_state(tmp_path, "detector")[0] == "missing"


def test_tampered_onnx_is_refused(tmp_path: Path) -> None:
    manifest = _install(tmp_path)
    with open(tmp_path / manifest.onnx_file, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(EngineStale, match="does not match its manifest") as info:
        load_engine(tmp_path, "relu")
    assert info.value.fix.startswith("hidemo engines build --profile tiny")
    assert engine_state(tmp_path, "relu")[0] == "stale"


def test_deleted_onnx_is_refused(tmp_path: Path) -> None:
    manifest = _install(tmp_path)
    (tmp_path / manifest.onnx_file).unlink()
    with pytest.raises(EngineMissing, match="is missing"):
        load_engine(tmp_path, "relu")


def test_failed_parity_is_refused(tmp_path: Path) -> None:
    _install(tmp_path, parity_passed=False)
    with pytest.raises(ParityFailed, match="parity against torch failed"):
        load_engine(tmp_path, "relu")
    assert engine_state(tmp_path, "relu")[0] == "failed-parity"


def test_changed_source_checkpoint_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "weights" / "model.bin"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(b"trained once")
    source = SourceInfo(kind="checkpoint", description="test", sha256=hash_source(checkpoint),
                        path=str(checkpoint))
    _install(tmp_path / "engines", source=source)
    verify(read_manifest(tmp_path / "engines", "relu"), tmp_path / "engines")
    checkpoint.write_bytes(b"trained again")
    with pytest.raises(EngineStale, match="changed since the engine was built"):
        load_engine(tmp_path / "engines", "relu")
    checkpoint.unlink()
    with pytest.raises(EngineStale, match="is gone"):
        load_engine(tmp_path / "engines", "relu")


def test_folder_checkpoint_hash_sees_every_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"a")
    before = hash_source(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"b")
    assert hash_source(tmp_path) != before


def test_unreadable_or_foreign_manifest(tmp_path: Path) -> None:
    manifest = _install(tmp_path)
    path = tmp_path / "relu.manifest.json"
    data = json.loads(path.read_text())
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(EngineStale, match="schema 99"):
        load_engine(tmp_path, "relu")
    path.write_text("{not json")
    with pytest.raises(EngineStale, match="unreadable"):
        load_engine(tmp_path, "relu")
    assert manifest.name == "relu"


def test_wrong_input_is_rejected_before_the_runtime(tmp_path: Path) -> None:
    _install(tmp_path)
    engine = load_engine(tmp_path, "relu")
    with pytest.raises(ValueError, match="input 'x': dtype float64"):
        engine.run({"x": np.zeros((1, 4))})
