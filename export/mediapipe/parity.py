"""The parity gate for converted MediaPipe engines: ONNX against the TFLite interpreter.

The reference is the TFLite interpreter of ``ai-edge-litert`` with its builtin kernels and
no default delegate (XNNPACK reads ``pose_detection``'s DENSIFY outputs as zeros, so with
it a broken reference would agree with a broken conversion). Inputs are real photos
(``scikit-image``'s astronaut, whole and cropped and mirrored, and two other photos), scaled
to the model's input as MediaPipe would. Two checks, one result:

- every output of the ONNX engine at batch 1 against the interpreter, per photo;
- the same photos as one batch of :data:`BATCH` against batch 1 (the dynamic-batch edit of
  :mod:`export.mediapipe.graph` must not mix items), recorded as ``<output>@batch8``.

Differences are scaled by the output's size, ``|onnx - tflite| / max(1, max |tflite|)``:
landmarks are in input pixels (up to ~450) and scores are logits, and one tolerance should
mean the same for both.
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

from engines.backends.onnxruntime import OnnxRuntimeEngine
from engines.backends.tflite import TfliteEngine
from engines.manifest import ParityResult
from engines.sources.mediapipe import MediaPipeModel
from engines.spec import Signature

BATCH = 8
TOLERANCE = 1e-4
MEASURE = "max abs diff / max(1, max |reference|)"


def parity_photos(count: int = BATCH) -> list[np.ndarray]:
    """``count`` real RGB photos: the astronaut whole, cropped to face and upper body,
    mirrored and flipped, and other photos of scikit-image."""
    from skimage import data

    astronaut = data.astronaut()
    photos = [astronaut, astronaut[20:260, 110:350], astronaut[:360, 60:460],
              np.ascontiguousarray(astronaut[:, ::-1]), astronaut[::-1], data.coffee(),
              data.chelsea(), data.rocket()]
    return [np.ascontiguousarray(photo) for photo in (photos * count)[:count]]


def model_inputs(model: MediaPipeModel, photos: list[np.ndarray]) -> np.ndarray:
    """The photos as the model's input: resized square, values in its range, NHWC."""
    low, high = model.value_range
    scaled = [cv2.resize(photo, (model.size, model.size), interpolation=cv2.INTER_AREA)
              for photo in photos]
    return (np.stack(scaled).astype(np.float32) / 255.0 * (high - low) + low).astype(np.float32)


def litert_version() -> str:
    try:
        return metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:
        return "missing"


def _scaled_diff(got: np.ndarray, want: np.ndarray) -> float:
    if got.shape != want.shape:
        return float("inf")
    diff = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64))))
    scale = max(1.0, float(np.max(np.abs(want))))
    value = diff / scale
    return value if np.isfinite(value) else float("inf")


def check_converted(model: MediaPipeModel, tflite: Path, onnx_path: Path,
                    signature: Signature, tolerance: float = TOLERANCE) -> ParityResult:
    """Compare ``onnx_path`` with ``tflite`` (see the module docstring)."""
    reference = TfliteEngine(model.engine, tflite, signature, model.outputs, reference=True)
    engine = OnnxRuntimeEngine(model.engine, onnx_path, signature, random_weights=False,
                               providers=["CPUExecutionProvider"])
    try:
        images = model_inputs(model, parity_photos())
        batched = engine.run({"image": images})
        worst: dict[str, float] = {}
        for index in range(len(images)):
            one = images[index:index + 1]
            expected = reference.run({"image": one})
            single = engine.run({"image": one})
            for new in model.outputs.values():
                worst[new] = max(worst.get(new, 0.0), _scaled_diff(single[new], expected[new]))
                key = f"{new}@batch{BATCH}"
                worst[key] = max(worst.get(key, 0.0),
                                 _scaled_diff(batched[new][index:index + 1], single[new]))
    finally:
        engine.close()
        reference.close()
    return ParityResult(
        passed=all(value <= tolerance for value in worst.values()), tolerance=tolerance,
        max_abs_diff=worst,
        shapes_checked=[{"image": [1, model.size, model.size, 3]},
                        {"image": [BATCH, model.size, model.size, 3]}],
        reference=f"tflite (ai-edge-litert=={litert_version()}, builtin kernels)",
        measure=MEASURE)
