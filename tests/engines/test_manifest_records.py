"""The manifest as typed records: old manifests still load, anything else is refused by name.

``manifests_v1/`` holds three manifests written by the code before the records were pydantic
models (a tiny ``hidemo engines build`` of the text embedder and the classifier, with
``--int8``, then two TensorRT plan records added the way the plan builder adds them). They
must load, and write back byte for byte the same JSON: an engine built before the change is
neither refused nor rebuilt (the rebuild check hashes the signature as written).

Every other manifest is attacked field by field: a value of the wrong type, a missing field,
an unknown one, at any depth, is refused with the file, the field and the rebuild command.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tensorrt_fixtures import install_relu

from engines.engine import Backend
from engines.manifest import (
    EngineManifest,
    EngineRefused,
    EngineStale,
    ParityResult,
    manifest_path,
    read_manifest,
)
from engines.runtime import load_engine, open_engine
from engines.spec import Signature, TensorSpec

V1 = Path(__file__).parent / "manifests_v1"
V1_NAMES = ("text_embedder", "classifier", "classifier_int8")
REBUILD = "hidemo engines build --profile {profile} --engine-dir {engine_dir}"


def _raw(name: str) -> dict[str, Any]:
    return json.loads(manifest_path(V1, name).read_text())


@pytest.mark.parametrize("name", V1_NAMES)
def test_a_manifest_written_before_the_records_loads_and_writes_back_the_same(
        name: str, tmp_path: Path) -> None:
    manifest = read_manifest(V1, name)
    assert isinstance(manifest, EngineManifest)
    assert manifest.model_dump(mode="json") == _raw(name)
    manifest.write(tmp_path)
    assert manifest_path(tmp_path, name).read_text() == manifest_path(V1, name).read_text()
    assert read_manifest(tmp_path, name) == manifest


def test_the_old_plan_records_keep_their_types() -> None:
    manifest = read_manifest(V1, "classifier")
    assert [plan.gpu_name for plan in manifest.plans] == ["NVIDIA H100", "Orin"]
    shapes = manifest.plans[0].profile_shapes["x"]
    assert shapes == ((1, 4), (4, 4), (16, 4)) and isinstance(shapes[0], tuple)
    text = read_manifest(V1, "text_embedder")
    assert text.signature.inputs[0].shape == ("batch", "sequence")
    assert text.signature.outputs[0].dynamic_axes == {0: "batch"}
    assert text.random_weights and text.source.path is None


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a manifest's JSON, as a path of keys and indexes (leaves included)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


FREE_FORM = {"config", "preprocess", "versions", "files", "max_abs_diff", "profile_shapes",
             "shapes_checked"}
"""Keys whose contents are maps of names the manifest does not fix (any key is allowed)."""

OPTIONAL = {"files": {}, "preprocess": {}, "plans": [], "schema_version": 1,
            "reference": "torch", "measure": "max abs diff", "path": None}
"""Fields with a default, and the default: a manifest without them still reads."""


def _typed_places(name: str) -> list[tuple[Any, ...]]:
    """Places whose value has a declared type: not inside a free-form map's contents."""
    return [path for path in _paths(_raw(name))
            if not any(key in FREE_FORM for key in path[:-1])]


def _at(data: Any, path: tuple[Any, ...]) -> tuple[Any, Any]:
    for key in path[:-1]:
        data = data[key]
    return data, path[-1]


def _wrong(value: Any) -> Any:
    """A JSON value of another type than ``value`` (and never one a lax reader coerces)."""
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, int | float):
        return [value]
    if isinstance(value, str):
        return {"value": value}
    if value is None:
        return 3.5
    return "not a " + type(value).__name__


def _write(tmp_path: Path, name: str, data: Any) -> Path:
    engine_dir = tmp_path / "engines"
    engine_dir.mkdir(exist_ok=True)
    manifest_path(engine_dir, name).write_text(json.dumps(data))
    return engine_dir


def _assert_refused(engine_dir: Path, name: str, where: str, profile: str = "tiny") -> None:
    """Refused, naming the file, the field and the rebuild command (with the profile the
    file claims; a placeholder when that claim is itself what is wrong)."""
    with pytest.raises(EngineStale) as caught:
        read_manifest(engine_dir, name)
    message = str(caught.value)
    assert str(manifest_path(engine_dir, name)) in message, message
    assert where in message, message
    assert caught.value.fix == REBUILD.format(profile=profile, engine_dir=engine_dir)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_field_of_the_wrong_type_is_refused_naming_file_field_and_fix(
        tmp_path: Path, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(V1_NAMES))
    path = data.draw(st.sampled_from([p for p in _typed_places(name)
                                      if p != ("schema_version",)]))
    manifest = _raw(name)
    parent, key = _at(manifest, path)
    parent[key] = _wrong(parent[key])
    _assert_refused(_write(tmp_path, name, manifest), name, ".".join(map(str, path)),
                    profile="<profile>" if path == ("profile",) else "tiny")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_missing_or_unknown_field_is_refused(tmp_path: Path, data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(V1_NAMES))
    fields = [p for p in _typed_places(name) if isinstance(_at(_raw(name), p)[0], dict)]
    path = data.draw(st.sampled_from(fields))
    manifest = _raw(name)
    parent, key = _at(manifest, path)
    if data.draw(st.booleans(), label="remove"):
        del parent[key]
        engine_dir = _write(tmp_path, name, manifest)
        if key in OPTIONAL:  # older manifests lack them: they read, with the default
            holder, _ = _at(read_manifest(engine_dir, name).model_dump(mode="json"), path)
            assert holder[key] == OPTIONAL[key]
            return
        _assert_refused(engine_dir, name, f"{'.'.join(map(str, path))}: Field required",
                        profile="<profile>" if path == ("profile",) else "tiny")
    else:
        parent["surplus"] = 1
        where = ".".join(map(str, (*path[:-1], "surplus")))
        _assert_refused(_write(tmp_path, name, manifest), name,
                        f"{where}: Extra inputs are not permitted")


@pytest.mark.parametrize(("edit", "where"), [
    (lambda m: m["signature"]["inputs"][0].update(dtype="float33"), "not a numpy dtype"),
    (lambda m: m["signature"]["outputs"][0].update(shape=["batch", -1]), "shape.1"),
    (lambda m: m["signature"]["outputs"][0].update(shape=["batch", 64.5]), "shape.1"),
    (lambda m: m["source"].update(kind="downloaded"), "source.kind"),
    (lambda m: m["plans"][0]["profile_shapes"].update(x=[[1, 4], [4, 4]]), "profile_shapes"),
    (lambda m: m.update(opset="17"), "opset: Input should be a valid integer"),
])
def test_values_the_records_rule_out_are_refused(tmp_path: Path, edit: Any,
                                                 where: str) -> None:
    manifest = _raw("classifier")
    edit(manifest)
    _assert_refused(_write(tmp_path, "classifier", manifest), "classifier", where)


def test_not_an_object_and_another_schema_are_refused(tmp_path: Path) -> None:
    engine_dir = _write(tmp_path, "classifier", [1, 2])
    with pytest.raises(EngineStale, match="not a valid engine manifest") as caught:
        read_manifest(engine_dir, "classifier")
    assert "hidemo engines build --profile <profile>" in caught.value.fix
    manifest = _raw("classifier")
    manifest["schema_version"] = 2
    manifest["signature"] = "a future layout"
    with pytest.raises(EngineStale, match="manifest schema 2, this hidemo reads 1"):
        read_manifest(_write(tmp_path, "classifier", manifest), "classifier")


def test_nan_and_infinity_survive_the_round_trip(tmp_path: Path) -> None:
    """A failed parity's NaN, an infinite setting in the free-form config: written as
    ``NaN``/``Infinity`` as before, read back as the same floats."""
    manifest = read_manifest(V1, "classifier").model_copy(update={
        "parity": ParityResult(passed=False, tolerance=1e-4,
                               max_abs_diff={"logits": math.nan, "probs": math.inf},
                               shapes_checked=[{"image": [1, 16, 96]}]),
        "config": {"clip": {"high": math.inf, "low": -math.inf}}})
    manifest.write(tmp_path)
    text = manifest_path(tmp_path, "classifier").read_text()
    assert '"logits": NaN' in text and '"high": Infinity' in text
    read = read_manifest(tmp_path, "classifier")
    assert math.isnan(read.parity.max_abs_diff["logits"])
    assert read.parity.max_abs_diff["probs"] == math.inf and not read.parity.passed
    assert read.config == {"clip": {"high": math.inf, "low": -math.inf}}


dims = st.one_of(st.integers(0, 4096), st.sampled_from(["batch", "sequence", "image_seq"]))
specs = st.builds(TensorSpec, name=st.text(min_size=1, max_size=12),
                  dtype=st.sampled_from(["float32", "float16", "int64", "uint8", "bool"]),
                  shape=st.lists(dims, max_size=5).map(tuple))


@given(inputs=st.lists(specs, max_size=4), outputs=st.lists(specs, max_size=4))
def test_any_signature_round_trips_through_json(inputs: list[TensorSpec],
                                                outputs: list[TensorSpec]) -> None:
    signature = Signature(inputs=tuple(inputs), outputs=tuple(outputs))
    text = json.dumps(signature.model_dump(mode="json"))
    assert Signature.model_validate_json(text, strict=True) == signature
    assert json.loads(text)["inputs"] == [
        {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)} for t in inputs]


def test_records_are_frozen_and_closed() -> None:
    spec = TensorSpec(name="x", dtype="float32", shape=("batch", 4))
    with pytest.raises(ValueError, match="frozen"):
        spec.name = "y"  # type: ignore[misc]
    with pytest.raises(ValueError, match="Extra inputs"):
        TensorSpec(name="x", dtype="float32", shape=(4,), layout="nchw")  # type: ignore[call-arg]


def test_open_engine_puts_a_non_perception_engine_on_onnxruntime_under_torch(
        tmp_path: Path) -> None:
    """The one ``open_engine``: backend torch covers the perception engines; an engine the
    torch backend cannot rebuild runs on onnxruntime, where ``load_engine`` refuses it."""
    install_relu(tmp_path)
    engine, manifest = open_engine(tmp_path, "relu", Backend.TORCH, threads=1)
    with engine:
        assert engine.backend.startswith("onnxruntime")
    assert manifest == read_manifest(tmp_path, "relu")
    with pytest.raises(EngineRefused, match="torch backend rebuilds only"):
        load_engine(tmp_path, "relu", Backend.TORCH)


def test_open_engine_refuses_an_invalid_manifest_before_loading(tmp_path: Path) -> None:
    install_relu(tmp_path)
    path = manifest_path(tmp_path, "relu")
    data = json.loads(path.read_text())
    data["parity"]["passed"] = "true"
    path.write_text(json.dumps(data))
    with pytest.raises(EngineStale, match=r"parity\.passed") as caught:
        open_engine(tmp_path, "relu")
    assert caught.value.fix == REBUILD.format(profile="tiny", engine_dir=tmp_path)
