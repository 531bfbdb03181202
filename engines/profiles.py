"""Profiles: named, complete sets of perception models (which detector, embedder, text encoder).

``paper`` is what the paper used (YOLO11x, DINOv2-Base, BERT-base); ``edge`` is what fits a
Jetson or a laptop CPU (YOLO11n, DINOv2-Small, MiniLM); ``tiny`` is the smallest configs,
for tests and CI. A profile only names models; whether real weights exist is decided when
the source is built (see :mod:`engines.sources`).

Example:
    >>> get_profile("edge").image.model_id
    'facebook/dinov2-small'
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DetectorSpec(_Frozen):
    """An ultralytics YOLO detector. ``weights`` is looked up in the weights folder."""

    variant: str = "yolo11n"
    imgsz: int = 640
    conf_threshold: float = 0.25
    iou_threshold: float = 0.45

    @property
    def weights_file(self) -> str:
        return f"{self.variant}.pt"


class ImageEmbedderSpec(_Frozen):
    """A DINOv2 backbone at a fixed square input. ``config`` overrides Dinov2Config fields
    when no checkpoint exists (random init). ``dim`` is its embedding width (hidden size)."""

    model_id: str = "facebook/dinov2-small"
    image_size: int = 224
    dim: int = 384
    config: dict[str, Any] = Field(default_factory=dict)


class TextEmbedderSpec(_Frozen):
    """A BERT-family encoder, mean-pooled. ``config`` overrides BertConfig for random init."""

    model_id: str = "sentence-transformers/all-MiniLM-L6-v2"
    max_length: int = 256
    normalize: bool = True
    dim: int = 384
    config: dict[str, Any] = Field(default_factory=dict)


class ClassifierSpec(_Frozen):
    """The window classifier: how much history it sees and how it is sampled.

    A window is the last ``window_seconds`` of one person, laid on a fixed grid per modality:
    ``image_rate`` image embeddings and ``keypoint_rate`` keypoint frames per second (slots
    without a feature are masked). Window length is the floor of reaction time. ``model``
    holds the network's sizes (``training.models.ClassifierConfig`` fields); the checkpoint
    that ``hidemo train`` installs carries its own and overrides them.
    """

    window_seconds: float = 8.0
    image_rate: float = 2.0
    keypoint_rate: float = 10.0
    model: dict[str, Any] = Field(default_factory=dict)

    @property
    def image_slots(self) -> int:
        return max(1, round(self.window_seconds * self.image_rate))

    @property
    def keypoint_slots(self) -> int:
        return max(1, round(self.window_seconds * self.keypoint_rate))


class Profile(_Frozen):
    name: str
    detector: DetectorSpec
    image: ImageEmbedderSpec
    text: TextEmbedderSpec
    classifier: ClassifierSpec = Field(default_factory=ClassifierSpec)


DINOV2_SMALL = {"hidden_size": 384, "num_attention_heads": 6, "num_hidden_layers": 12}
DINOV2_BASE = {"hidden_size": 768, "num_attention_heads": 12, "num_hidden_layers": 12}
DINOV2_TINY = {"hidden_size": 96, "num_attention_heads": 2, "num_hidden_layers": 2,
               "mlp_ratio": 2}
BERT_TINY = {"hidden_size": 64, "num_attention_heads": 2, "num_hidden_layers": 2,
             "intermediate_size": 128}

PROFILES: dict[str, Profile] = {
    "paper": Profile(
        name="paper",
        detector=DetectorSpec(variant="yolo11x"),
        image=ImageEmbedderSpec(model_id="facebook/dinov2-base", dim=768, config=DINOV2_BASE),
        text=TextEmbedderSpec(model_id="bert-base-uncased", normalize=False, dim=768),
        classifier=ClassifierSpec(window_seconds=16.0, image_rate=5.0, keypoint_rate=25.0,
                                  model={"d_model": 256, "layers": 4, "heads": 4}),
    ),
    "edge": Profile(
        name="edge",
        detector=DetectorSpec(variant="yolo11n"),
        image=ImageEmbedderSpec(model_id="facebook/dinov2-small", config=DINOV2_SMALL),
        text=TextEmbedderSpec(),
        classifier=ClassifierSpec(model={"d_model": 64, "layers": 2, "heads": 4}),
    ),
    "tiny": Profile(
        name="tiny",
        detector=DetectorSpec(variant="yolo11n", imgsz=320),
        image=ImageEmbedderSpec(model_id="hidemo/dinov2-tiny", image_size=112, dim=96,
                                config=DINOV2_TINY),
        text=TextEmbedderSpec(model_id="hidemo/bert-tiny", max_length=64, dim=64,
                              config=BERT_TINY),
        classifier=ClassifierSpec(window_seconds=4.0, image_rate=2.0, keypoint_rate=5.0,
                                  model={"d_model": 32, "layers": 1, "heads": 2}),
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; choose one of {sorted(PROFILES)}"
        ) from None
