"""One perception core for training, the live stages and the benchmark.

:mod:`.records` (the contract: :class:`PerceptionFrame` in, :class:`Percept` out),
:mod:`.tracked` (core a: detector + ByteTrack + prominence + crop), :mod:`.estimated`
(core b: Holistic on batched engines), :mod:`.crop_keypoints` (per-person keypoints:
MediaPipe on the crop, or what the core gave) and :mod:`.choice` (which one, and opening
it from an engine folder).
"""

from engines.adapters.perception.choice import (
    CoreOptions,
    KeypointChoice,
    Resolved,
    choose_keypoints,
    crop_keypoints_for,
    keypoint_engines_problem,
    open_core,
)
from engines.adapters.perception.crop_keypoints import (
    CropKeypoints,
    GivenKeypoints,
    MediaPipeCropKeypoints,
    PersonKey,
)
from engines.adapters.perception.estimated import EstimatorCore
from engines.adapters.perception.records import (
    KeypointSource,
    Percept,
    PerceptionCore,
    PerceptionFrame,
    PersonOnPicture,
    persons_on_picture,
)
from engines.adapters.perception.tracked import TrackedCore

__all__ = [
    "CoreOptions",
    "CropKeypoints",
    "EstimatorCore",
    "GivenKeypoints",
    "KeypointChoice",
    "KeypointSource",
    "MediaPipeCropKeypoints",
    "Percept",
    "PerceptionCore",
    "PerceptionFrame",
    "PersonKey",
    "PersonOnPicture",
    "Resolved",
    "TrackedCore",
    "choose_keypoints",
    "crop_keypoints_for",
    "keypoint_engines_problem",
    "open_core",
    "persons_on_picture",
]
