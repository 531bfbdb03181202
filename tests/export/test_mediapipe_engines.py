"""MediaPipe's models as keypoint engines: converted, batched, checked against TFLite, refused
when tampered, and runnable on every backend that can run them here."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from engines.backends.tflite import TfliteEngine
from engines.cli import list_engines
from engines.engine import Backend
from engines.manifest import EngineStale, read_manifest, sha256_file, verify
from engines.runtime import load_engine
from engines.sources.mediapipe import (
    CUSTOM_OP_MODELS,
    KEYPOINT_ENGINES,
    KEYPOINT_ROLE,
    MODELS,
    mediapipe_root,
    tflite_path,
)
from export.mediapipe.graph import (
    CustomOpsError,
    custom_ops,
    expand_depth_to_space,
    make_batch_dynamic,
    reject_custom_ops,
    select_outputs,
)
from export.mediapipe.parity import BATCH, model_inputs, parity_photos

# ------------------------------------------------------------ graph edits (no conversion)


def _batch1_graph() -> onnx.ModelProto:
    """x [1, 4, 2, 2] -> DepthToSpace(DCR) -> Reshape(shared [1, -1]) twice -> Slice [0:1]:
    every way tf2onnx's output bakes a batch of 1, in a graph small enough to read."""
    shape = numpy_helper.from_array(np.array([1, -1], np.int64), "shared_shape")
    starts = numpy_helper.from_array(np.array([0], np.int64), "starts")
    ends = numpy_helper.from_array(np.array([1], np.int64), "ends")
    axes = numpy_helper.from_array(np.array([0], np.int64), "axes")
    nodes = [
        helper.make_node("DepthToSpace", ["x"], ["d2s"], blocksize=2, mode="DCR", name="d2s"),
        helper.make_node("Reshape", ["d2s", "shared_shape"], ["flat"], name="flat"),
        helper.make_node("Relu", ["flat"], ["relu"], name="relu"),
        helper.make_node("Reshape", ["relu", "shared_shape"], ["flat2"], name="flat2"),
        helper.make_node("Slice", ["flat2", "starts", "ends", "axes"], ["y"], name="slice"),
        helper.make_node("Neg", ["x"], ["unused"], name="neg"),
    ]
    graph = helper.make_graph(
        nodes, "batch1", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16]),
         helper.make_tensor_value_info("unused", TensorProto.FLOAT, [1, 4, 2, 2])],
        [shape, starts, ends, axes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


def test_graph_edits_give_any_batch_the_batch_one_results() -> None:
    original = _batch1_graph()
    edited = select_outputs(make_batch_dynamic(expand_depth_to_space(original)), {"y": "out"})
    assert [o.name for o in edited.graph.output] == ["out"]
    assert "Neg" not in {n.op_type for n in edited.graph.node}, "dead nodes are pruned"
    assert "DepthToSpace" not in {n.op_type for n in edited.graph.node}
    x = np.random.default_rng(0).standard_normal((5, 4, 2, 2)).astype(np.float32)
    (batched,) = _run(edited, x)
    assert batched.shape == (5, 16)
    for index in range(5):
        want = _run(original, x[index:index + 1])[0]
        np.testing.assert_array_equal(batched[index:index + 1], want)


def test_custom_operators_are_named_and_refused() -> None:
    model = _batch1_graph()
    model.graph.node.append(helper.make_node("TransformLandmarks", ["x"], ["z"],
                                             domain="mediapipe", name="custom"))
    assert custom_ops(model) == {"mediapipe:TransformLandmarks": 1}
    with pytest.raises(CustomOpsError, match="TransformLandmarks x1"):
        reject_custom_ops(model, "toy")
    reject_custom_ops(_batch1_graph(), "toy")  # standard graphs pass


# ------------------------------------------------------------ the converted engines


def test_every_keypoint_engine_is_built_verified_and_listed(tiny_engine_dir: Path) -> None:
    rows = {row["name"]: row for row in list_engines(tiny_engine_dir)}
    for spec in MODELS:
        manifest = read_manifest(tiny_engine_dir, spec.engine)
        assert manifest.role == KEYPOINT_ROLE and not manifest.random_weights
        assert manifest.source.kind == "checkpoint"
        assert manifest.source.sha256 == sha256_file(tflite_path(spec)), "source .tflite hash"
        assert manifest.parity.passed and manifest.parity.reference.startswith("tflite")
        assert set(manifest.parity.max_abs_diff) == {
            *spec.outputs.values(), *(f"{name}@batch{BATCH}" for name in spec.outputs.values())}
        assert manifest.signature.inputs[0].shape == ("batch", spec.size, spec.size, 3)
        assert {"convert:tensorflow", "convert:tf2onnx", "ai-edge-litert"} <= set(
            manifest.versions)
        assert manifest.preprocess["value_range"] == list(spec.value_range)
        assert rows[spec.engine]["state"] == "ok"
        graph = onnx.load(tiny_engine_dir / manifest.onnx_file)
        assert not custom_ops(graph)
        assert graph.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


@pytest.mark.parametrize("spec", MODELS, ids=lambda spec: spec.engine)
def test_engine_matches_the_tflite_interpreter_at_batch_one_and_eight(
        tiny_engine_dir: Path, spec) -> None:
    """Checked here again, not read from the manifest: real photos through both runtimes."""
    engine = load_engine(tiny_engine_dir, spec.engine, Backend.ONNXRUNTIME)
    reference = TfliteEngine(spec.engine, tflite_path(spec), engine.signature, spec.outputs,
                             reference=True)
    images = model_inputs(spec, parity_photos(BATCH))
    batched = engine.run({"image": images})
    for index in range(BATCH):
        expected = reference.run({"image": images[index:index + 1]})
        single = engine.run({"image": images[index:index + 1]})
        for new in spec.outputs.values():
            scale = max(1.0, float(np.abs(expected[new]).max()))
            np.testing.assert_allclose(single[new], expected[new], rtol=0, atol=1e-4 * scale)
            np.testing.assert_allclose(batched[new][index:index + 1], single[new], rtol=0,
                                       atol=1e-5 * scale)


def test_pose_detector_weights_survived_densify(tiny_engine_dir: Path) -> None:
    """pose_detection's sparse weights: read as zeros, the detector scores every anchor
    alike. On the astronaut its best anchor must stand far above the median."""
    spec = next(s for s in MODELS if s.engine == "kp_pose_detection")
    engine = load_engine(tiny_engine_dir, spec.engine, Backend.ONNXRUNTIME)
    scores = engine.run({"image": model_inputs(spec, parity_photos(1))})["scores"].ravel()
    assert scores.max() > 0 > np.median(scores), "a confident person among unlikely anchors"


def test_tampered_keypoint_engine_is_refused_and_rebuilt(
        tiny_engine_dir: Path, tmp_path: Path, convert_env_root: Path) -> None:
    from engines.profiles import get_profile
    from export.build import build_profile

    engine_dir = tmp_path / "engines"
    shutil.copytree(tiny_engine_dir, engine_dir)
    manifest = read_manifest(engine_dir, "kp_iris_landmark")
    with open(engine_dir / manifest.onnx_file, "r+b") as handle:
        handle.seek(500)
        handle.write(b"\x13\x37")
    with pytest.raises(EngineStale, match="does not match its manifest"):
        load_engine(engine_dir, "kp_iris_landmark")
    states = {row["name"]: row["state"] for row in list_engines(engine_dir)}
    assert states["kp_iris_landmark"] == "stale" and states["kp_face_landmark"] == "ok"

    [outcome] = build_profile(get_profile("tiny"), engine_dir, roles=["kp_iris_landmark"],
                              convert_env=convert_env_root)
    assert outcome.action == "built"
    verify(read_manifest(engine_dir, "kp_iris_landmark"), engine_dir)


def test_a_changed_tflite_source_makes_the_engine_stale(tiny_engine_dir: Path,
                                                        tmp_path: Path) -> None:
    engine_dir = tmp_path / "engines"
    shutil.copytree(tiny_engine_dir, engine_dir)
    manifest = read_manifest(engine_dir, "kp_hand_recrop")
    copy = tmp_path / "hand_recrop.tflite"
    shutil.copyfile(manifest.source.path, copy)
    manifest = manifest.model_copy(
        update={"source": manifest.source.model_copy(update={"path": str(copy)})})
    manifest.write(engine_dir)
    verify(manifest, engine_dir)
    with open(copy, "r+b") as handle:  # "mediapipe reinstalled with other weights"
        handle.seek(1000)
        handle.write(b"\xff\xfe")
    with pytest.raises(EngineStale, match="changed since"):
        verify(read_manifest(engine_dir, "kp_hand_recrop"), engine_dir)


@pytest.mark.parametrize("backend", [Backend.TORCH, Backend.TFLITE])
def test_keypoint_engines_run_on_torch_and_tflite(tiny_engine_dir: Path,
                                                  backend: Backend) -> None:
    """torch (onnx2torch: the CUDA path where onnxruntime-gpu is absent) and the TFLite
    interpreter give onnxruntime's outputs for the same batch."""
    for name in ("kp_pose_detection", "kp_face_landmark"):
        spec = next(s for s in MODELS if s.engine == name)
        images = model_inputs(spec, parity_photos(3))
        want = load_engine(tiny_engine_dir, name, Backend.ONNXRUNTIME).run({"image": images})
        engine = load_engine(tiny_engine_dir, name, backend)
        got = engine.run({"image": images})
        assert engine.backend.startswith(backend.value)
        for output, value in want.items():
            scale = max(1.0, float(np.abs(value).max()))
            np.testing.assert_allclose(got[output], value, rtol=0, atol=1e-4 * scale)


def test_tflite_backend_refuses_engines_that_were_not_converted(tiny_engine_dir: Path) -> None:
    with pytest.raises(ValueError, match="only the keypoint engines"):
        load_engine(tiny_engine_dir, "image_embedder", Backend.TFLITE)


@pytest.mark.slow
def test_face_landmark_with_attention_is_refused_for_its_custom_ops(
        tmp_path: Path, convert_env_root: Path) -> None:
    """tf2onnx exits 0 on this model and leaves MediaPipe's ops in the graph: the build's
    check must catch them (this is why face_landmark + iris_landmark are used)."""
    from export.mediapipe.buildenv import ensure_convert_env

    env = ensure_convert_env(convert_env_root)
    target = tmp_path / "attention.onnx"
    env.convert(mediapipe_root() / CUSTOM_OP_MODELS["face_landmark_with_attention"], target, 17)
    with pytest.raises(CustomOpsError, match="TFL_TransformLandmarks"):
        reject_custom_ops(onnx.load(target), "face_landmark_with_attention")


def test_keypoint_engine_names_are_the_build_order() -> None:
    from export.build import ENGINES

    assert ENGINES[-len(KEYPOINT_ENGINES):] == KEYPOINT_ENGINES


def test_a_failed_environment_install_says_what_failed_and_the_way_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from export.mediapipe import buildenv

    monkeypatch.setattr(buildenv, "PINS", ("hidemo-no-such-package-anywhere==0.0.1",))
    with pytest.raises(buildenv.ConvertEnvError) as failed:
        buildenv.ensure_convert_env(tmp_path)
    message = str(failed.value)
    assert "hidemo-no-such-package-anywhere" in message and "--convert-env" in message
    assert not buildenv._is_ready(buildenv.env_folder(tmp_path)), "never marked ready"


def test_a_corrupt_tflite_file_fails_the_conversion_loudly(
        tmp_path: Path, convert_env_root: Path) -> None:
    from export.mediapipe.buildenv import ConvertEnvError, ensure_convert_env

    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"TFL3 this is not a flatbuffer" * 10)
    target = tmp_path / "broken.onnx"
    with pytest.raises(ConvertEnvError, match=r"broken\.tflite"):
        ensure_convert_env(convert_env_root).convert(broken, target, 17)
    assert not target.exists()
