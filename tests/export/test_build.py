"""Export of real architectures (tiny configs): parity recorded, atomic rebuilds, stale refusal."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from engines.engine import Backend
from engines.manifest import EngineStale, engine_state, read_manifest
from engines.profiles import get_profile
from engines.runtime import load_engine
from engines.sources import WeightsLocator
from engines.sources.mediapipe import KEYPOINT_ENGINES
from engines.sources.roles import ROLES
from export.build import ENGINES, build_profile

pytestmark = pytest.mark.slow

TINY = get_profile("tiny")


def test_every_engine_records_passing_parity(tiny_engine_dir: Path) -> None:
    for name in ROLES:
        manifest = read_manifest(tiny_engine_dir, name)
        assert manifest.parity.passed, name
        assert manifest.parity.tolerance == 1e-4
        assert 0 <= manifest.parity.worst <= 1e-4
        assert set(manifest.parity.max_abs_diff) == set(manifest.signature.output_names)
        assert len(manifest.parity.shapes_checked) == 2, "two shapes catch baked sizes"
        assert manifest.random_weights and manifest.source.kind == "random-init"
        assert manifest.versions["onnxruntime"] and manifest.versions["torch"]
        assert manifest.created and manifest.config
        assert engine_state(tiny_engine_dir, name)[0] == "random-weights"


def test_dynamic_axes_work_at_new_sizes(tiny_engine_dir: Path) -> None:
    text = load_engine(tiny_engine_dir, "text_embedder")
    for batch, seq in ((1, 3), (5, 50)):
        ids = np.full((batch, seq), 1500, np.int64)
        out = text.run({"input_ids": ids, "attention_mask": np.ones_like(ids)})
        assert out["embedding"].shape == (batch, 64)
    image = load_engine(tiny_engine_dir, "image_embedder")
    assert image.run({"pixels": np.zeros((6, 3, 112, 112), np.float32)})["cls"].shape == (6, 96)


def test_torch_backend_matches_onnxruntime(tiny_engine_dir: Path, tmp_path: Path) -> None:
    onnx_engine = load_engine(tiny_engine_dir, "image_embedder", Backend.ONNXRUNTIME)
    torch_engine = load_engine(tiny_engine_dir, "image_embedder", Backend.TORCH,
                               weights_dir=tmp_path)
    pixels = np.random.default_rng(1).standard_normal((2, 3, 112, 112)).astype(np.float32)
    a, b = onnx_engine.run({"pixels": pixels}), torch_engine.run({"pixels": pixels})
    np.testing.assert_allclose(a["cls"], b["cls"], atol=1e-4)
    assert torch_engine.backend == "torch:cpu" and onnx_engine.backend == "onnxruntime:cpu"


def test_rebuild_skips_what_is_current_and_replaces_what_is_tampered(
    tiny_engine_dir: Path, tmp_path: Path
) -> None:
    engine_dir = tmp_path / "engines"
    shutil.copytree(tiny_engine_dir, engine_dir)
    # The same (empty) weights folder the engines were built with: the random classifier
    # records where it awaits trained weights (WEIGHTS/classifier/tiny).
    awaited = Path(read_manifest(engine_dir, "classifier").source.path)
    locator = WeightsLocator(awaited.parents[1])
    outcomes = build_profile(TINY, engine_dir, locator=locator)
    assert [o.action for o in outcomes] == ["up-to-date"] * len(ENGINES), "all of them"

    manifest = read_manifest(engine_dir, "text_embedder")
    with open(engine_dir / manifest.onnx_file, "r+b") as handle:
        handle.seek(200)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(EngineStale, match="does not match its manifest"):
        load_engine(engine_dir, "text_embedder")

    outcomes = build_profile(TINY, engine_dir, locator=locator)
    assert {o.name: o.action for o in outcomes} == {
        "detector": "up-to-date", "image_embedder": "up-to-date", "text_embedder": "built",
        "classifier": "up-to-date", **dict.fromkeys(KEYPOINT_ENGINES, "up-to-date")}
    load_engine(engine_dir, "text_embedder")
    onnx_files = sorted(p.name for p in engine_dir.glob("text_embedder-*.onnx"))
    assert onnx_files == [read_manifest(engine_dir, "text_embedder").onnx_file]


def _save_dinov2_checkpoint(folder: Path, seed: int) -> None:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(seed)
    # Trained at 224 like the released checkpoints' grid differs from the engine's input:
    # the export must fold the interpolated position grid into the weights.
    config = Dinov2Config(image_size=224, **TINY.image.config)
    Dinov2Model(config).save_pretrained(folder)


def test_checkpoint_loading_path_and_stale_checkpoint(tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    checkpoint = weights / TINY.image.model_id
    _save_dinov2_checkpoint(checkpoint, seed=1)
    engine_dir = tmp_path / "engines"
    locator = WeightsLocator(weights)
    [outcome] = build_profile(TINY, engine_dir, locator=locator, roles=["image_embedder"])
    manifest = outcome.manifest
    assert outcome.action == "built" and manifest.parity.passed
    assert manifest.source.kind == "checkpoint" and not manifest.random_weights
    assert Path(manifest.source.path) == checkpoint.resolve()
    graph = onnx.load(str(engine_dir / manifest.onnx_file)).graph
    assert "Resize" not in {node.op_type for node in graph.node}, "position grid not folded"
    assert engine_state(engine_dir, "image_embedder")[0] == "ok"

    _save_dinov2_checkpoint(checkpoint, seed=2)  # "retrained"
    with pytest.raises(EngineStale, match="changed since the engine was built"):
        load_engine(engine_dir, "image_embedder")
    assert engine_state(engine_dir, "image_embedder")[0] == "stale"

    [outcome] = build_profile(TINY, engine_dir, locator=locator, roles=["image_embedder"])
    assert outcome.action == "built"
    assert load_engine(engine_dir, "image_embedder").random_weights is False


def test_detector_checkpoint_path(tmp_path: Path) -> None:
    """``weights/yolo11n.pt`` is loaded through ultralytics, hashed, and tracked."""
    from ultralytics import YOLO

    weights = tmp_path / "weights"
    weights.mkdir()
    YOLO("yolo11n.yaml").save(weights / "yolo11n.pt")
    [outcome] = build_profile(TINY, tmp_path / "engines", locator=WeightsLocator(weights),
                              roles=["detector"])
    assert outcome.manifest.source.kind == "checkpoint"
    assert outcome.manifest.parity.passed
    (weights / "yolo11n.pt").write_bytes(b"corrupted")
    with pytest.raises(EngineStale, match="changed"):
        load_engine(tmp_path / "engines", "detector")
