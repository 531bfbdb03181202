"""The run's perception core: its keypoint source resolved once, its options from the config.

``keypoints: auto`` is a rule (:func:`engines.adapters.perception.choose_keypoints`) applied
once per run, before any stage starts, and kept with its reason; the stages get the
resolved configuration, so detect (which runs the core) and features (which must know
whether keypoints arrive with the crops) cannot disagree.

Example:
    >>> config, why = resolve_keypoints(config)  # doctest: +SKIP
    >>> core = open_run_core(config)  # doctest: +SKIP
"""

from __future__ import annotations

import logging

from engines.adapters.perception import (
    CoreOptions,
    KeypointSource,
    PerceptionCore,
    Resolved,
    choose_keypoints,
    open_core,
)
from stream.config import RunConfig

log = logging.getLogger(__name__)


def resolve_keypoints(config: RunConfig) -> tuple[RunConfig, Resolved]:
    """``config`` with ``keypoints`` resolved (``auto`` by its rule), and why."""
    resolved = choose_keypoints(config.keypoints, config.resolved_engine_dir(),
                                config.engine_backend(), config.detect.threads, config.profile)
    if config.keypoints == "auto":
        log.debug("keypoints: %s (%s)", resolved.source.value, resolved.reason)
    return config.model_copy(update={"keypoints": resolved.source.value}), resolved


def keypoint_source(config: RunConfig) -> KeypointSource:
    """The run's keypoint source (``auto`` resolved here when the caller did not)."""
    if config.keypoints == "auto":
        config, _ = resolve_keypoints(config)
    return KeypointSource(config.keypoints)


def core_options(config: RunConfig) -> CoreOptions:
    """What the detect stage's perception core is opened with."""
    return CoreOptions(engine_dir=config.resolved_engine_dir(), backend=config.engine_backend(),
                       threads=config.detect.threads, detector=config.detect.detector,
                       frame_rate=config.capture_fps(), max_persons=config.detect.max_persons,
                       crop_margin=config.detect.crop_margin, profile=config.profile)


def open_run_core(config: RunConfig) -> PerceptionCore:
    """The perception core ``config`` asks for, its engines loaded and verified."""
    return open_core(keypoint_source(config), core_options(config))
