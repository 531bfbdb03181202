"""The ``--tensorrt`` build loop: plan records, staleness, atomic manifests, the CLI message.

The plan builder is injected (:class:`WritingBuilder` writes bytes where a plan would go), so
everything around TensorRT runs for real here: which engines get a plan, the file names, the
records in the manifest, what counts as stale, the timing-cache file, and the console. Not
tested (no TensorRT, no GPU on this machine): TensorRT building or loading a real plan.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from rich.console import Console
from tensorrt_fixtures import add_plan, install_relu

from engines.adapters.classifier import classifier_signature
from engines.backends.tensorrt import CudaDevice
from engines.manifest import (
    EngineManifest,
    engine_state,
    manifest_path,
    read_manifest,
    sha256_file,
    verify,
)
from engines.plans import select_plan
from engines.spec import Signature, TensorSpec
from export.tensorrt_build import PlanBuildError, ShapeProfile, profile_shapes
from export.tensorrt_cli import EXIT_NO_TENSORRT, tensorrt_step
from export.tensorrt_plans import (
    DEFAULT_AXIS_RANGES,
    PlanSettings,
    PlanTarget,
    build_plans,
    parse_axis_ranges,
    timing_cache_name,
)

H100 = PlanTarget("10.3.0", CudaDevice(0, "NVIDIA H100 80GB HBM3", "9.0"))


class WritingBuilder:
    """Stands in for ``build_plan``: writes bytes naming its inputs, appends to the cache."""

    def __init__(self, fail_for: tuple[str, ...] = ()) -> None:
        self.calls: list[dict[str, object]] = []
        self.written: dict[str, bytes] = {}
        self.fail_for = fail_for

    def __call__(self, onnx_path: Path, plan_path: Path, signature: Signature,
                 shape_profiles: Mapping[str, ShapeProfile], *, fp16: bool,
                 workspace_bytes: int, timing_cache: Path | None) -> Path:
        self.calls.append({"onnx": onnx_path.name, "plan": plan_path, "fp16": fp16,
                           "shapes": dict(shape_profiles), "timing_cache": timing_cache})
        if any(onnx_path.name.startswith(f"{name}-") for name in self.fail_for):
            raise PlanBuildError(f"{onnx_path}: TensorRT's ONNX parser failed")
        data = f"{onnx_path.name} fp16={fp16} {sorted(shape_profiles.items())}".encode()
        plan_path.write_bytes(data)
        self.written[onnx_path.name] = data
        assert timing_cache is not None
        old = timing_cache.read_bytes() if timing_cache.is_file() else b""
        timing_cache.write_bytes(old + b"t")
        return plan_path


@pytest.fixture
def engine_dir(tmp_path: Path) -> Path:
    """Two verified engines; names other than the profile's are planned too."""
    folder = tmp_path / "engines"
    install_relu(folder, "detector")
    install_relu(folder, "classifier_int8")
    return folder


def _plans(folder: Path, name: str) -> list:
    return read_manifest(folder, name).plans


def _actions(outcomes: list) -> dict[str, str]:
    return {o.name: o.action for o in outcomes}


# ------------------------------------------------------------------ profiles from manifests


def test_default_axis_table_covers_every_signature_we_build() -> None:
    text = Signature(
        inputs=(TensorSpec(name="input_ids", dtype="int64", shape=("batch", "sequence")),
                TensorSpec(name="attention_mask", dtype="int64", shape=("batch", "sequence"))),
        outputs=(TensorSpec(name="embedding", dtype="float32", shape=("batch", 384)),))
    classifier = classifier_signature(384, 384)
    shapes = profile_shapes(classifier, DEFAULT_AXIS_RANGES)
    assert shapes["image"] == ((1, 1, 384), (4, 16, 384), (16, 128, 384))
    assert shapes["keypoints"][2][:2] == (16, 512)
    assert shapes["text_mask"] == ((1, 1), (4, 1), (16, 1))
    assert profile_shapes(text, DEFAULT_AXIS_RANGES)["input_ids"] == ((1, 1), (4, 64), (16, 512))


def test_axis_ranges_are_overridable_and_checked() -> None:
    ranges = parse_axis_ranges(["batch=1,8,32", "frames=2,2,4"])
    assert ranges["batch"] == (1, 8, 32) and ranges["frames"] == (2, 2, 4)
    assert ranges["sequence"] == DEFAULT_AXIS_RANGES["sequence"]
    for bad in ("batch", "batch=1,2", "batch=a,b,c", "=1,2,3", "batch=4,2,8", "batch=0,1,2"):
        with pytest.raises(ValueError, match="--trt-axis"):
            parse_axis_ranges([bad])


# ------------------------------------------------------------------ the build loop


def test_every_manifest_gets_a_recorded_plan(engine_dir: Path) -> None:
    builder = WritingBuilder()
    outcomes = build_plans(engine_dir, H100, builder=builder)
    assert _actions(outcomes) == {"classifier_int8": "built", "detector": "built"}

    for name in ("classifier_int8", "detector"):
        manifest = read_manifest(engine_dir, name)
        verify(manifest, engine_dir)  # plan files hash to their records
        [plan] = manifest.plans
        stem = Path(manifest.onnx_file).stem
        assert plan.file == f"{stem}.trt10.3.0.NVIDIA_H100_80GB_HBM3.fp16.plan"
        assert plan.sha256 == sha256_file(engine_dir / plan.file)
        assert (plan.tensorrt_version, plan.gpu_name, plan.compute_capability) == (
            "10.3.0", "NVIDIA H100 80GB HBM3", "9.0")
        assert plan.precision == "fp16" and plan.onnx_sha256 == manifest.onnx_sha256
        assert plan.profile_shapes == {"x": ((1, 4), (4, 4), (16, 4))}
        assert plan.created
        # the plan file is exactly what the builder wrote: no metadata added to it
        assert (engine_dir / plan.file).read_bytes() == builder.written[manifest.onnx_file]

    cache = engine_dir / timing_cache_name(H100)
    assert cache.name == "timing.trt10.3.0.NVIDIA_H100_80GB_HBM3.cache"
    assert {c["timing_cache"] for c in builder.calls} == {cache}
    assert cache.read_bytes() == b"tt", "one cache, reused by the second build"
    assert all(c["fp16"] for c in builder.calls)
    leftovers = [p.name for p in engine_dir.iterdir()
                 if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert leftovers == []


def test_current_plans_are_not_rebuilt(engine_dir: Path) -> None:
    build_plans(engine_dir, H100, builder=WritingBuilder())
    before = manifest_path(engine_dir, "detector").read_text()
    builder = WritingBuilder()
    outcomes = build_plans(engine_dir, H100, builder=builder)
    assert set(_actions(outcomes).values()) == {"up-to-date"}
    assert builder.calls == []
    assert manifest_path(engine_dir, "detector").read_text() == before

    outcomes = build_plans(engine_dir, H100, PlanSettings(force=True), builder=builder)
    assert set(_actions(outcomes).values()) == {"built"}


@pytest.mark.parametrize("target", [
    PlanTarget("10.4.0", H100.device),
    PlanTarget("10.3.0", CudaDevice(0, "Orin (nvgpu)", "8.7")),
])
def test_another_tensorrt_or_gpu_gets_its_own_plan_beside_the_first(
    engine_dir: Path, target: PlanTarget
) -> None:
    build_plans(engine_dir, H100, builder=WritingBuilder())
    outcomes = build_plans(engine_dir, target, builder=WritingBuilder())
    assert _actions(outcomes)["detector"] == "built"
    plans = _plans(engine_dir, "detector")
    assert len(plans) == 2
    assert select_plan(plans, "10.3.0", H100.device.name) is not None
    assert select_plan(plans, target.tensorrt_version, target.device.name) is not None
    verify(read_manifest(engine_dir, "detector"), engine_dir)
    assert (engine_dir / timing_cache_name(target)).is_file()


@pytest.mark.parametrize("settings", [
    PlanSettings(fp16=False),
    PlanSettings(axis_ranges={**DEFAULT_AXIS_RANGES, "batch": (1, 8, 32)}),
])
def test_a_new_precision_or_profile_replaces_the_plan_for_this_machine(
    engine_dir: Path, settings: PlanSettings
) -> None:
    build_plans(engine_dir, H100, builder=WritingBuilder())
    [old] = _plans(engine_dir, "detector")
    outcomes = build_plans(engine_dir, H100, settings, builder=WritingBuilder())
    assert _actions(outcomes)["detector"] == "built"
    [new] = _plans(engine_dir, "detector")
    assert new.precision == settings.precision
    assert new.profile_shapes["x"][2][0] == settings.axis_ranges["batch"][2]
    if new.file != old.file:
        assert not (engine_dir / old.file).exists(), "the replaced plan file is removed"
    verify(read_manifest(engine_dir, "detector"), engine_dir)


def test_a_tampered_plan_is_rebuilt_not_refused(engine_dir: Path) -> None:
    build_plans(engine_dir, H100, builder=WritingBuilder())
    [plan] = _plans(engine_dir, "detector")
    (engine_dir / plan.file).write_bytes(b"tampered")
    assert engine_state(engine_dir, "detector")[0] == "stale"
    outcomes = build_plans(engine_dir, H100, builder=WritingBuilder())
    assert _actions(outcomes) == {"classifier_int8": "up-to-date", "detector": "built"}
    verify(read_manifest(engine_dir, "detector"), engine_dir)
    assert engine_state(engine_dir, "detector")[0] == "random-weights"


def test_a_plan_of_an_older_onnx_is_stale(engine_dir: Path) -> None:
    manifest = add_plan(engine_dir, read_manifest(engine_dir, "detector"),
                        version="10.3.0", gpu="Orin")
    older = manifest.plans[0].model_copy(update={"onnx_sha256": "f" * 64})
    manifest.model_copy(update={"plans": [older]}).write(engine_dir)
    build_plans(engine_dir, H100, builder=WritingBuilder())
    [plan] = _plans(engine_dir, "detector")  # the Orin plan of the old ONNX is dropped
    assert plan.gpu_name == H100.device.name
    assert not (engine_dir / older.file).exists()


def test_one_failing_engine_does_not_stop_the_others(engine_dir: Path) -> None:
    before = manifest_path(engine_dir, "detector").read_text()
    outcomes = build_plans(engine_dir, H100, builder=WritingBuilder(fail_for=("detector",)))
    by_name = {o.name: o for o in outcomes}
    assert by_name["detector"].failed and "ONNX parser failed" in by_name["detector"].detail
    assert by_name["classifier_int8"].action == "built"
    assert manifest_path(engine_dir, "detector").read_text() == before
    assert not [p for p in engine_dir.iterdir() if p.name.endswith(".building")]


def test_a_builder_that_writes_nothing_is_a_failure(engine_dir: Path) -> None:
    def silent(*args: object, **kwargs: object) -> None:
        return None

    outcomes = build_plans(engine_dir, H100, builder=silent)
    assert {o.action for o in outcomes} == {"failed"}
    assert "wrote nothing" in outcomes[0].detail


def test_engines_that_do_not_verify_are_skipped_with_the_fix(engine_dir: Path) -> None:
    manifest = read_manifest(engine_dir, "detector")
    with open(engine_dir / manifest.onnx_file, "ab") as handle:
        handle.write(b"\0")
    outcomes = build_plans(engine_dir, H100, builder=WritingBuilder())
    by_name = {o.name: o for o in outcomes}
    assert by_name["detector"].action == "skipped"
    assert "hidemo engines build --profile tiny" in by_name["detector"].detail
    assert by_name["classifier_int8"].action == "built"


def test_an_axis_without_a_range_fails_naming_it(tmp_path: Path) -> None:
    manifest = install_relu(tmp_path, "frames")
    signature = Signature(
        inputs=(TensorSpec(name="x", dtype="float32", shape=("batch", "frames")),),
        outputs=(TensorSpec(name="y", dtype="float32", shape=("batch", "frames")),))
    manifest.model_copy(update={"signature": signature}).write(tmp_path)
    [outcome] = build_plans(tmp_path, H100, builder=WritingBuilder())
    assert outcome.failed and "'frames'" in outcome.detail and "--trt-axis" in outcome.detail


# ------------------------------------------------------------------ the command line


def test_cli_without_tensorrt_says_so_and_that_the_onnx_engines_are_fine(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import export.cli
    from hidemo.cli import main

    built: list[str] = []
    monkeypatch.setattr(export.cli, "build_profile", lambda *a, **k: built.append("onnx") or [])
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails, as here
    engine_dir = tmp_path / "engines"
    code = main(["engines", "build", "--profile", "tiny", "--engine-dir", str(engine_dir),
                 "--tensorrt"])
    raw = capsys.readouterr().err
    err = " ".join(raw.split())
    assert code == EXIT_NO_TENSORRT != 0
    assert built == ["onnx"], "the ONNX engines are built first"
    assert "TensorRT plans not built: TensorRT (>= 10) or a CUDA GPU was not found" in err
    assert "the ONNX engines above were built and verified fine" in err
    assert f"hidemo engines build --tensorrt --profile tiny --engine-dir {engine_dir}\n" in raw


def test_cli_refuses_a_bad_axis_before_building_anything(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import export.cli
    from hidemo.cli import main

    built: list[str] = []
    monkeypatch.setattr(export.cli, "build_profile", lambda *a, **k: built.append("onnx") or [])
    code = main(["engines", "build", "--profile", "tiny", "--engine-dir", str(tmp_path),
                 "--tensorrt", "--trt-axis", "batch=8,1,2"])
    assert code == 2 and built == []
    assert "--trt-axis 'batch=8,1,2'" in capsys.readouterr().err


def test_tensorrt_step_prints_each_engine_and_fails_on_a_failed_plan(
    engine_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = argparse.Namespace(engine_dir=engine_dir, profile="tiny", trt_device=0)
    console = Console(stderr=True, width=200)
    code = tensorrt_step(args, PlanSettings(), console, onnx_ok=True, detect=lambda _: H100,
                         builder=WritingBuilder())
    assert code == 0
    assert "TensorRT 10.3.0 on NVIDIA H100 80GB HBM3" in capsys.readouterr().err
    code = tensorrt_step(args, PlanSettings(force=True), console, onnx_ok=True,
                         detect=lambda _: H100, builder=WritingBuilder(fail_for=("detector",)))
    assert code == 1


# ------------------------------------------------------------------ the real tiny engines


@pytest.mark.slow
def test_plans_for_the_tiny_profile_keep_its_engines_loadable(
    tiny_engine_dir: Path, tmp_path: Path
) -> None:
    """The default axis table fits every real signature; records survive an ONNX rebuild
    check; the onnxruntime path still loads every engine with plans listed."""
    from engines.profiles import get_profile
    from engines.runtime import load_engine
    from engines.sources import WeightsLocator
    from export.build import build_profile

    folder = tmp_path / "engines"
    shutil.copytree(tiny_engine_dir, folder)
    outcomes = build_plans(folder, H100, builder=WritingBuilder())
    actions = _actions(outcomes)  # whatever engines the profile builds, each gets a plan
    assert set(actions.values()) == {"built"}, outcomes
    assert {"classifier", "detector", "image_embedder", "text_embedder"} <= set(actions)
    for outcome in outcomes:
        manifest: EngineManifest = read_manifest(folder, outcome.name)
        dynamic = {s.name for s in manifest.signature.inputs if s.dynamic_axes}
        assert set(manifest.plans[0].profile_shapes) == dynamic
        engine = load_engine(folder, outcome.name, "onnxruntime")
        assert engine.backend == "onnxruntime:cpu"

    awaited = Path(read_manifest(folder, "classifier").source.path)
    rebuilt = build_profile(get_profile("tiny"), folder, locator=WeightsLocator(awaited.parents[1]))
    assert {o.action for o in rebuilt} == {"up-to-date"}
    assert all(len(read_manifest(folder, o.name).plans) == 1 for o in rebuilt)
