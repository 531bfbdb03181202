"""The perception roles a profile builds, and the dispatch from a role to its source builder.

Apart from :mod:`engines.sources.base` so that the builders, which import ``base`` for
:class:`~engines.sources.base.SourceModel`, are never imported back by it.
"""

from __future__ import annotations

from engines.profiles import Profile
from engines.sources.base import SourceModel, WeightsLocator

ROLES = ("detector", "image_embedder", "text_embedder")
"""Perception engines a profile builds, in build order. The classifier comes from training."""


def build_source(role: str, profile: Profile, locator: WeightsLocator) -> SourceModel:
    """Build the source model for ``role`` of ``profile``."""
    if role == "detector":
        from engines.sources.detector import build_detector

        return build_detector(profile.detector, locator)
    if role == "image_embedder":
        from engines.sources.image import build_image_embedder

        return build_image_embedder(profile.image, locator)
    if role == "text_embedder":
        from engines.sources.text import build_text_embedder

        return build_text_embedder(profile.text, locator)
    raise ValueError(f"unknown engine role {role!r}; known: {ROLES}")
