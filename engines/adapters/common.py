"""What every adapter checks the same way: the preprocessing its engine's manifest declares.

Engines are opened with :func:`engines.runtime.open_engine`.
"""

from __future__ import annotations

from collections.abc import Iterable

from engines.manifest import EngineManifest


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
