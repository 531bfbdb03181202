"""Which perception core a run uses, and opening it from an engine folder.

``keypoints: engines`` runs :class:`EstimatorCore` (Holistic on batched engines: persons,
ids and keypoints in one place); ``mediapipe`` runs :class:`TrackedCore` (detector +
ByteTrack) and MediaPipe Holistic per person crop afterwards; ``auto`` follows measurement:
:func:`choose_keypoints` takes ``engines`` whenever the keypoint engines are built and
verified in the folder (else ``mediapipe``, with the reason). On a GPU that is what they are
for; on a CPU they run on ``tflite`` (:func:`keypoint_backend`), and although MediaPipe's
own graph is a little cheaper per person alone, the pipeline with the engines went faster,
at 1 stream and more at 4 (the figures are in the docs' measurements): they track persons
instead of re-detecting them every frame and batch every stream in one call.

Example:
    >>> choice = choose_keypoints("auto", Path("artifacts/engines/edge"), "auto")  # doctest: +SKIP
    >>> core = open_core(choice.source, CoreOptions(engine_dir=...))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engines.runtime import BackendChoice

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engines.adapters.finders import DetectorChoice, make_finder
from engines.adapters.holistic import ENGINE_NAMES, EngineKeypoints
from engines.adapters.perception.crop_keypoints import (
    CropKeypoints,
    GivenKeypoints,
    MediaPipeCropKeypoints,
)
from engines.adapters.perception.estimated import NAME as ESTIMATOR_NAME
from engines.adapters.perception.estimated import EstimatorCore
from engines.adapters.perception.records import KeypointSource, PerceptionCore
from engines.adapters.perception.tracked import TrackedCore
from engines.manifest import EngineMissing, EngineRefused

log = logging.getLogger(__name__)

KeypointChoice = Literal["mediapipe", "engines", "auto"]

CPU_RULE = "keypoint engines built and verified; on the CPU they run on tflite"
"""The reason of ``auto`` -> ``engines`` without a GPU: the rule, not a measurement."""


@dataclass(frozen=True)
class CoreOptions:
    """What opening a core needs besides the keypoint source."""

    engine_dir: Path
    backend: BackendChoice = "auto"
    threads: int = 0
    detector: DetectorChoice = "auto"
    frame_rate: float = 10.0
    """Frames per second per stream (ByteTrack keeps a lost track ``3 s`` of frames)."""
    max_persons: int = 4
    crop_margin: float = 0.15
    profile: str = "<profile>"
    """For the fix in error messages (``hidemo engines build --profile P``)."""


@dataclass(frozen=True)
class Resolved:
    """A keypoint source and why it was taken (logged, and kept with the run)."""

    source: KeypointSource
    reason: str


def keypoint_engines_problem(engine_dir: Path,
                             profile: str = "<profile>") -> EngineRefused | None:
    """Why the keypoint engines cannot be used from ``engine_dir``, as the error to raise
    (it names the command that fixes it): one :class:`EngineMissing` for all that are not
    built, else the first refusal (stale, unverified); None when all are there and
    verified."""
    from engines.manifest import build_command, read_manifest, verify

    missing, refused = [], []
    for name in ENGINE_NAMES:
        try:
            verify(read_manifest(engine_dir, name, profile_hint=profile), engine_dir)
        except EngineMissing:
            missing.append(name)
        except EngineRefused as error:
            refused.append(error)
    if missing:
        return EngineMissing(f"keypoint engines {', '.join(missing)} are not built in "
                             f"{engine_dir} (or set keypoints: mediapipe)",
                             build_command(profile, engine_dir))
    return refused[0] if refused else None


def choose_keypoints(choice: KeypointChoice | str, engine_dir: Path, backend: BackendChoice,
                     threads: int = 0, profile: str = "<profile>") -> Resolved:
    """``mediapipe`` and ``engines`` as given; ``auto`` by measurement (see the module
    docstring): the engines wherever they are built and verified, else MediaPipe."""
    if choice != "auto":
        return Resolved(KeypointSource(choice), f"keypoints: {choice} was asked for")
    problem = keypoint_engines_problem(engine_dir, profile)
    if problem is not None:
        return Resolved(KeypointSource.MEDIAPIPE, f"auto: {problem}".replace("\n ", ";"))
    device = _device_of(engine_dir, backend, threads)
    if device.startswith("cuda"):
        return Resolved(KeypointSource.ENGINES,
                        f"auto: keypoint engines built and verified, on {device}")
    return Resolved(KeypointSource.ENGINES, f"auto: {CPU_RULE}")


def _device_of(engine_dir: Path, backend: BackendChoice, threads: int) -> str:
    """Where ``backend`` puts the pose landmark engine (loaded once, then closed)."""
    from engines.runtime import load_engine

    engine = load_engine(engine_dir, ENGINE_NAMES[1], backend, threads=threads)
    try:
        return engine.device
    finally:
        engine.close()


def keypoint_backend(engine_dir: Path, backend: BackendChoice,
                     threads: int = 0) -> BackendChoice:
    """The backend the keypoint engines run on: as asked, except that ``auto`` on a machine
    where they would land on the CPU takes ``tflite`` (their own ``.tflite`` files on the
    TFLite interpreter, faster than onnxruntime on a CPU for these models)."""
    from engines.runtime import local_backend

    if local_backend(backend, ENGINE_NAMES[1]) != "auto":
        return backend
    return "tflite" if _device_of(engine_dir, "auto", threads) == "cpu" else backend


def open_core(source: KeypointSource, options: CoreOptions) -> PerceptionCore:
    """The core for ``source``, its engines loaded and verified from the folder."""
    if source is KeypointSource.ENGINES:
        return open_estimator_core(options)
    finder = make_finder(options.detector, options.engine_dir, options.backend,
                         options.threads)
    return TrackedCore(finder, frame_rate=options.frame_rate, max_persons=options.max_persons,
                       crop_margin=options.crop_margin)


def open_estimator_core(options: CoreOptions, **estimator_options: Any) -> EstimatorCore:
    """:class:`EstimatorCore` on every keypoint engine of the folder (all are required:
    a missing face or hand engine would silently empty those keypoints)."""
    problem = keypoint_engines_problem(options.engine_dir, options.profile)
    if problem is not None:
        raise problem
    estimator = EngineKeypoints.from_engine_dir(
        options.engine_dir, keypoint_backend(options.engine_dir, options.backend,
                                             options.threads),
        options.threads, max_persons=options.max_persons, crop_margin=options.crop_margin,
        **estimator_options)
    return EstimatorCore(estimator, device=estimator.device, engine_ids=estimator.engine_ids)


def crop_keypoints_for(source: KeypointSource) -> CropKeypoints:
    """The per-person keypoint strategy that pairs with a core of ``source``."""
    if source is KeypointSource.ENGINES:
        return GivenKeypoints(ESTIMATOR_NAME)
    return MediaPipeCropKeypoints()
