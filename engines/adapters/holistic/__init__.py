"""MediaPipe Holistic on batched engines: multi-person keypoints in the OpenPose layout.

One module per job: :mod:`.anchors` (SSD anchors), :mod:`.detections` (decoding, weighted
NMS), :mod:`.roi` (rotated ROI maths and warps), :mod:`.pose`, :mod:`.face`, :mod:`.hands`
(each model's pre/post-processing and ROI rules, from MediaPipe's graphs) and
:mod:`.estimator` (batching and tracking). See :class:`EngineKeypoints`.
"""

from engines.adapters.holistic.estimator import (
    ENGINE_NAMES,
    EngineKeypoints,
    PersonKeypoints,
)

__all__ = ["ENGINE_NAMES", "EngineKeypoints", "PersonKeypoints"]
