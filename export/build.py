"""Build a profile's engines: each one exported, verified and installed by :mod:`export.install`.

Rebuilds only what changed: an engine whose manifest still verifies and whose source hash,
config and opset are unchanged is left alone; a new one replaces the old atomically.

Example:
    >>> build_profile(get_profile("tiny"), Path("artifacts/engines/tiny"))  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from engines.adapters.classifier import CLASSIFIER_NAME
from engines.profiles import Profile
from engines.sources import ROLES, SourceModel, WeightsLocator, build_source
from engines.sources.mediapipe import KEYPOINT_ENGINES, model_named
from export.install import BuildOutcome, Progress, build_engine, log_progress
from export.onnx_export import DEFAULT_OPSET

ENGINES = (*ROLES, CLASSIFIER_NAME, *KEYPOINT_ENGINES)
"""Engines a profile build makes, in order: the perception roles, the window classifier,
then the keypoint engines converted from MediaPipe's models (:mod:`export.mediapipe`).
``classifier_int8`` is built on request (``--int8``), see :mod:`export.classifier`."""


def load_source(name: str, profile: Profile, locator: WeightsLocator) -> SourceModel:
    """The torch source of engine ``name``: perception from ``engines.sources``, the window
    classifier from ``export.classifier`` (its module lives in ``training/``, which
    ``engines/`` may not import)."""
    if name == CLASSIFIER_NAME:
        from export.classifier import build_classifier_source

        return build_classifier_source(profile, locator)
    return build_source(name, profile, locator)


def build_profile(profile: Profile, engine_dir: Path, *, locator: WeightsLocator | None = None,
                  roles: Iterable[str] = ENGINES, force: bool = False,
                  opset: int = DEFAULT_OPSET, int8: bool = False,
                  progress: Progress | None = None,
                  convert_env: Path | None = None) -> list[BuildOutcome]:
    """Build every engine of ``profile`` (perception, classifier, keypoints); one outcome
    per engine.

    ``int8`` also builds ``classifier_int8`` (dynamic int8, for CPUs) whenever the
    classifier is among ``roles``. ``convert_env`` is where the TFLite conversion
    environment lives (default ``artifacts/build-env``), created only if a keypoint engine
    must be converted.
    """
    locator = locator or WeightsLocator()
    say = progress or log_progress
    outcomes = []
    for role in roles:
        if role in KEYPOINT_ENGINES:
            from export.mediapipe.build import build_keypoint_engine
            from export.mediapipe.buildenv import DEFAULT_ROOT

            outcomes.append(build_keypoint_engine(
                model_named(role), profile.name, engine_dir, force=force, progress=progress,
                convert_env=convert_env or DEFAULT_ROOT))
            continue
        say(role, "loading source model")
        source = load_source(role, profile, locator)
        outcome = build_engine(source, profile.name, engine_dir, force=force, opset=opset,
                               progress=progress)
        outcomes.append(outcome)
        if int8 and role == CLASSIFIER_NAME:
            from export.classifier import build_int8_engine

            outcomes.append(build_int8_engine(source, outcome.manifest, profile.name,
                                              engine_dir, force=force, opset=opset,
                                              progress=progress))
    return outcomes
