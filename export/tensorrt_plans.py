"""TensorRT plans for every engine of a folder, recorded in each engine's manifest.

``hidemo engines build --tensorrt`` runs this after the ONNX engines are built and verified.
For every manifest in the folder (whatever engines it holds: the profile's, ``classifier_int8``,
keypoint engines) it builds one plan for the TensorRT version and GPU of this machine, unless
the manifest already lists a current one: built from the same ONNX, at the same precision,
with the same optimization-profile shapes, and its file still hashing to its record.

The plan is written under a name that carries its ONNX (the content-addressed ONNX stem), the
TensorRT version, the GPU and the precision; then its :class:`~engines.plans.PlanRecord` goes
into the manifest, which is rewritten atomically (:meth:`EngineManifest.write`). A plan
rebuilt under the same name (new precision is a new name; new axis ranges or ``--force``
are not) is swapped in just before its manifest: a loader in between is refused (sha256
differs), never handed a plan its manifest does not describe. Plans for other machines
stay listed beside it. One timing cache per TensorRT version and GPU lives in
the engine folder and is reused by every build.

The builder is a strategy (:data:`PlanBuilder`, default :func:`export.tensorrt_build.build_plan`)
so the wiring can be exercised without TensorRT; the machine is a :class:`PlanTarget`
(:func:`detect_target` reads it from TensorRT and torch).

Example:
    >>> target = detect_target()  # doctest: +SKIP
    >>> build_plans(Path("artifacts/engines/edge"), target)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from engines.backends.tensorrt import CudaDevice, cuda_device, import_tensorrt, plan_file_name
from engines.manifest import (
    MANIFEST_SUFFIX,
    EngineManifest,
    EngineRefused,
    read_manifest,
    sha256_file,
    verify,
)
from engines.plans import PlanRecord, select_plan
from engines.provenance import utc_now
from engines.spec import Signature
from export.tensorrt_build import (
    DEFAULT_WORKSPACE_BYTES,
    AxisRange,
    ShapeProfile,
    build_plan,
    profile_shapes,
)

DEFAULT_AXIS_RANGES: dict[str, AxisRange] = {
    "batch": (1, 4, 16),
    "sequence": (1, 64, 512),
    "image_seq": (1, 16, 128),
    "keypoint_seq": (1, 80, 512),
}
"""(min, opt, max) per named dynamic axis of our signatures: batch of frames, crops or
windows; text tokens (BERT's 512 at most); the window classifier's image and keypoint slots
(8 s at 2 and 10 fps for ``opt``, the ``paper`` profile's 16 s at 5 and 25 fps fit ``max``).
Override with ``--trt-axis NAME=MIN,OPT,MAX``; an engine with an axis not listed here fails
with a message naming it."""


class PlanBuilder(Protocol):
    """Builds one plan from an ONNX file and writes it to ``plan_path`` (see ``build_plan``)."""

    def __call__(self, onnx_path: Path, plan_path: Path, signature: Signature,
                 shape_profiles: Mapping[str, ShapeProfile], *, fp16: bool,
                 workspace_bytes: int, timing_cache: Path | None) -> object: ...


Progress = Callable[[str, str], None]
"""Called with (engine name, what is happening now)."""


@dataclass(frozen=True)
class PlanTarget:
    """The machine a plan is for: what makes a plan valid besides its ONNX."""

    tensorrt_version: str
    device: CudaDevice


@dataclass(frozen=True)
class PlanSettings:
    """How plans are built: precision, the axis-range table, workspace, and ``force``."""

    fp16: bool = True
    axis_ranges: Mapping[str, AxisRange] = field(
        default_factory=lambda: dict(DEFAULT_AXIS_RANGES))
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES
    force: bool = False

    @property
    def precision(self) -> str:
        return "fp16" if self.fp16 else "fp32"


@dataclass(frozen=True)
class PlanOutcome:
    """What happened to one engine's plan: ``built``, ``up-to-date``, ``skipped`` (the engine
    itself does not verify) or ``failed`` (``detail`` says why)."""

    name: str
    action: str
    detail: str
    plan: PlanRecord | None = None

    @property
    def failed(self) -> bool:
        return self.action == "failed"


def detect_target(device_id: int = 0) -> PlanTarget:
    """TensorRT version and GPU of this machine; ``BackendUnavailable`` when either is missing."""
    trt = import_tensorrt()
    return PlanTarget(str(trt.__version__), cuda_device(device_id))


def parse_axis_ranges(items: Iterable[str]) -> dict[str, AxisRange]:
    """``["batch=1,8,32"]`` -> ``{"batch": (1, 8, 32)}`` over :data:`DEFAULT_AXIS_RANGES`."""
    ranges = dict(DEFAULT_AXIS_RANGES)
    for item in items:
        name, sep, values = item.partition("=")
        try:
            low, opt, high = (int(v) for v in values.split(","))
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ValueError(f"--trt-axis {item!r}: expected NAME=MIN,OPT,MAX, e.g. batch=1,4,16")
        if not 1 <= low <= opt <= high:
            raise ValueError(f"--trt-axis {item!r}: needs 1 <= MIN <= OPT <= MAX")
        ranges[name.strip()] = (low, opt, high)
    return ranges


def timing_cache_name(target: PlanTarget) -> str:
    """``timing.trt<version>.<GPU>.cache``: a timing cache is valid for one TensorRT and GPU."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "_", target.device.name).strip("_") or "gpu"
    return f"timing.trt{target.tensorrt_version}.{gpu}.cache"


def manifest_names(engine_dir: Path) -> list[str]:
    """Every engine with a manifest in ``engine_dir``, sorted."""
    return sorted(p.name.removesuffix(MANIFEST_SUFFIX)
                  for p in Path(engine_dir).glob(f"*{MANIFEST_SUFFIX}"))


def _is_current(plan: PlanRecord | None, manifest: EngineManifest, engine_dir: Path,
                precision: str, shapes: Mapping[str, ShapeProfile]) -> bool:
    if plan is None or plan.onnx_sha256 != manifest.onnx_sha256:
        return False
    if plan.precision != precision or plan.profile_shapes != _as_tuples(shapes):
        return False
    path = engine_dir / plan.file
    return path.is_file() and sha256_file(path) == plan.sha256


def _as_tuples(shapes: Mapping[str, ShapeProfile]) -> dict[str, ShapeProfile]:
    return {name: tuple(tuple(int(d) for d in shape) for shape in triple)  # type: ignore[misc]
            for name, triple in shapes.items()}


def build_engine_plan(manifest: EngineManifest, engine_dir: Path, target: PlanTarget,
                      settings: PlanSettings, builder: PlanBuilder) -> PlanOutcome:
    """One engine: build its plan for ``target`` unless current, then record it atomically."""
    name = manifest.name
    try:
        shapes = _as_tuples(profile_shapes(manifest.signature, settings.axis_ranges))
    except ValueError as exc:
        return PlanOutcome(name, "failed", f"{exc} (pass --trt-axis NAME=MIN,OPT,MAX)")
    current = select_plan(manifest.plans, target.tensorrt_version, target.device.name)
    if not settings.force and _is_current(current, manifest, engine_dir, settings.precision,
                                          shapes):
        return PlanOutcome(name, "up-to-date", "plan current for this TensorRT and GPU", current)

    file = plan_file_name(Path(manifest.onnx_file).stem, target.tensorrt_version,
                          target.device.name, precision=settings.precision)
    scratch = engine_dir / f".{file}.building"
    try:
        builder(engine_dir / manifest.onnx_file, scratch, manifest.signature, shapes,
                fp16=settings.fp16, workspace_bytes=settings.workspace_bytes,
                timing_cache=engine_dir / timing_cache_name(target))
        if not scratch.is_file():
            raise RuntimeError(f"the plan builder wrote nothing to {scratch}")
        os.replace(scratch, engine_dir / file)
    except (RuntimeError, ValueError, OSError) as exc:  # one engine's failure is reported,
        scratch.unlink(missing_ok=True)                  # the others still get their plans
        return PlanOutcome(name, "failed", f"{type(exc).__name__}: {exc}")

    record = PlanRecord(
        file=file, sha256=sha256_file(engine_dir / file),
        tensorrt_version=target.tensorrt_version, gpu_name=target.device.name,
        compute_capability=target.device.compute_capability, precision=settings.precision,
        profile_shapes=shapes, onnx_sha256=manifest.onnx_sha256, created=utc_now())
    # Plans of other machines built from this ONNX stay; the one for this machine is replaced.
    kept = [p for p in manifest.plans if p.onnx_sha256 == manifest.onnx_sha256
            and not p.matches(target.tensorrt_version, target.device.name)]
    manifest.model_copy(update={"plans": [*kept, record]}).write(engine_dir)
    listed = {p.file for p in (*kept, record)}
    for old in manifest.plans:
        if old.file not in listed:
            (engine_dir / old.file).unlink(missing_ok=True)
    return PlanOutcome(name, "built", f"{record.precision}, TensorRT {record.tensorrt_version} "
                                      f"on {record.gpu_name}", record)


def build_plans(engine_dir: Path, target: PlanTarget, settings: PlanSettings | None = None, *,
                builder: PlanBuilder = build_plan,
                progress: Progress | None = None) -> list[PlanOutcome]:
    """A plan for ``target`` for every engine with a manifest in ``engine_dir``.

    An engine that does not verify (stale ONNX, failed parity) is skipped with the reason;
    it needs ``hidemo engines build`` first. Plan files are not checked here (a bad plan is
    rebuilt, not refused).
    """
    engine_dir = Path(engine_dir)
    settings = settings or PlanSettings()
    outcomes = []
    for name in manifest_names(engine_dir):
        try:
            manifest = read_manifest(engine_dir, name)
            verify(manifest, engine_dir, check_plans=False)
        except EngineRefused as exc:
            outcomes.append(PlanOutcome(name, "skipped", str(exc).replace("\n", " ")))
            continue
        if progress is not None:
            progress(name, f"TensorRT plan ({settings.precision}) on {target.device.name}")
        outcomes.append(build_engine_plan(manifest, engine_dir, target, settings, builder))
    return outcomes
