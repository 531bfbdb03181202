"""DENSIFY folding: BlazePose's person detector on XNNPACK gives the builtin kernels' outputs,
a folded model that does not is never trusted, and bytes that are no model are refused."""

from __future__ import annotations

import logging

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert import interpreter as litert
from ai_edge_litert import schema_py_generated as schema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engines.backends import tflite as tflite_backend
from engines.backends.tflite import TfliteEngine
from engines.backends.tflite_densify import FILE_IDENTIFIER, DensifyError, densify
from engines.sources.mediapipe import MODELS, tflite_path
from engines.spec import Signature, TensorSpec
from export.mediapipe.parity import model_inputs, parity_photos

POSE_DETECTION = next(s for s in MODELS if s.engine == "kp_pose_detection")
HAND_RECROP = next(s for s in MODELS if s.engine == "kp_hand_recrop")


@pytest.fixture(scope="module")
def source() -> bytes:
    return tflite_path(POSE_DETECTION).read_bytes()


def _op_names(model: bytes) -> list[str]:
    interpreter = litert.Interpreter(
        model_content=model,
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    return [op["op_name"] for op in interpreter._get_ops_details()]


def _outputs(model: bytes, images: np.ndarray, *, builtin: bool) -> dict[str, np.ndarray]:
    options = ({"experimental_op_resolver_type":
                litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES} if builtin else {})
    interpreter = litert.Interpreter(model_content=model, num_threads=1, **options)
    interpreter.allocate_tensors()
    index = interpreter.get_input_details()[0]["index"]
    out: dict[str, list[np.ndarray]] = {}
    for image in images:
        interpreter.set_tensor(index, image[None])
        interpreter.invoke()
        for detail in interpreter.get_output_details():
            out.setdefault(detail["name"], []).append(interpreter.get_tensor(detail["index"]))
    return {name: np.concatenate(parts) for name, parts in out.items()}


SIGNATURE = Signature(
    inputs=(TensorSpec(name="image", dtype="float32", shape=("batch", 224, 224, 3)),),
    outputs=(TensorSpec(name="boxes", dtype="float32", shape=("batch", 2254, 12)),
             TensorSpec(name="scores", dtype="float32", shape=("batch", 2254, 1))))
"""BlazePose detector's engine signature (as its converted ONNX graph declares it)."""


def _engine(**options: bool) -> TfliteEngine:
    return TfliteEngine(POSE_DETECTION.engine, tflite_path(POSE_DETECTION), SIGNATURE,
                        dict(POSE_DETECTION.outputs), threads=1, **options)


def test_folding_removes_every_densify_and_keeps_the_builtin_outputs_exactly(
        source: bytes) -> None:
    dense, folded = densify(source)
    assert folded == _op_names(source).count("DENSIFY") > 0
    assert "DENSIFY" not in _op_names(dense)
    images = np.concatenate([model_inputs(POSE_DETECTION, parity_photos(3)),
                             np.random.default_rng(7).uniform(-1, 1, (2, 224, 224, 3))
                             .astype(np.float32)])
    want = _outputs(source, images, builtin=True)
    same_kernels = _outputs(dense, images, builtin=True)
    on_xnnpack = _outputs(dense, images, builtin=False)
    for name, value in want.items():
        np.testing.assert_array_equal(same_kernels[name], value)
        scale = max(1.0, float(np.abs(value).max()))
        np.testing.assert_allclose(on_xnnpack[name], value, rtol=0, atol=1e-4 * scale)


def test_a_model_without_densify_is_returned_as_it_is() -> None:
    model = tflite_path(HAND_RECROP).read_bytes()
    assert densify(model) == (model, 0)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_bytes_that_are_no_model_are_refused_with_densify_error(
        source: bytes, data: st.DataObject) -> None:
    """Random bytes, and the real model cut short anywhere: a :class:`DensifyError` (the
    build and the backend turn it into their own message), never another exception. The
    real file ends with its metadata (an appended zip of associated files): a cut there
    leaves the flatbuffer whole, and then it must fold exactly as the whole file does."""
    random_bytes = st.one_of(
        st.binary(max_size=2048),
        st.binary(min_size=4, max_size=512).map(lambda b: b[:4] + FILE_IDENTIFIER + b[4:]))
    cut = data.draw(st.one_of(st.none(), st.integers(0, len(source) - 1)))
    if cut is None:
        with pytest.raises(DensifyError, match="not a TFLite flatbuffer"):
            densify(data.draw(random_bytes))
        return
    try:
        folded = densify(source[:cut])
    except DensifyError as error:
        assert "not a TFLite flatbuffer" in str(error)
    else:
        assert folded == densify(source), cut


def test_the_pose_detector_runs_folded_on_xnnpack_with_the_reference_outputs() -> None:
    engine = _engine()
    reference = _engine(reference=True)
    assert engine.backend == "tflite:xnnpack" and engine.densified > 0
    assert reference.backend == "tflite:builtin" and reference.densified == 0
    images = model_inputs(POSE_DETECTION, parity_photos(4))
    got, want = engine.run({"image": images}), reference.run({"image": images})
    for name, value in want.items():
        scale = max(1.0, float(np.abs(value).max()))
        np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-4 * scale)


def _zeroed_fold(model: bytes) -> tuple[bytes, int]:
    """A fold gone wrong as XNNPACK would have it: the last folded weights all zeros."""
    dense, folded = densify(model)
    tree = schema.ModelT.InitFromPackedBuf(dense, 0)
    tree.buffers[-1].data = np.zeros_like(tree.buffers[-1].data)
    builder = flatbuffers.Builder(1024)
    builder.Finish(tree.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output()), folded


def test_a_fold_that_changes_the_outputs_is_not_trusted(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(tflite_backend, "densify", _zeroed_fold)
    with caplog.at_level(logging.WARNING, logger="engines.backends.tflite"):
        engine = _engine()
    assert engine.backend == "tflite:builtin" and engine.densified == 0
    assert "differs from the builtin kernels" in caplog.text
    images = model_inputs(POSE_DETECTION, parity_photos(2))
    got, want = engine.run({"image": images}), _engine(reference=True).run({"image": images})
    for name, value in want.items():
        np.testing.assert_array_equal(got[name], value)


def test_a_fold_that_fails_leaves_the_builtin_kernels(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    def refuse(model: bytes) -> tuple[bytes, int]:
        raise DensifyError("DENSIFY outside the main subgraph is not supported")

    monkeypatch.setattr(tflite_backend, "densify", refuse)
    with caplog.at_level(logging.WARNING, logger="engines.backends.tflite"):
        engine = _engine()
    assert engine.backend == "tflite:builtin"
    assert "could not be folded" in caplog.text and "main subgraph" in caplog.text
