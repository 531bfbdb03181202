"""What every adapter does the same way: open a verified engine, check its preprocessing."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from engines.engine import Backend, Engine
from engines.manifest import EngineManifest, read_manifest
from engines.runtime import load_engine


def open_verified(engine_dir: Path | str, name: str,
                  backend: Backend | str = Backend.AUTO) -> tuple[Engine, EngineManifest]:
    """Read, verify and load engine ``name``; the manifest comes back for its ``preprocess``."""
    manifest = read_manifest(Path(engine_dir), name)
    return load_engine(Path(engine_dir), name, backend, manifest=manifest), manifest


def require_preprocess(manifest: EngineManifest, keys: Iterable[str], role: str) -> None:
    """Refuse a manifest that lacks the preprocessing entries this adapter needs."""
    missing = [k for k in keys if k not in manifest.preprocess]
    if missing:
        raise ValueError(
            f"engine {manifest.name!r} (role {manifest.role!r}) is not a {role}: its "
            f"manifest's preprocess lacks {missing}; pass the {role} engine's manifest"
        )


def require_rgb(manifest: EngineManifest, role: str) -> None:
    """The image adapters feed RGB; refuse an engine built for another channel order."""
    channels = manifest.preprocess.get("channels")
    if channels != "RGB":
        raise ValueError(f"{role} {manifest.name!r}: channels {channels!r} unsupported; this "
                         "adapter feeds RGB (rebuild the engine with `hidemo engines build`)")
