"""A Triton model repository written from an engine folder's verified engines.

``hidemo engines export-triton`` calls :func:`write_repository`. Per engine it writes::

    REPO/<prefix><engine>/config.pbtxt      platform onnxruntime_onnx (engines.serving.model_config)
    REPO/<prefix><engine>/1/model.onnx      a copy of the verified ONNX
    REPO/<prefix><engine>/hidemo-model.json what was exported, from where (Triton ignores it)

and, when the manifest lists TensorRT plans, a second model ``<prefix><engine>_trt``
(``tensorrt_plan``) with one ``1/model_sm<NN>.plan`` per compute capability and
``cc_model_filenames`` naming them. That TensorRT model is written from the plan records
alone: no GPU checks it here, so whether a given Triton release loads it is unverified (a
plan loads only under the TensorRT version it was built with).

Only engines that pass :func:`engines.manifest.verify` are exported, and all of them or none:
one stale or unverified engine refuses the whole export with its manifest's fix, before
anything is written. Each file placed in the repository is a copy (not a link: a later
change in the engine folder must not reach a served model), hashed again against its
manifest, so what Triton serves is exactly what was verified.

A half-written repository is never mistaken for a complete one: every model is assembled in
a staging folder beside the repository (``.REPO.tmp-*``) and renamed into it whole. The
repository itself carries ``hidemo-export.json``; a non-empty folder without it (or a model
folder without ``hidemo-model.json``) is someone else's and is written into only with
``force``. Models of the repository that this export does not write are left as they are,
so several engine sets (different prefixes) can share one repository.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import ValidationError

from engines.manifest import (
    MANIFEST_SUFFIX,
    EngineManifest,
    EngineMissing,
    EngineStale,
    build_command,
    manifest_path,
    read_manifest,
    sha256_file,
    verify,
)
from engines.plans import PlanRecord, tensorrt_build_command
from engines.provenance import utc_now
from engines.record import Record
from engines.serving.identity import batched, model_name
from engines.serving.model_config import (
    ONNX_PLATFORM,
    PLAN_PLATFORM,
    config_text,
    onnx_model_config,
    plan_model_config,
)
from engines.serving.settings import BatchingPolicy

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

REPOSITORY_MARKER = "hidemo-export.json"
MODEL_RECORD = "hidemo-model.json"
CONFIG_FILE = "config.pbtxt"
VERSION = "1"
ONNX_FILE = "model.onnx"
PLAN_SUFFIX = "_trt"
PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]*$")
"""The served-name prefix: the characters ``triton.model_prefix`` accepts."""


class RepositoryMarker(Record):
    """``hidemo-export.json`` at the repository's top: this folder is a hidemo export."""

    written_by: str = "hidemo engines export-triton"
    format: int = 1


class ExportedModel(Record):
    """``hidemo-model.json`` in a model folder: which engine it is and what was placed."""

    model: str
    """The served name (``<prefix><engine>``, plus ``_trt`` for the TensorRT model)."""
    engine: str
    profile: str
    platform: Literal["onnxruntime_onnx", "tensorrt_plan"]
    engine_dir: str
    onnx_sha256: str
    files: dict[str, str]
    """Path inside the model folder -> sha256 (the config, the ONNX or the plans)."""
    max_batch_size: int
    random_weights: bool
    created: str


@dataclass(frozen=True)
class WrittenModel:
    """One model this export placed in the repository, and what the user should know."""

    path: Path
    record: ExportedModel
    notes: tuple[str, ...] = ()

    def line(self) -> str:
        """One line for the terminal: name, platform, batch, and any note."""
        batch = (f"max_batch_size {self.record.max_batch_size}" if self.record.max_batch_size
                 else "unbatched")
        extras = [batch, *(["random weights"] if self.record.random_weights else []),
                  *self.notes]
        return f"wrote {self.path} ({self.record.platform}; {'; '.join(extras)})"


@dataclass
class _Staged:
    """A model assembled in the staging folder, waiting to be renamed into the repository."""

    name: str
    folder: Path
    record: ExportedModel
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Planned:
    """What will be written for one engine, decided (and checked) before any file is."""

    manifest: EngineManifest
    plans: dict[str, PlanRecord]
    """Compute capability -> the plan served for it."""
    notes: tuple[str, ...] = ()
    """For the ONNX model's line."""
    plan_policy: BatchingPolicy | None = None
    """The batching of the TensorRT model (when there are plans)."""
    plan_notes: tuple[str, ...] = ()
    """For the TensorRT model's line."""


def exportable_engines(engine_dir: Path) -> list[str]:
    """Engines with a manifest in the folder, in ``hidemo engines list`` order."""
    from engines.cli import engine_names  # rich and the adapters' names, only when exporting

    return [name for name in engine_names(engine_dir)
            if manifest_path(engine_dir, name).is_file()]


def write_repository(engine_dir: Path, repo: Path, *, names: Sequence[str] | None = None,
                     prefix: str = "", policy: BatchingPolicy | None = None,
                     force: bool = False, profile: str = "<profile>") -> list[WrittenModel]:
    """Export the verified engines of ``engine_dir`` (``names``, default all) into ``repo``.

    Raises :class:`~engines.manifest.EngineRefused` (with the fix) for a missing, stale or
    unverified engine or plan, ``ValueError`` for an engine Triton cannot describe or a bad
    prefix, and ``FileExistsError`` for a folder that is not a hidemo export (unless
    ``force``): all before anything is written. A failure while writing (a full disk)
    leaves each model of the repository as it was or whole, never half-written.
    """
    engine_dir, repo = Path(engine_dir), Path(repo)
    policy = policy or BatchingPolicy()
    if not PREFIX_PATTERN.match(prefix):
        raise ValueError(f"model prefix {prefix!r} may hold only letters, digits, '.', '_' "
                         "and '-' (it becomes part of a folder and a served model name)")
    chosen = list(dict.fromkeys(names)) if names else exportable_engines(engine_dir)
    if not chosen:
        raise EngineMissing(f"no engines in {engine_dir} (no *{MANIFEST_SUFFIX} there)",
                            build_command(profile, engine_dir))
    planned = [_plan(engine_dir, name, profile, policy) for name in chosen]
    served = [model_name(p.manifest.name, prefix) for p in planned]
    served += [model_name(p.manifest.name, prefix) + PLAN_SUFFIX for p in planned if p.plans]
    twice = sorted({name for name in served if served.count(name) > 1})
    if twice:
        raise ValueError(f"models {twice} would be written twice (an engine named like "
                         f"another's TensorRT model, '<engine>{PLAN_SUFFIX}'); export them "
                         "separately with --engines and different --model-prefix values")
    _claim(repo, served, force=force)
    beside = repo.resolve()  # the staging folder goes next to the repository, never in it
    beside.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{beside.name}.tmp-", dir=beside.parent))
    try:
        staged: list[_Staged] = []
        for item in planned:
            staged.append(_stage_onnx(staging / "new", engine_dir, item, prefix, policy))
            if item.plans:
                staged.append(_stage_plans(staging / "new", engine_dir, item, prefix))
        return _swap_in(repo, staging, staged)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _plan(engine_dir: Path, name: str, profile: str, policy: BatchingPolicy) -> _Planned:
    manifest = read_manifest(engine_dir, name, profile_hint=profile)
    verify(manifest, engine_dir)
    onnx_model_config(manifest, name, policy)  # refuses an unservable signature now
    plans, plan_notes = _plans_by_capability(manifest, engine_dir)
    if not plans:
        return _Planned(manifest, {})
    if policy.kind == "KIND_CPU":
        return _Planned(manifest, {}, notes=(
            "its TensorRT plans were not exported: TensorRT runs only on a GPU and the "
            f"policy asks for {policy.kind}",))
    plan_policy, limit_notes = _plan_policy(manifest, plans.values(), policy,
                                            tensorrt_build_command(manifest.profile, engine_dir))
    return _Planned(manifest, plans, plan_policy=plan_policy,
                    plan_notes=(*limit_notes, *plan_notes))


def _plans_by_capability(manifest: EngineManifest,
                         engine_dir: Path) -> tuple[dict[str, PlanRecord], tuple[str, ...]]:
    """The plan served per compute capability (the newest when several share one) and a
    note naming the plans left out."""
    fix = tensorrt_build_command(manifest.profile, engine_dir)
    chosen: dict[str, PlanRecord] = {}
    for plan in sorted(manifest.plans, key=lambda p: p.created):
        if plan.onnx_sha256 != manifest.onnx_sha256:
            raise EngineStale(f"engine {manifest.name!r}: TensorRT plan {plan.file} was built "
                              f"from another ONNX (sha256 {plan.onnx_sha256[:12]}, the "
                              f"engine's is {manifest.onnx_sha256[:12]})", fix)
        if not re.fullmatch(r"\d+\.\d+", plan.compute_capability):
            raise EngineStale(f"engine {manifest.name!r}: TensorRT plan {plan.file} records "
                              f"compute capability {plan.compute_capability!r}, not MAJOR.MINOR",
                              fix)
        chosen[plan.compute_capability] = plan
    served = {p.file for p in chosen.values()}
    left = [p.describe() for p in manifest.plans if p.file not in served]
    notes = (f"TensorRT plans left out (a newer one serves the same compute capability): "
             f"{', '.join(left)}",) if left else ()
    return chosen, notes


def plan_file_name(compute_capability: str) -> str:
    """``8.6`` -> ``model_sm86.plan``."""
    return f"model_sm{compute_capability.replace('.', '')}.plan"


def _claim(repo: Path, models: Iterable[str], *, force: bool) -> None:
    """Refuse to write into a folder (or over a model) that hidemo did not export."""
    if repo.exists() and not repo.is_dir():
        raise FileExistsError(f"{repo} exists and is not a folder; choose another --repo")
    if not repo.is_dir() or force or not any(repo.iterdir()):
        return
    if not _is_export(repo):
        raise FileExistsError(
            f"{repo} is not empty and is not a hidemo export (no {REPOSITORY_MARKER}); "
            "choose an empty or new folder for --repo, or pass --force to write into it "
            "(models of the same names are replaced, nothing else is touched)")
    foreign = [m for m in models if (repo / m).exists() and not (repo / m / MODEL_RECORD).is_file()]
    if foreign:
        raise FileExistsError(
            f"{repo} holds models {foreign} that hidemo did not write (no {MODEL_RECORD}); "
            "pass --force to replace them, or --model-prefix to export beside them")


def _is_export(repo: Path) -> bool:
    try:
        RepositoryMarker.model_validate_json((repo / REPOSITORY_MARKER).read_text())
    except (OSError, ValidationError, UnicodeDecodeError):
        return False
    return True


def _stage_onnx(root: Path, engine_dir: Path, item: _Planned, prefix: str,
                policy: BatchingPolicy) -> _Staged:
    manifest = item.manifest
    name = model_name(manifest.name, prefix)
    folder = root / name
    (folder / VERSION).mkdir(parents=True)
    onnx_path = folder / VERSION / ONNX_FILE
    _place(engine_dir / manifest.onnx_file, onnx_path, manifest.onnx_sha256, manifest,
           build_command(manifest.profile, engine_dir))
    config = onnx_model_config(manifest, name, policy)
    files = {f"{VERSION}/{ONNX_FILE}": manifest.onnx_sha256}
    record = _finish(folder, manifest, name, ONNX_PLATFORM, config, files, engine_dir)
    return _Staged(name, folder, record, list(item.notes))


def _stage_plans(root: Path, engine_dir: Path, item: _Planned, prefix: str) -> _Staged:
    manifest = item.manifest
    name = model_name(manifest.name, prefix) + PLAN_SUFFIX
    folder = root / name
    (folder / VERSION).mkdir(parents=True)
    fix = tensorrt_build_command(manifest.profile, engine_dir)
    files: dict[str, str] = {}
    plan_files: dict[str, str] = {}
    for capability, plan in item.plans.items():
        file_name = plan_file_name(capability)
        _place(engine_dir / plan.file, folder / VERSION / file_name, plan.sha256, manifest, fix)
        files[f"{VERSION}/{file_name}"] = plan.sha256
        plan_files[capability] = file_name
    assert item.plan_policy is not None  # set by _plan whenever there are plans
    config = plan_model_config(manifest, name, item.plan_policy, plan_files)
    record = _finish(folder, manifest, name, PLAN_PLATFORM, config, files, engine_dir)
    listed = ", ".join(f"{cc}: TensorRT {p.tensorrt_version} ({p.gpu_name})"
                       for cc, p in sorted(item.plans.items()))
    return _Staged(name, folder, record,
                   [f"plans for {listed}; unverified here", *item.plan_notes])


def _plan_policy(manifest: EngineManifest, plans: Iterable[PlanRecord], policy: BatchingPolicy,
                 fix: str) -> tuple[BatchingPolicy, list[str]]:
    """The policy for the TensorRT model: on the GPU, and no larger a batch than every
    plan's optimization profile accepts."""
    limit = policy.max_batch_size
    if batched(manifest.signature):
        for plan in plans:
            for spec in manifest.signature.inputs:
                shapes = plan.profile_shapes.get(spec.name)
                if shapes is None:
                    raise EngineStale(
                        f"engine {manifest.name!r}: TensorRT plan {plan.file} has no "
                        f"optimization profile for input {spec.name!r}, whose batch axis "
                        "Triton would vary", fix)
                limit = min(limit, shapes[2][0])
    if limit < 1:
        raise EngineStale(f"engine {manifest.name!r}: its TensorRT plans accept no batch of 1",
                          fix)
    notes = ([f"max_batch_size {limit}: the plans' optimization profiles stop there"]
             if limit < policy.max_batch_size else [])
    fitted = BatchingPolicy(
        max_batch_size=limit,
        preferred_batch_sizes=tuple(s for s in policy.preferred_batch_sizes if s <= limit),
        max_queue_delay_us=policy.max_queue_delay_us, instances=policy.instances,
        kind="KIND_GPU")
    return fitted, notes


def _place(source: Path, target: Path, sha256: str, manifest: EngineManifest, fix: str) -> None:
    """Copy ``source`` to ``target`` and check the copy's hash: the file could have changed
    since :func:`verify` read it."""
    shutil.copyfile(source, target)
    if sha256_file(target) != sha256:
        raise EngineStale(f"engine {manifest.name!r}: {source} changed while it was exported "
                          "(sha256 differs from its manifest)", fix)


def _finish(folder: Path, manifest: EngineManifest, name: str,
            platform: Literal["onnxruntime_onnx", "tensorrt_plan"],
            config: model_config_pb2.ModelConfig, files: dict[str, str],
            engine_dir: Path) -> ExportedModel:
    """Write ``config.pbtxt`` and the model's record (last: the folder is complete)."""
    source = str(manifest_path(engine_dir, manifest.name))
    (folder / CONFIG_FILE).write_text(config_text(config, source=source))
    record = ExportedModel(
        model=name, engine=manifest.name, profile=manifest.profile, platform=platform,
        engine_dir=str(engine_dir.resolve()), onnx_sha256=manifest.onnx_sha256,
        files={CONFIG_FILE: sha256_file(folder / CONFIG_FILE), **files},
        max_batch_size=config.max_batch_size, random_weights=manifest.random_weights,
        created=utc_now())
    (folder / MODEL_RECORD).write_text(record.model_dump_json(indent=2) + "\n")
    return record


def _swap_in(repo: Path, staging: Path, staged: list[_Staged]) -> list[WrittenModel]:
    """Mark the repository as an export, then rename each complete model folder into it
    (a replaced one moves to the staging folder first and is removed with it)."""
    repo.mkdir(exist_ok=True)
    marker = repo / REPOSITORY_MARKER
    if not _is_export(repo):
        tmp = staging / REPOSITORY_MARKER
        tmp.write_text(RepositoryMarker().model_dump_json(indent=2) + "\n")
        os.replace(tmp, marker)
    old = staging / "old"
    old.mkdir()
    written = []
    for item in staged:
        target = repo / item.name
        if target.exists() or target.is_symlink():
            os.rename(target, old / item.name)
        os.rename(item.folder, target)
        written.append(WrittenModel(target, item.record, tuple(item.notes)))
    with contextlib.suppress(OSError):
        shutil.rmtree(old)
    return written
