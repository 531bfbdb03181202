"""Install one engine: export (or produce) its ONNX, check parity, write its manifest last.

The steps every engine shares, whatever makes its ONNX file: the profile build
(:mod:`export.build`), the int8 classifier (:mod:`export.classifier`) and the keypoint
engines converted from MediaPipe (:mod:`export.mediapipe.build`) all call
:func:`build_engine`, and this module imports none of them.

A new engine is written under a content-addressed file name
(``image_embedder-1a2b3c4d5e6f.onnx``) and becomes current only when its manifest is
renamed into place, so a pipeline that loads an engine at any moment gets the old verified
one or the new verified one, never half of either. An engine whose manifest still verifies
and whose source hash, config and opset are unchanged is left alone.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from engines.manifest import (
    EngineManifest,
    EngineRefused,
    ParityResult,
    SourceInfo,
    manifest_path,
    read_manifest,
    sha256_file,
    sha256_json,
    verify,
)
from engines.provenance import git_commit, library_versions, utc_now
from engines.sources import SourceModel
from engines.spec import Signature
from export.onnx_export import DEFAULT_OPSET, export_onnx
from export.parity import FP32_TOLERANCE, check_onnx_parity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildOutcome:
    name: str
    action: str
    """``built``, ``up-to-date`` or ``failed-parity``."""
    manifest: EngineManifest
    seconds: float


Progress = Callable[[str, str], None]
"""Called with (engine name, what is happening now)."""


def log_progress(name: str, what: str) -> None:
    """The default :data:`Progress`: one log line per step."""
    log.info("%s: %s", name, what)


class EngineSource(Protocol):
    """What the install steps read of a source: a torch :class:`SourceModel`, or a model
    converted from elsewhere (:class:`export.mediapipe.build.TfliteSource`)."""

    name: str
    model: str
    signature: Signature
    source: SourceInfo
    config: dict[str, Any]
    preprocess: dict[str, Any]
    extra_files: dict[str, Path]

    @property
    def random_weights(self) -> bool: ...


def _identity(source: EngineSource, opset: int) -> str:
    """What makes two builds the same engine: weights, config, opset, signature and the
    preprocessing contract the adapters rely on."""
    return sha256_json({"source": source.source.sha256, "config": source.config,
                        "opset": opset, "signature": source.signature.model_dump(mode="json"),
                        "preprocess": source.preprocess,
                        "extra_files": sorted(source.extra_files)})


def _recorded_identity(manifest: EngineManifest) -> str:
    copied = {key for key, value in manifest.preprocess.items()
              if isinstance(value, str) and value in manifest.files}
    return sha256_json({"source": manifest.source.sha256, "config": manifest.config,
                        "opset": manifest.opset,
                        "signature": manifest.signature.model_dump(mode="json"),
                        "preprocess": {k: v for k, v in manifest.preprocess.items()
                                       if k not in copied},
                        "extra_files": sorted(copied)})


def _is_current(engine_dir: Path, source: EngineSource, opset: int) -> EngineManifest | None:
    try:
        manifest = read_manifest(engine_dir, source.name)
        verify(manifest, engine_dir, check_plans=False)  # a bad plan: rebuild the plan only
    except EngineRefused:
        return None
    return manifest if _recorded_identity(manifest) == _identity(source, opset) else None


Produce = Callable[[Path], object]
"""Writes the engine's ONNX file to the path it is given (default: export ``source``);
may return the versions of the tools it used, recorded in the manifest."""

ParityCheck = Callable[[Any, Path], ParityResult]
"""Checks a written ONNX file against its torch source (default: fp32 ``check_onnx_parity``)."""


def build_engine(source: EngineSource, profile: str, engine_dir: Path, *, force: bool = False,
                 opset: int = DEFAULT_OPSET, tolerance: float = FP32_TOLERANCE,
                 progress: Progress | None = None, produce: Produce | None = None,
                 parity_check: ParityCheck | None = None,
                 precision: str = "fp32", parity_reference: str = "torch",
                 role: str | None = None) -> BuildOutcome:
    """Export ``source`` into ``engine_dir`` unless an identical verified engine is there.

    ``produce``, ``parity_check`` and ``precision`` let a derived engine (the int8 classifier,
    quantized from the fp32 ONNX; the keypoint engines, converted from TFLite) reuse the
    same install steps: content-addressed file, parity, manifest renamed into place last.
    """
    say = progress or log_progress
    engine_dir = Path(engine_dir)
    engine_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    current = None if force else _is_current(engine_dir, source, opset)
    if current is not None:
        say(source.name, "up to date")
        return BuildOutcome(source.name, "up-to-date", current, time.perf_counter() - started)

    scratch = engine_dir / f".{source.name}.exporting.onnx"
    tool_versions: Mapping[str, str] = {}
    if produce is None:
        if not isinstance(source, SourceModel):
            raise TypeError(f"{source.name}: only a torch SourceModel exports by default; "
                            "pass produce= to make its ONNX file")
        say(source.name, f"exporting {source.model} to ONNX (opset {opset})")
        export_onnx(source, scratch, opset)
    else:
        say(source.name, f"making the {precision} ONNX of {source.model}")
        produced = produce(scratch)
        tool_versions = produced if isinstance(produced, Mapping) else {}
    digest = sha256_file(scratch)
    onnx_name = f"{source.name}-{digest[:12]}.onnx"
    os.replace(scratch, engine_dir / onnx_name)

    say(source.name, f"checking parity against {parity_reference}")
    if parity_check is not None:
        parity = parity_check(source, engine_dir / onnx_name)
    elif isinstance(source, SourceModel):
        parity = check_onnx_parity(source, engine_dir / onnx_name, tolerance)
    else:
        raise TypeError(f"{source.name}: pass parity_check= for a non-torch source")

    files: dict[str, str] = {}
    preprocess = dict(source.preprocess)
    for purpose, src_path in source.extra_files.items():
        file_name = f"{source.name}-{digest[:12]}.{Path(src_path).name}"
        shutil.copyfile(src_path, engine_dir / file_name)
        files[file_name] = sha256_file(engine_dir / file_name)
        preprocess[purpose] = file_name

    manifest = EngineManifest(
        name=source.name,
        role=role or source.name,
        profile=profile,
        model=source.model,
        signature=source.signature,
        onnx_file=onnx_name,
        onnx_sha256=digest,
        source=source.source,
        opset=opset,
        precision=precision,
        backend="onnxruntime",
        device="cpu",
        parity=parity,
        versions={**library_versions(), **tool_versions},
        config=source.config,
        git_commit=git_commit(),
        created=utc_now(),
        files=files,
        preprocess=preprocess,
    )
    manifest.write(engine_dir)
    _remove_unreferenced(engine_dir, manifest)
    action = "built" if parity.passed else "failed-parity"
    say(source.name, f"{action}: parity {parity.measure} {parity.worst:.2e} (tolerance "
                     f"{parity.tolerance:g}){'  RANDOM WEIGHTS' if source.random_weights else ''}")
    return BuildOutcome(source.name, action, manifest, time.perf_counter() - started)


def _remove_unreferenced(engine_dir: Path, manifest: EngineManifest) -> None:
    """Delete older versions of this engine's files once the new manifest is in place."""
    keep = {manifest.onnx_file, *manifest.files, manifest_path(engine_dir, manifest.name).name}
    for path in engine_dir.glob(f"{manifest.name}-*"):
        if path.name not in keep and path.is_file():
            path.unlink()
