"""The engine manifest: a JSON sidecar that is an engine's identity, and the gate that checks it.

Every engine file ``<name>.onnx`` has a ``<name>.json`` beside it, written by ``export/``
after the parity check. The runtime loads nothing without it, and refuses an engine whose
files no longer hash to what the manifest says, whose source checkpoint changed since the
build, or whose parity check failed. Each refusal names the command that fixes it.

Metadata never goes inside the binary engine file (TensorRT plans especially): a plan is
per device and per TensorRT version, while the manifest describes the model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engines.plans import PlanRecord, tensorrt_build_command
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


@dataclass(frozen=True)
class SourceInfo:
    """Where an engine's weights came from.

    ``kind`` is ``checkpoint`` (a file or folder of weights, hashed) or ``random-init``
    (built from a config with a fixed seed; ``sha256`` hashes that config). A checkpoint
    goes stale when its files change; a random-init source with a ``path`` (where trained
    weights would be installed) goes stale when something appears there.
    """

    kind: str
    description: str
    sha256: str
    path: str | None = None

    @property
    def random_weights(self) -> bool:
        return self.kind == "random-init"


@dataclass(frozen=True)
class ParityResult:
    """Engine against its torch reference on the same inputs, at each shape checked."""

    passed: bool
    tolerance: float
    max_abs_diff: dict[str, float]
    shapes_checked: list[dict[str, list[int]]]
    reference: str = "torch"
    measure: str = "max abs diff"
    """What ``max_abs_diff`` holds: plain absolute differences, or (converted MediaPipe
    engines) ``max abs diff / max(1, max |reference|)``, so outputs in pixels and in logits
    share one tolerance."""

    @property
    def worst(self) -> float:
        return max(self.max_abs_diff.values(), default=0.0)


@dataclass
class EngineManifest:
    """Everything that identifies one built engine. Written once by ``export/``."""

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
    files: dict[str, str] = field(default_factory=dict)
    """Other files the engine needs (tokenizer.json), name -> sha256; plans are in ``plans``."""
    preprocess: dict[str, Any] = field(default_factory=dict)
    """What the adapter must do before ``run`` (input size, mean/std, pooling)."""
    plans: list[PlanRecord] = field(default_factory=list)
    """TensorRT plans built from this ONNX, one per (TensorRT version, GPU); empty until
    ``hidemo engines build --tensorrt`` runs on a machine with TensorRT."""
    schema_version: int = SCHEMA_VERSION

    @property
    def random_weights(self) -> bool:
        return self.source.random_weights

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["signature"] = self.signature.to_json()
        data["plans"] = [plan.to_json() for plan in self.plans]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EngineManifest:
        data = dict(data)
        data["signature"] = Signature.from_json(data["signature"])
        data["source"] = SourceInfo(**data["source"])
        data["parity"] = ParityResult(**data["parity"])
        data["plans"] = [PlanRecord.from_json(plan) for plan in data.get("plans", [])]
        return cls(**data)

    def write(self, engine_dir: Path) -> Path:
        """Write atomically (temp file + rename): a reader never sees half a manifest."""
        path = manifest_path(engine_dir, self.name)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True))
        os.replace(tmp, path)
        return path


def manifest_path(engine_dir: Path, name: str) -> Path:
    return Path(engine_dir) / f"{name}{MANIFEST_SUFFIX}"


def build_command(profile: str, engine_dir: Path | str) -> str:
    return f"hidemo engines build --profile {profile} --engine-dir {engine_dir}"


def read_manifest(engine_dir: Path, name: str, profile_hint: str = "<profile>") -> EngineManifest:
    path = manifest_path(engine_dir, name)
    if not path.is_file():
        raise EngineMissing(
            f"engine {name!r}: no manifest at {path} (the engine was never built there, or "
            "its manifest was removed; an engine without a manifest is never loaded)",
            build_command(profile_hint, engine_dir),
        )
    try:
        data = json.loads(path.read_text())
        manifest = EngineManifest.from_json(data)
    except (json.JSONDecodeError, TypeError, KeyError) as exc:
        raise EngineStale(
            f"engine {name!r}: manifest {path} is unreadable ({exc})",
            build_command(profile_hint, engine_dir),
        ) from exc
    if manifest.schema_version != SCHEMA_VERSION:
        raise EngineStale(
            f"engine {name!r}: manifest schema {manifest.schema_version}, this hidemo reads "
            f"{SCHEMA_VERSION}",
            build_command(manifest.profile, engine_dir),
        )
    return manifest


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
