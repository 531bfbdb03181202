"""The engine manifest: a JSON sidecar that is an engine's identity, and the gate that checks it.

Every engine file ``<name>.onnx`` has a ``<name>.json`` beside it, written by ``export/``
after the parity check. The runtime loads nothing without it, and refuses an engine whose
files no longer hash to what the manifest says, whose source checkpoint changed since the
build, or whose parity check failed. Each refusal names the command that fixes it.

Metadata never goes inside the binary engine file (TensorRT plans especially): a plan is
per device and per TensorRT version, while the manifest describes the model.

The manifest and every record in it are pydantic models, validated when read: a manifest
with a missing field, an unknown one or a value of the wrong type is refused (naming the
file and the field) like a stale engine, with the command that rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from engines.plans import PlanRecord, tensorrt_build_command
from engines.record import Record
from engines.spec import Signature

SCHEMA_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"


class EngineRefused(RuntimeError):
    """The runtime will not load this engine; ``fix`` is the command that repairs it."""

    def __init__(self, message: str, fix: str) -> None:
        super().__init__(f"{message}\n  fix: {fix}")
        self.fix = fix


class EngineMissing(EngineRefused):
    """No engine (or no manifest) where one was expected."""


class EngineStale(EngineRefused):
    """The engine's files or its source checkpoint no longer match its manifest."""


class ParityFailed(EngineRefused):
    """The engine disagreed with its torch reference when it was built."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(data: Any) -> str:
    """Hash of a JSON-able value in canonical form (sorted keys, no spaces)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class SourceInfo(Record):
    """Where an engine's weights came from.

    ``kind`` is ``checkpoint`` (a file or folder of weights, hashed) or ``random-init``
    (built from a config with a fixed seed; ``sha256`` hashes that config). A checkpoint
    goes stale when its files change; a random-init source with a ``path`` (where trained
    weights would be installed) goes stale when something appears there.
    """

    kind: Literal["checkpoint", "random-init"]
    description: str
    sha256: str
    path: str | None = None

    @property
    def random_weights(self) -> bool:
        return self.kind == "random-init"


class ParityResult(Record):
    """Engine against its torch reference on the same inputs, at each shape checked."""

    passed: bool
    tolerance: float
    max_abs_diff: dict[str, float]
    shapes_checked: list[dict[str, list[int]]]
    """The input shapes the engine was run at, one feed per entry."""
    reference: str = "torch"
    measure: str = "max abs diff"
    """What ``max_abs_diff`` holds: plain absolute differences, or (converted MediaPipe
    engines) ``max abs diff / max(1, max |reference|)``, so outputs in pixels and in logits
    share one tolerance."""

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values(), default=0.0)


class EngineManifest(Record):
    """Everything that identifies one built engine. Written once by ``export/``; a new plan
    list or source is a new record (``model_copy(update=...)``), never an edit in place."""

    name: str
    role: str
    profile: str
    model: str
    signature: Signature
    onnx_file: str
    onnx_sha256: str
    source: SourceInfo
    opset: int
    precision: str
    backend: str
    device: str
    parity: ParityResult
    versions: dict[str, str]
    config: dict[str, Any]
    git_commit: str | None
    created: str
    files: dict[str, str] = Field(default_factory=dict)
    """Other files the engine needs (tokenizer.json), name -> sha256; plans are in ``plans``."""
    preprocess: dict[str, Any] = Field(default_factory=dict)
    """What the adapter must do before ``run`` (input size, mean/std, pooling)."""
    plans: list[PlanRecord] = Field(default_factory=list)
    """TensorRT plans built from this ONNX, one per (TensorRT version, GPU); empty until
    ``hidemo engines build --tensorrt`` runs on a machine with TensorRT."""
    schema_version: int = SCHEMA_VERSION

    @property
    def random_weights(self) -> bool:
        return self.source.random_weights

    def write(self, engine_dir: Path) -> Path:
        """Write atomically (temp file + rename): a reader never sees half a manifest."""
        path = manifest_path(engine_dir, self.name)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True))
        os.replace(tmp, path)
        return path


def manifest_path(engine_dir: Path, name: str) -> Path:
    return Path(engine_dir) / f"{name}{MANIFEST_SUFFIX}"


def build_command(profile: str, engine_dir: Path | str) -> str:
    return f"hidemo engines build --profile {profile} --engine-dir {engine_dir}"


def read_manifest(engine_dir: Path, name: str, profile_hint: str = "<profile>") -> EngineManifest:
    """Read and validate ``<name>.manifest.json``; refuse a missing, unreadable, foreign or
    invalid one (:class:`EngineMissing`, :class:`EngineStale`) with the rebuild command."""
    path = manifest_path(engine_dir, name)
    if not path.is_file():
        raise EngineMissing(
            f"engine {name!r}: no manifest at {path} (the engine was never built there, or "
            "its manifest was removed; an engine without a manifest is never loaded)",
            build_command(profile_hint, engine_dir),
        )
    try:
        text = path.read_text()
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EngineStale(
            f"engine {name!r}: manifest {path} is unreadable ({exc})",
            build_command(profile_hint, engine_dir),
        ) from exc
    raw = data if isinstance(data, dict) else {}
    profile = raw.get("profile") if isinstance(raw.get("profile"), str) else profile_hint
    version = raw.get("schema_version", SCHEMA_VERSION)
    if type(version) is int and version != SCHEMA_VERSION:  # another hidemo's manifest
        raise EngineStale(
            f"engine {name!r}: manifest schema {version}, this hidemo reads {SCHEMA_VERSION}",
            build_command(profile, engine_dir),
        )
    try:
        return EngineManifest.model_validate_json(text, strict=True)
    except ValidationError as exc:
        raise EngineStale(
            f"engine {name!r}: manifest {path} is not a valid engine manifest "
            f"({_first_errors(exc)})",
            build_command(profile, engine_dir),
        ) from exc


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    """Where and what, for the first few errors: ``parity.passed: Input should be ...``."""
    parts = [f"{'.'.join(map(str, error['loc'])) or 'manifest'}: {error['msg']}"
             for error in exc.errors()[:limit]]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def hash_source(path: Path) -> str:
    """sha256 of a checkpoint file, or of a folder's files (names and contents, sorted)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(item.relative_to(path)).encode())
        digest.update(sha256_file(item).encode())
    return digest.hexdigest()


def verify(manifest: EngineManifest, engine_dir: Path, *, check_source: bool = True,
           check_plans: bool = True) -> None:
    """Refuse (raise :class:`EngineRefused`) unless the engine is exactly what was verified.

    ``check_plans`` also checks every TensorRT plan the manifest lists (the plan builder
    turns it off: it rebuilds a bad plan instead of refusing the engine).
    """
    engine_dir = Path(engine_dir)
    fix = build_command(manifest.profile, engine_dir)
    name = manifest.name
    if not manifest.parity.passed:
        raise ParityFailed(
            f"engine {name!r}: parity against {manifest.parity.reference} failed at build "
            f"time ({manifest.parity.measure} {manifest.parity.worst:.3g} > "
            f"{manifest.parity.tolerance:g})",
            fix + "  (after fixing the exporter or the model; see the build log)",
        )
    onnx_path = engine_dir / manifest.onnx_file
    if not onnx_path.is_file():
        raise EngineMissing(f"engine {name!r}: {onnx_path} is missing", fix)
    if sha256_file(onnx_path) != manifest.onnx_sha256:
        raise EngineStale(
            f"engine {name!r}: {onnx_path} does not match its manifest (sha256 differs: "
            "the file was modified or replaced after it was verified)",
            fix,
        )
    for file_name, digest in manifest.files.items():
        extra = engine_dir / file_name
        if not extra.is_file() or sha256_file(extra) != digest:
            raise EngineStale(f"engine {name!r}: {extra} is missing or modified", fix)
    if check_plans:
        _verify_plans(manifest, engine_dir)
    if check_source and manifest.source.random_weights and manifest.source.path:
        awaited = Path(manifest.source.path)
        if awaited.exists():
            raise EngineStale(
                f"engine {name!r} was built with random weights, but a trained checkpoint now "
                f"exists at {awaited}; rebuild to use it",
                fix,
            )
    if check_source and manifest.source.kind == "checkpoint" and manifest.source.path:
        source = Path(manifest.source.path)
        if not source.exists():
            raise EngineStale(
                f"engine {name!r}: its source checkpoint {source} is gone", fix
            )
        if hash_source(source) != manifest.source.sha256:
            raise EngineStale(
                f"engine {name!r}: source checkpoint {source} changed since the engine was "
                "built (retrained or replaced); the engine no longer matches it",
                fix,
            )


def _verify_plans(manifest: EngineManifest, engine_dir: Path) -> None:
    """Every listed plan exists and hashes to its record: a tampered plan is never loaded."""
    fix = tensorrt_build_command(manifest.profile, engine_dir)
    for plan in manifest.plans:
        path = engine_dir / plan.file
        if not path.is_file():  # stale, not missing: the engine itself (its ONNX) is there
            raise EngineStale(
                f"engine {manifest.name!r}: TensorRT plan {path} listed in its manifest is "
                "missing", fix)
        if sha256_file(path) != plan.sha256:
            raise EngineStale(
                f"engine {manifest.name!r}: TensorRT plan {path} does not match its manifest "
                "(sha256 differs: the file was modified or replaced after it was built)", fix)


def engine_state(engine_dir: Path, name: str) -> tuple[str, str]:
    """One word for ``engines list`` and the reason.

    States: ok, random-weights, stale, failed-parity, missing.
    """
    try:
        manifest = read_manifest(engine_dir, name)
        verify(manifest, engine_dir)
    except ParityFailed as exc:
        return "failed-parity", str(exc).splitlines()[0]
    except EngineMissing as exc:
        return "missing", str(exc).splitlines()[0]
    except EngineRefused as exc:
        return "stale", str(exc).splitlines()[0]
    if manifest.random_weights:
        return "random-weights", "verified, but built from a config with random weights"
    return "ok", "verified"
