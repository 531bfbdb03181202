"""The window classifier (nn.Module code): config, encoders, checkpoint format, latency.

``HiddenEmotionClassifier`` takes the classifier engine's inputs and returns its outputs,
so the same module is trained here and exported by ``export/classifier.py``.
"""

from training.models.checkpoint import load_checkpoint, save_checkpoint
from training.models.classifier import HiddenEmotionClassifier, drop_modalities
from training.models.config import ClassifierConfig
from training.models.encoders import ImageSequenceEncoder, TextEncoder, count_parameters
from training.models.keypoints import GraphKeypointEncoder, KeypointEncoder
from training.models.latency import window_latency_ms

__all__ = [
    "ClassifierConfig",
    "GraphKeypointEncoder",
    "HiddenEmotionClassifier",
    "ImageSequenceEncoder",
    "KeypointEncoder",
    "TextEncoder",
    "count_parameters",
    "drop_modalities",
    "load_checkpoint",
    "save_checkpoint",
    "window_latency_ms",
]
