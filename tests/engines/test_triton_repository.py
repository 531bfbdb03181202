"""``hidemo engines export-triton``: a Triton model repository from verified engines.

Every ``config.pbtxt`` written is parsed with Triton's own ``model_config.proto`` (compiled
in tritonclient) and compared with its manifest: names, dtypes, dims, batch, batching
policy, instance group and identity parameters. The dims are also checked against the ONNX
graph by the rule Triton's onnxruntime backend applies at load time (same rank; where both
the model and the configuration fix a size, the sizes agree; batching needs a variable first
axis). No Triton server runs here: the TensorRT model is checked as a configuration only.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorrt_fixtures import install_relu
from tritonclient.grpc import model_config_pb2

from engines.manifest import (
    EngineManifest,
    EngineMissing,
    EngineStale,
    ParityFailed,
    ParityResult,
    SourceInfo,
    read_manifest,
    sha256_file,
)
from engines.plans import PlanRecord
from engines.serving import repository
from engines.serving.identity import WIRE_DTYPES, NotServable, identity_parameters
from engines.serving.repository import (
    MODEL_RECORD,
    REPOSITORY_MARKER,
    ExportedModel,
    write_repository,
)
from engines.serving.settings import BatchingPolicy
from engines.spec import Signature, TensorSpec

ModelConfig = model_config_pb2.ModelConfig


# --- helpers -------------------------------------------------------------------------------

def install_engine(engine_dir: Path, name: str, signature: Signature, data: bytes,
                   *, parity_passed: bool = True) -> EngineManifest:
    """A verified engine whose file is ``data`` (the manifest's hash matches it)."""
    engine_dir.mkdir(parents=True, exist_ok=True)
    path = engine_dir / f"{name}.onnx"
    path.write_bytes(data)
    manifest = EngineManifest(
        name=name, role=name, profile="tiny", model=f"test/{name}", signature=signature,
        onnx_file=path.name, onnx_sha256=sha256_file(path),
        source=SourceInfo(kind="random-init", description="none", sha256="1" * 64),
        opset=17, precision="fp32", backend="onnxruntime", device="cpu",
        parity=ParityResult(passed=parity_passed, tolerance=1e-4,
                            max_abs_diff={"y": 0.0 if parity_passed else 0.5},
                            shapes_checked=[]),
        versions={}, config={}, git_commit=None, created="2026-12-07T00:00:00+00:00")
    manifest.write(engine_dir)
    return manifest


def install_fixed(engine_dir: Path) -> EngineManifest:
    """A real ONNX engine with no batch axis: Sigmoid over a fixed (1, 3) and a (seq,) tensor."""
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Sigmoid", ["a"], ["b"]),
         onnx.helper.make_node("Identity", ["ids"], ["ids_out"])], "fixed",
        [onnx.helper.make_tensor_value_info("a", onnx.TensorProto.FLOAT, [1, 3]),
         onnx.helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, ["seq"])],
        [onnx.helper.make_tensor_value_info("b", onnx.TensorProto.FLOAT, [1, 3]),
         onnx.helper.make_tensor_value_info("ids_out", onnx.TensorProto.INT64, ["seq"])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    signature = Signature(
        inputs=(TensorSpec(name="a", dtype="float32", shape=(1, 3)),
                TensorSpec(name="ids", dtype="int64", shape=("seq",))),
        outputs=(TensorSpec(name="b", dtype="float32", shape=(1, 3)),
                 TensorSpec(name="ids_out", dtype="int64", shape=("seq",))))
    return install_engine(engine_dir, "fixed", signature, model.SerializeToString())


def parse(model_dir: Path) -> ModelConfig:
    """``config.pbtxt`` parsed by protobuf with Triton's schema (unknown fields fail)."""
    return text_format.Parse((model_dir / "config.pbtxt").read_text(), ModelConfig())


def served_shape(tensor: model_config_pb2.ModelInput | model_config_pb2.ModelOutput,
                 max_batch_size: int) -> list[int]:
    """The full tensor shape Triton serves: batch (-1) when it owns it, then the dims (or
    the reshape, which is the shape the model sees)."""
    dims = list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
    return ([-1] if max_batch_size > 0 else []) + dims


def manifest_shape(spec: TensorSpec) -> list[int]:
    return [-1 if isinstance(d, str) else d for d in spec.shape]


def assert_matches(config: ModelConfig, manifest: EngineManifest, name: str, platform: str,
                   policy: BatchingPolicy) -> None:
    """The configuration says exactly what the manifest says, under ``policy``."""
    signature = manifest.signature
    tensors = (*signature.inputs, *signature.outputs)
    leads_with_batch = all(t.shape and t.shape[0] == "batch" for t in tensors)
    assert config.name == name
    assert config.platform == platform
    assert config.max_batch_size == (policy.max_batch_size if leads_with_batch else 0)
    for served, specs in ((config.input, signature.inputs), (config.output, signature.outputs)):
        assert [t.name for t in served] == [s.name for s in specs]
        for tensor, spec in zip(served, specs, strict=True):
            assert model_config_pb2.DataType.Name(tensor.data_type) == (
                f"TYPE_{WIRE_DTYPES[spec.dtype]}")
            assert served_shape(tensor, config.max_batch_size) == manifest_shape(spec)
            assert len(tensor.dims) >= 1 and all(d == -1 or d >= 1 for d in tensor.dims)
    if leads_with_batch:
        assert list(config.dynamic_batching.preferred_batch_size) == list(
            policy.preferred_batch_sizes)
        assert config.dynamic_batching.max_queue_delay_microseconds == policy.max_queue_delay_us
    else:
        assert not config.HasField("dynamic_batching")
    [group] = config.instance_group
    assert group.count == policy.instances
    assert model_config_pb2.ModelInstanceGroup.Kind.Name(group.kind) == policy.kind
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert parameters == identity_parameters(manifest)
    assert parameters["hidemo.onnx_sha256"] == manifest.onnx_sha256


def onnx_dims(path: Path) -> dict[str, list[int]]:
    """Each graph input and output of an ONNX file: fixed sizes, -1 where variable."""
    graph = onnx.load(str(path), load_external_data=False).graph
    constants = {t.name for t in graph.initializer}
    return {v.name: [d.dim_value if d.HasField("dim_value") else -1
                     for d in v.type.tensor_type.shape.dim]
            for v in (*graph.input, *graph.output) if v.name not in constants}


def assert_onnx_accepts(config: ModelConfig, model_file: Path) -> None:
    """Triton's onnxruntime backend check: batching needs a variable first axis in the
    model; then ranks agree, and every size fixed in both agrees."""
    model = onnx_dims(model_file)
    for tensor in (*config.input, *config.output):
        wanted = served_shape(tensor, config.max_batch_size)
        have = model[tensor.name]
        if config.max_batch_size > 0:
            assert have[0] == -1, f"{tensor.name}: the model's first axis is fixed: {have}"
        assert len(have) == len(wanted), (tensor.name, have, wanted)
        for mine, theirs in zip(have, wanted, strict=True):
            assert mine == -1 or theirs == -1 or mine == theirs, (tensor.name, have, wanted)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# --- what is written ---------------------------------------------------------------------

def test_every_model_parses_and_matches_its_manifest(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    relu, fixed = install_relu(engines), install_fixed(engines)
    policy = BatchingPolicy(max_batch_size=8, preferred_batch_sizes=(2, 8),
                            max_queue_delay_us=250, instances=2, kind="KIND_CPU")
    repo = tmp_path / "repo"
    written = write_repository(engines, repo, policy=policy)

    assert [w.path for w in written] == [repo / "fixed", repo / "relu"]
    assert sorted(p.name for p in repo.iterdir()) == ["fixed", "hidemo-export.json", "relu"]
    for manifest in (relu, fixed):
        model_dir = repo / manifest.name
        config = parse(model_dir)
        assert_matches(config, manifest, manifest.name, "onnxruntime_onnx", policy)
        onnx_file = model_dir / "1" / "model.onnx"
        assert onnx_file.read_bytes() == (engines / manifest.onnx_file).read_bytes()
        assert onnx_file.stat().st_ino != (engines / manifest.onnx_file).stat().st_ino
        assert_onnx_accepts(config, onnx_file)
        assert sorted(p.name for p in model_dir.iterdir()) == ["1", "config.pbtxt",
                                                                MODEL_RECORD]
        record = ExportedModel.model_validate_json((model_dir / MODEL_RECORD).read_text())
        assert record.onnx_sha256 == manifest.onnx_sha256 and record.random_weights
        assert record.files["1/model.onnx"] == sha256_file(onnx_file)
        assert record.files["config.pbtxt"] == sha256_file(model_dir / "config.pbtxt")
    assert parse(repo / "relu").max_batch_size == 8
    assert parse(repo / "fixed").max_batch_size == 0


def test_a_prefix_names_models_and_several_sets_share_a_repository(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    relu = install_relu(engines)
    repo = tmp_path / "repo"
    write_repository(engines, repo, prefix="edge.")
    write_repository(engines, repo, prefix="paper-")
    assert {p.name for p in repo.iterdir()} == {"edge.relu", "paper-relu", REPOSITORY_MARKER}
    for name in ("edge.relu", "paper-relu"):
        assert_matches(parse(repo / name), relu, name, "onnxruntime_onnx", BatchingPolicy())
    with pytest.raises(ValueError, match="model prefix"):
        write_repository(engines, repo, prefix="a/b")


def test_only_the_named_engines_and_a_missing_one_is_refused(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    install_relu(engines)
    install_fixed(engines)
    written = write_repository(engines, tmp_path / "repo", names=["relu"])
    assert [w.record.engine for w in written] == ["relu"]
    with pytest.raises(EngineMissing, match="no manifest") as info:
        write_repository(engines, tmp_path / "other", names=["relu", "detector"])
    assert "hidemo engines build" in info.value.fix
    assert not (tmp_path / "other").exists()
    with pytest.raises(EngineMissing, match="no engines in"):
        write_repository(tmp_path / "empty", tmp_path / "other")


NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_0123456789", min_size=1, max_size=8)
AXES = st.sampled_from(["sequence", "height", "width", "n"])
SIZES = st.integers(min_value=1, max_value=4096)


@st.composite
def signatures(draw: st.DrawFn) -> Signature:
    """Random servable signatures: any wire dtype, fixed sizes and named axes, with every
    tensor leading with ``batch`` (batched) or not."""
    lead_batch = draw(st.booleans())
    names = draw(st.lists(NAMES, min_size=2, max_size=6, unique=True))
    split = draw(st.integers(min_value=1, max_value=len(names) - 1))

    def tensor(name: str) -> TensorSpec:
        rest = draw(st.lists(st.one_of(SIZES, AXES, st.just("batch")), max_size=4))
        # unbatched: this tensor may lead with batch, but then another must not (below)
        shape = ("batch", *rest) if lead_batch else tuple(rest)
        return TensorSpec(name=name, dtype=draw(st.sampled_from(sorted(WIRE_DTYPES))),
                          shape=shape)

    specs = [tensor(n) for n in names]
    if not lead_batch and all(s.shape[:1] == ("batch",) for s in specs):
        specs[0] = specs[0].model_copy(update={"shape": (draw(SIZES), *specs[0].shape)})
    return Signature(inputs=tuple(specs[:split]), outputs=tuple(specs[split:]))


@st.composite
def policies(draw: st.DrawFn) -> BatchingPolicy:
    largest = draw(st.integers(min_value=1, max_value=64))
    return BatchingPolicy(
        max_batch_size=largest,
        preferred_batch_sizes=tuple(draw(st.lists(st.integers(1, largest), max_size=3,
                                                  unique=True))),
        max_queue_delay_us=draw(st.integers(0, 100_000)),
        instances=draw(st.integers(1, 8)),
        kind=draw(st.sampled_from(["KIND_AUTO", "KIND_CPU", "KIND_GPU"])))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(signature=signatures(), policy=policies(), prefix=st.sampled_from(["", "site1_"]))
def test_any_signature_round_trips_through_config_pbtxt(signature: Signature,
                                                        policy: BatchingPolicy,
                                                        prefix: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        manifest = install_engine(root / "engines", "engine", signature, b"not read by this")
        [written] = write_repository(root / "engines", root / "repo", prefix=prefix,
                                     policy=policy)
        assert written.path == root / "repo" / f"{prefix}engine"
        assert_matches(parse(written.path), manifest, f"{prefix}engine", "onnxruntime_onnx",
                       policy)


@settings(max_examples=30, deadline=None)
@given(signature=signatures(), axis=st.integers(0, 3), dtype=st.sampled_from(
    ["complex64", "str", "object", "datetime64"]), zero=st.booleans())
def test_a_signature_triton_cannot_describe_is_refused_and_nothing_written(
        signature: Signature, axis: int, dtype: str, zero: bool) -> None:
    first = signature.inputs[0]
    if zero:  # a fixed size 0 somewhere in the first input
        shape = list(first.shape) + [1] * (axis + 1 - len(first.shape))
        shape[min(axis, len(shape) - 1)] = 0
        bad = first.model_copy(update={"shape": tuple(shape)})
        match = "fixed size 0"
    else:
        bad = first.model_copy(update={"dtype": dtype})
        match = "has no Triton datatype"
    broken = signature.model_copy(update={"inputs": (bad, *signature.inputs[1:])})
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        install_engine(root / "engines", "engine", broken, b"x")
        with pytest.raises(NotServable, match=match) as info:
            write_repository(root / "engines", root / "repo")
        assert f"tensor {first.name!r}" in str(info.value)
        assert sorted(p.name for p in root.iterdir()) == ["engines"]


# --- only verified engines, all or nothing -------------------------------------------------

def test_a_stale_engine_refuses_the_export_and_the_repository_is_untouched(
        tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    install_relu(engines)
    fixed = install_fixed(engines)
    repo = tmp_path / "repo"
    write_repository(engines, repo)
    before = snapshot(repo)

    onnx_file = engines / fixed.onnx_file
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")
    with pytest.raises(EngineStale, match="does not match its manifest") as info:
        write_repository(engines, repo)
    assert info.value.fix == f"hidemo engines build --profile tiny --engine-dir {engines}"
    assert snapshot(repo) == before  # the copy in the repository is not the tampered file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engines", "repo"]


def test_an_engine_that_failed_parity_is_refused(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    install_engine(engines, "bad", install_relu(engines).signature, b"x", parity_passed=False)
    with pytest.raises(ParityFailed, match="parity"):
        write_repository(engines, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()


def test_a_failure_mid_export_leaves_no_partial_model(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    engines = tmp_path / "engines"
    install_relu(engines)
    install_fixed(engines)
    repo = tmp_path / "repo"
    write_repository(engines, repo, names=["relu"])
    before = snapshot(repo)
    placed = []
    real_place = repository._place

    def failing_place(*args: object) -> None:
        if placed:
            raise OSError(28, "No space left on device")
        placed.append(args)
        real_place(*args)

    monkeypatch.setattr(repository, "_place", failing_place)
    with pytest.raises(OSError, match="No space left"):
        write_repository(engines, repo, policy=BatchingPolicy(max_batch_size=4,
                                                              preferred_batch_sizes=(2,)))
    assert placed, "the first model was staged before the failure"
    assert snapshot(repo) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engines", "repo"]  # no staging left


def test_a_folder_that_is_not_an_export_is_written_only_with_force(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    install_relu(engines)
    repo = tmp_path / "repo"
    (repo / "theirs").mkdir(parents=True)
    (repo / "theirs" / "config.pbtxt").write_text('name: "theirs"\n')
    with pytest.raises(FileExistsError, match="not a hidemo export") as info:
        write_repository(engines, repo)
    assert "--force" in str(info.value)
    assert snapshot(repo) == {"theirs/config.pbtxt": b'name: "theirs"\n'}

    write_repository(engines, repo, force=True)
    assert (repo / "theirs" / "config.pbtxt").read_bytes() == b'name: "theirs"\n'
    assert (repo / REPOSITORY_MARKER).is_file() and (repo / "relu" / MODEL_RECORD).is_file()

    (repo / "relu2").mkdir()  # someone else's model under a name the next export uses
    (engines / "relu2.manifest.json").write_text(
        (engines / "relu.manifest.json").read_text().replace('"name": "relu"',
                                                             '"name": "relu2"'))
    with pytest.raises(FileExistsError, match="hidemo did not write"):
        write_repository(engines, repo)
    assert not any((repo / "relu2").iterdir())
    write_repository(engines, repo, force=True)
    assert parse(repo / "relu2").name == "relu2"


def test_a_new_export_replaces_a_previous_one(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    relu = install_relu(engines)
    repo = tmp_path / "repo"
    write_repository(engines, repo, policy=BatchingPolicy(max_batch_size=4,
                                                          preferred_batch_sizes=(2,)))
    (repo / "relu" / "1" / "leftover.txt").write_text("from before")
    write_repository(engines, repo)
    assert_matches(parse(repo / "relu"), relu, "relu", "onnxruntime_onnx", BatchingPolicy())
    assert not (repo / "relu" / "1" / "leftover.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["engines", "repo"]


# --- TensorRT plans (configuration only: no GPU, no TensorRT here) -----------------------

def add_plans(engine_dir: Path, manifest: EngineManifest,
              plans: list[tuple[str, str, str, int]]) -> EngineManifest:
    """List plans (compute capability, GPU, created, batch max) with fake plan bytes."""
    records = []
    for capability, gpu, created, batch_max in plans:
        file = f"relu.{gpu.replace(' ', '_')}.{created[:10]}.plan"
        (engine_dir / file).write_bytes(f"PLAN {gpu} {created}".encode())
        records.append(PlanRecord(
            file=file, sha256=sha256_file(engine_dir / file), tensorrt_version="10.3.0",
            gpu_name=gpu, compute_capability=capability, precision="fp16",
            profile_shapes={"x": ((1, 4), (4, 4), (batch_max, 4))},
            onnx_sha256=manifest.onnx_sha256, created=created))
    updated = manifest.model_copy(update={"plans": [*manifest.plans, *records]})
    updated.write(engine_dir)
    return updated


def test_tensorrt_plans_become_a_second_model_per_compute_capability(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    manifest = add_plans(engines, install_relu(engines), [
        ("8.6", "NVIDIA A10", "2026-12-01T00:00:00+00:00", 32),
        ("8.6", "NVIDIA RTX 3090", "2026-12-02T00:00:00+00:00", 16),  # newer: served for 8.6
        ("9.0", "NVIDIA H100", "2026-12-01T00:00:00+00:00", 16),
    ])
    repo = tmp_path / "repo"
    policy = BatchingPolicy(max_batch_size=32, preferred_batch_sizes=(8, 32))
    written = {w.record.model: w for w in write_repository(engines, repo, policy=policy)}

    assert set(written) == {"relu", "relu_trt"}
    assert_matches(parse(repo / "relu"), manifest, "relu", "onnxruntime_onnx", policy)
    config = parse(repo / "relu_trt")
    clipped = BatchingPolicy(max_batch_size=16, preferred_batch_sizes=(8,), kind="KIND_GPU")
    assert_matches(config, manifest, "relu_trt", "tensorrt_plan", clipped)
    assert dict(config.cc_model_filenames) == {"8.6": "model_sm86.plan",
                                               "9.0": "model_sm90.plan"}
    by_gpu = {p.gpu_name: p for p in manifest.plans}
    assert (repo / "relu_trt/1/model_sm86.plan").read_bytes() == (
        engines / by_gpu["NVIDIA RTX 3090"].file).read_bytes()
    assert (repo / "relu_trt/1/model_sm90.plan").read_bytes() == (
        engines / by_gpu["NVIDIA H100"].file).read_bytes()
    assert sorted(p.name for p in (repo / "relu_trt/1").iterdir()) == [
        "model_sm86.plan", "model_sm90.plan"]
    line = written["relu_trt"].line()
    assert "tensorrt_plan" in line and "unverified" in line and "max_batch_size 16" in line
    assert "NVIDIA A10" in line and "NVIDIA A10" not in written["relu"].line()  # left out

    cpu = write_repository(engines, tmp_path / "cpu", policy=BatchingPolicy(kind="KIND_CPU"))
    assert [w.record.model for w in cpu] == ["relu"]
    assert "TensorRT runs only on a GPU" in cpu[0].line()


def test_a_plan_of_another_onnx_or_a_tampered_plan_is_refused(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    manifest = add_plans(engines, install_relu(engines),
                         [("9.0", "NVIDIA H100", "2026-12-01T00:00:00+00:00", 16)])
    (engines / manifest.plans[0].file).write_bytes(b"PLAN, modified")
    with pytest.raises(EngineStale, match="does not match its manifest") as info:
        write_repository(engines, tmp_path / "repo")
    assert "--tensorrt" in info.value.fix

    other = manifest.plans[0].model_copy(update={
        "onnx_sha256": "2" * 64, "sha256": sha256_file(engines / manifest.plans[0].file)})
    manifest.model_copy(update={"plans": [other]}).write(engines)
    with pytest.raises(EngineStale, match="built from another ONNX") as info:
        write_repository(engines, tmp_path / "repo")
    assert "--tensorrt" in info.value.fix
    assert not (tmp_path / "repo").exists()


def test_an_engine_named_like_another_ones_tensorrt_model_is_refused(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    add_plans(engines, install_relu(engines),
              [("9.0", "NVIDIA H100", "2026-12-01T00:00:00+00:00", 16)])
    install_relu(engines, name="relu_trt")
    with pytest.raises(ValueError, match=r"\['relu_trt'\] would be written twice"):
        write_repository(engines, tmp_path / "repo")
    assert not (tmp_path / "repo").exists()
    assert len(write_repository(engines, tmp_path / "repo", names=["relu_trt"])) == 1


# --- through the command line --------------------------------------------------------------

def hidemo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hidemo", "engines", "export-triton", *args],
                          capture_output=True, text=True, timeout=120)


def test_the_command_writes_the_repository_and_refuses_a_stale_engine(tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    relu, fixed = install_relu(engines), install_fixed(engines)
    repo = tmp_path / "repo"
    result = hidemo("--profile", "tiny", "--engine-dir", str(engines), "--repo", str(repo),
                    "--model-prefix", "cam_", "--max-batch-size", "4",
                    "--max-queue-delay-us", "100", "--instances", "2", "--kind", "KIND_CPU")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[1] for line in lines if line.startswith("wrote ")] == [
        str(repo / "cam_fixed"), str(repo / "cam_relu")]
    assert (f"docker run --rm --gpus all -p8000:8000 -p8001:8001 -p8002:8002 -v {repo}:/models "
            "nvcr.io/nvidia/tritonserver:24.05-py3 tritonserver --model-repository=/models"
            ) in result.stdout
    policy = BatchingPolicy(max_batch_size=4, preferred_batch_sizes=(4,), max_queue_delay_us=100,
                            instances=2, kind="KIND_CPU")  # the default (4, 8) cut to 4
    for manifest in (relu, fixed):
        assert_matches(parse(repo / f"cam_{manifest.name}"), manifest, f"cam_{manifest.name}",
                       "onnxruntime_onnx", policy)
    before = snapshot(repo)

    onnx_file = engines / relu.onnx_file
    onnx_file.write_bytes(onnx_file.read_bytes()[:-5])
    result = hidemo("--profile", "tiny", "--engine-dir", str(engines), "--repo", str(repo))
    assert result.returncode == 2
    assert "does not match its manifest" in result.stderr
    assert f"fix: hidemo engines build --profile tiny --engine-dir {engines}" in result.stderr
    assert "wrote" not in result.stdout
    assert snapshot(repo) == before


# --- the real engines ----------------------------------------------------------------------

@pytest.mark.slow
def test_every_tiny_engine_exports_to_a_config_its_onnx_satisfies(tiny_engine_dir: Path,
                                                                   tmp_path: Path) -> None:
    engines = tmp_path / "engines"
    shutil.copytree(tiny_engine_dir, engines)
    repo = tmp_path / "repo"
    written = write_repository(engines, repo)
    names = sorted(p.name.removesuffix(".manifest.json")
                   for p in engines.glob("*.manifest.json"))
    assert sorted(w.record.engine for w in written) == names
    for name in names:
        manifest = read_manifest(engines, name)
        config = parse(repo / name)
        assert_matches(config, manifest, name, "onnxruntime_onnx", BatchingPolicy())
        assert_onnx_accepts(config, repo / name / "1" / "model.onnx")
        assert sha256_file(repo / name / "1" / "model.onnx") == manifest.onnx_sha256
    assert parse(repo / "detector").max_batch_size > 0  # the heavy encoders batch
