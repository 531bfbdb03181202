"""The window classifier's sizes: one dataclass, saved beside every checkpoint.

A profile names default sizes (``ClassifierSpec.model``); a trained checkpoint carries the
sizes it was trained with, which win. Everything needed to rebuild the network from a
``config.json`` is here, so an engine can be re-exported from the checkpoint alone.

Example:
    >>> ClassifierConfig(image_dim=96, text_dim=64, d_model=32).head_dim
    8
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from engines.profiles import Profile

KEYPOINT_ENCODERS = ("mlp", "gcn")
"""``mlp``: per-part MLPs per frame (the design's encoder); ``gcn``: graph convolution over
the skeleton (the ablation baseline)."""


@dataclass
class ClassifierConfig:
    """Sizes and regularisation of :class:`training.models.HiddenEmotionClassifier`.

    ``max_len`` bounds the slots per modality (the learned positional table's length);
    ``modality_dropout`` is the per-sample chance of hiding a present modality in training
    (it only acts in stage 2, where several are present): high enough that the head learns
    to decide from any single modality, low enough that it still learns to combine them.
    """

    image_dim: int
    text_dim: int
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    ff_mult: int = 2
    dropout: float = 0.1
    keypoint_encoder: str = "mlp"
    max_len: int = 1024
    modality_dropout: float = 0.3
    offset_scale: float = 10.0
    """Inter-frame keypoint offsets are multiplied by this before the first layer. At 10 fps
    a gesture moves about a tenth of a shoulder width per frame, ten times less than the
    positions beside it; unscaled, the keypoint encoder sat at chance for many epochs on the
    synthetic set."""

    def __post_init__(self) -> None:
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        if self.keypoint_encoder not in KEYPOINT_ENCODERS:
            raise ValueError(f"keypoint_encoder {self.keypoint_encoder!r}; choose one of "
                             f"{KEYPOINT_ENCODERS}")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ValueError(f"modality_dropout {self.modality_dropout} must be in [0, 1)")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierConfig:
        """Build from a dict; unknown keys are an error (a typo must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ClassifierConfig fields {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_profile(cls, profile: Profile, **overrides: Any) -> ClassifierConfig:
        """Embedding widths from the profile's embedders, sizes from its ClassifierSpec."""
        data: dict[str, Any] = {"image_dim": profile.image.dim, "text_dim": profile.text.dim,
                                **profile.classifier.model, **overrides}
        return cls.from_dict(data)
