"""A verified one-node ONNX engine and TensorRT plan records for it, shared by the tests of
plan bookkeeping (tests/engines) and of the plan builder loop (tests/export).

Plan files here are arbitrary bytes: these helpers test the sidecar, never TensorRT.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from onnx import TensorProto, helper

from engines.manifest import EngineManifest, ParityResult, SourceInfo, sha256_file
from engines.plans import PlanRecord
from engines.spec import Signature, TensorSpec

SIGNATURE = Signature(
    inputs=(TensorSpec(name="x", dtype="float32", shape=("batch", 4)),),
    outputs=(TensorSpec(name="y", dtype="float32", shape=("batch", 4)),),
)


def install_relu(engine_dir: Path, name: str = "relu") -> EngineManifest:
    """A verified one-node engine (Relu over (batch, 4)) with its manifest, no plans."""
    engine_dir.mkdir(parents=True, exist_ok=True)
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    scratch = engine_dir / f".{name}.onnx"
    onnx.save(model, str(scratch))
    digest = sha256_file(scratch)
    onnx_file = f"{name}-{digest[:12]}.onnx"
    scratch.rename(engine_dir / onnx_file)
    manifest = EngineManifest(
        name=name, role=name, profile="tiny", model=name, signature=SIGNATURE,
        onnx_file=onnx_file, onnx_sha256=digest,
        source=SourceInfo(kind="random-init", description="none", sha256="0" * 64), opset=17,
        precision="fp32", backend="onnxruntime", device="cpu",
        parity=ParityResult(passed=True, tolerance=1e-4, max_abs_diff={"y": 0.0},
                            shapes_checked=[{"x": [1, 4]}]),
        versions={}, config={}, git_commit=None, created="2026-11-25T00:00:00+00:00",
    )
    manifest.write(engine_dir)
    return manifest


def add_plan(engine_dir: Path, manifest: EngineManifest, *, version: str = "10.3.0",
             gpu: str = "NVIDIA H100", data: bytes = b"PLAN") -> EngineManifest:
    """Write a plan file and list it in the manifest (what the plan builder does)."""
    file = f"{Path(manifest.onnx_file).stem}.trt{version}.{gpu.replace(' ', '_')}.fp16.plan"
    (engine_dir / file).write_bytes(data)
    record = PlanRecord(file=file, sha256=sha256_file(engine_dir / file),
                        tensorrt_version=version, gpu_name=gpu, compute_capability="9.0",
                        precision="fp16", profile_shapes={"x": ((1, 4), (4, 4), (16, 4))},
                        onnx_sha256=manifest.onnx_sha256, created="2026-11-26T00:00:00+00:00")
    updated = manifest.model_copy(update={"plans": [*manifest.plans, record]})
    updated.write(engine_dir)
    return updated
