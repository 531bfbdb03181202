"""TensorRT plan records in the manifest: round trip, old manifests, verify() on plan files.

Pure Python on a hand-made ONNX file: no TensorRT, no GPU. The plan files are arbitrary
bytes; what is tested is the sidecar's bookkeeping, not TensorRT.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tensorrt_fixtures import add_plan, install_relu

from engines.manifest import EngineStale, engine_state, manifest_path, read_manifest, verify
from engines.plans import PlanRecord, no_plan_message, select_plan, tensorrt_build_command


def test_manifest_with_plans_round_trips(tmp_path: Path) -> None:
    manifest = add_plan(tmp_path, install_relu(tmp_path))
    manifest = add_plan(tmp_path, manifest, gpu="Orin", version="10.3.0", data=b"ORIN")
    read = read_manifest(tmp_path, "relu")
    assert read == manifest
    assert read.plans[0].profile_shapes == {"x": ((1, 4), (4, 4), (16, 4))}
    assert isinstance(read.plans[0], PlanRecord)
    data = json.loads(manifest_path(tmp_path, "relu").read_text())
    assert data["plans"][1]["gpu_name"] == "Orin"
    assert data["plans"][0]["profile_shapes"] == {"x": [[1, 4], [4, 4], [16, 4]]}
    assert {p["file"] for p in data["plans"]}.isdisjoint(data["files"]), "plans are typed"


def test_manifest_written_before_plans_existed_still_reads(tmp_path: Path) -> None:
    install_relu(tmp_path)
    path = manifest_path(tmp_path, "relu")
    data = json.loads(path.read_text())
    del data["plans"]
    path.write_text(json.dumps(data))
    manifest = read_manifest(tmp_path, "relu")
    assert manifest.plans == []
    verify(manifest, tmp_path)


def test_verify_refuses_a_tampered_plan_with_the_tensorrt_build_command(tmp_path: Path) -> None:
    manifest = add_plan(tmp_path, install_relu(tmp_path))
    verify(manifest, tmp_path)
    (tmp_path / manifest.plans[0].file).write_bytes(b"PLAN, modified")
    with pytest.raises(EngineStale, match="does not match its manifest") as info:
        verify(read_manifest(tmp_path, "relu"), tmp_path)
    assert info.value.fix == tensorrt_build_command("tiny", tmp_path)
    assert info.value.fix.startswith("hidemo engines build --tensorrt --profile tiny")
    assert engine_state(tmp_path, "relu")[0] == "stale"
    verify(read_manifest(tmp_path, "relu"), tmp_path, check_plans=False)  # the builder's view


def test_verify_refuses_a_missing_plan(tmp_path: Path) -> None:
    manifest = add_plan(tmp_path, install_relu(tmp_path))
    (tmp_path / manifest.plans[0].file).unlink()
    with pytest.raises(EngineStale, match="listed in its manifest is missing") as info:
        verify(read_manifest(tmp_path, "relu"), tmp_path)
    assert "--tensorrt" in info.value.fix
    assert engine_state(tmp_path, "relu")[0] == "stale"


def test_select_plan_needs_both_version_and_gpu(tmp_path: Path) -> None:
    manifest = add_plan(tmp_path, install_relu(tmp_path))
    manifest = add_plan(tmp_path, manifest, gpu="Orin", data=b"ORIN")
    h100, orin = manifest.plans
    assert select_plan(manifest.plans, "10.3.0", "NVIDIA H100") == h100
    assert select_plan(manifest.plans, "10.3.0", "Orin") == orin
    assert select_plan(manifest.plans, "10.4.0", "NVIDIA H100") is None
    assert select_plan(manifest.plans, "10.3.0", "NVIDIA A100") is None
    message = no_plan_message("relu", manifest.plans, "10.4.0", "NVIDIA H100")
    assert "no TensorRT plan for TensorRT 10.4.0 on NVIDIA H100" in message
    assert h100.file in message and orin.file in message
