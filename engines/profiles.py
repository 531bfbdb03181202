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
    when no checkpoint exists (random init)."""

    model_id: str = "facebook/dinov2-small"
    image_size: int = 224
    config: dict[str, Any] = Field(default_factory=dict)


class TextEmbedderSpec(_Frozen):
    """A BERT-family encoder, mean-pooled. ``config`` overrides BertConfig for random init."""

    model_id: str = "sentence-transformers/all-MiniLM-L6-v2"
    max_length: int = 256
    normalize: bool = True
    config: dict[str, Any] = Field(default_factory=dict)


class Profile(_Frozen):
    name: str
    detector: DetectorSpec
    image: ImageEmbedderSpec
    text: TextEmbedderSpec


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
        image=ImageEmbedderSpec(model_id="facebook/dinov2-base", config=DINOV2_BASE),
        text=TextEmbedderSpec(model_id="bert-base-uncased", normalize=False),
    ),
    "edge": Profile(
        name="edge",
        detector=DetectorSpec(variant="yolo11n"),
        image=ImageEmbedderSpec(model_id="facebook/dinov2-small", config=DINOV2_SMALL),
        text=TextEmbedderSpec(),
    ),
    "tiny": Profile(
        name="tiny",
        detector=DetectorSpec(variant="yolo11n", imgsz=320),
        image=ImageEmbedderSpec(model_id="hidemo/dinov2-tiny", image_size=112,
                                config=DINOV2_TINY),
        text=TextEmbedderSpec(model_id="hidemo/bert-tiny", max_length=64, config=BERT_TINY),
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown profile {name!r}; choose one of {sorted(PROFILES)}"
        ) from None
