"""The window classifier: image, keypoint and text encoders, concatenated, an FC head.

Inputs are exactly the engine's (:func:`engines.adapters.classifier.classifier_signature`),
positional and in its order, and the outputs are ``(logits, probs)``, so the module is its
own ONNX export wrapper and the training loss and the live engine see one function.

Missing modalities: each encoder's pooled vector is replaced by a learned ``missing_*``
vector when that modality's mask is all zero in a window. Modality dropout (training only)
hides present modalities at random, never all of them, so the head learns to use those
vectors and a window without hands or transcript degrades instead of failing.

Example:
    >>> model = HiddenEmotionClassifier(ClassifierConfig(image_dim=8, text_dim=4, d_model=16))
    >>> logits, probs = model(*example_inputs(model.config, batch=2, image_seq=3,
    ...                                       keypoint_seq=5))
    >>> tuple(probs.shape)
    (2, 2)
"""

from __future__ import annotations

import torch
from torch import nn

from engines.adapters.classifier import CLASS_NAMES
from engines.adapters.openpose_layout import NUM_CHANNELS, NUM_KEYPOINTS
from training.models.config import ClassifierConfig
from training.models.encoders import ImageSequenceEncoder, TextEncoder, count_parameters
from training.models.keypoints import GraphKeypointEncoder, KeypointEncoder
from training.models.transformer import present

MODALITIES = ("image", "keypoints", "text")


def drop_modalities(masks: list[torch.Tensor], probability: float,
                    generator: torch.Generator | None = None) -> list[torch.Tensor]:
    """Per sample, zero each present modality's mask with ``probability``; never all of them.

    ``masks`` are (B, T_m) per modality. Where every present modality of a sample would be
    dropped, one of them (chosen at random) is kept. Absent modalities stay absent.
    """
    here = torch.cat([present(m) for m in masks], dim=1)  # B, M
    rand = torch.rand(here.shape, generator=generator, device=here.device)
    drop = (rand < probability) & (here > 0)
    emptied = ((here > 0) & ~drop).sum(dim=1) == 0
    # keep the present modality with the highest random score (a uniform choice)
    keep = (torch.rand(here.shape, generator=generator, device=here.device) + 1.0) * here
    keep_one = nn.functional.one_hot(keep.argmax(dim=1), len(masks)).bool()
    drop = drop & ~(keep_one & emptied[:, None])
    return [m * (~drop[:, i : i + 1]).to(m.dtype) for i, m in enumerate(masks)]


class HiddenEmotionClassifier(nn.Module):
    """forward(image, image_mask, keypoints, keypoints_mask, text, text_mask) -> (logits, probs).

    Shapes: image (B, Ti, Dimg), image_mask (B, Ti), keypoints (B, Tk, 137, 3),
    keypoints_mask (B, Tk), text (B, Dtxt), text_mask (B, 1); logits and probs (B, 2).
    """

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_model
        self.image_encoder = ImageSequenceEncoder(config)
        self.keypoint_encoder: nn.Module = (KeypointEncoder(config)
                                            if config.keypoint_encoder == "mlp"
                                            else GraphKeypointEncoder(config))
        self.text_encoder = TextEncoder(config)
        self.missing = nn.Parameter(torch.randn(len(MODALITIES), d) * 0.02)
        self.head = nn.Sequential(nn.LayerNorm(3 * d), nn.Linear(3 * d, d), nn.GELU(),
                                  nn.Dropout(config.dropout), nn.Linear(d, len(CLASS_NAMES)))
        self.register_buffer("logit_bias", torch.zeros(len(CLASS_NAMES)))
        """Added to the logits: zero while training; after training with a class-balanced
        objective, the log class prior (:meth:`set_prior`), so that the deployed
        probabilities are calibrated to the class frequencies the model will meet."""

    def set_prior(self, class_frequencies: torch.Tensor | list[float], strength: float = 1.0
                  ) -> None:
        """Shift the logits by ``strength * log(frequency)`` per class (0 clears it).

        A model trained with a class-weighted loss (or balanced sampling) scores classes as
        if they were equally common; adding the log prior back (logit adjustment) restores
        the accuracy-optimal decision while keeping the balanced training's features.
        """
        freq = torch.as_tensor(class_frequencies, dtype=torch.float32)
        freq = freq / freq.sum()
        self.logit_bias.copy_(strength * torch.log(freq.clamp(min=1e-6)))

    def forward(self, image: torch.Tensor, image_mask: torch.Tensor, keypoints: torch.Tensor,
                keypoints_mask: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masks = [image_mask, keypoints_mask, text_mask]
        if self.training and self.config.modality_dropout > 0:
            masks = drop_modalities(masks, self.config.modality_dropout)
        encoders = (self.image_encoder, self.keypoint_encoder, self.text_encoder)
        inputs = (image, keypoints, text)
        fused = []
        for index, (encoder, data, mask) in enumerate(zip(encoders, inputs, masks, strict=True)):
            missing = self.missing[index].expand(mask.shape[0], -1)
            if self.training and not bool(mask.any()):
                # Stage 1 trains one modality alone: skip the others' encoders (a third of
                # the cost each). Eval and export always run every encoder, so the traced
                # graph has no data-dependent branch.
                fused.append(missing)
                continue
            here = present(mask)
            fused.append(encoder(data, mask) * here + missing * (1.0 - here))
        logits = self.head(torch.cat(fused, dim=-1)) + self.logit_bias
        return logits, logits.softmax(dim=-1)

    def count_parameters(self) -> dict[str, int]:
        """Trainable parameters per part (encoders, head, missing vectors) and in total."""
        counts = {"image_encoder": count_parameters(self.image_encoder),
                  "keypoint_encoder": count_parameters(self.keypoint_encoder),
                  "text_encoder": count_parameters(self.text_encoder),
                  "head": count_parameters(self.head),
                  "missing": self.missing.numel()}
        counts["total"] = count_parameters(self)
        return counts


def example_inputs(config: ClassifierConfig, *, batch: int, image_seq: int,
                   keypoint_seq: int) -> tuple[torch.Tensor, ...]:
    """All-present zero-ish inputs of the right shapes (for smoke tests and latency)."""
    generator = torch.Generator().manual_seed(0)
    keypoints = torch.randn(batch, keypoint_seq, NUM_KEYPOINTS, NUM_CHANNELS,
                            generator=generator)
    keypoints[..., 2] = 1.0
    return (torch.randn(batch, image_seq, config.image_dim, generator=generator),
            torch.ones(batch, image_seq), keypoints, torch.ones(batch, keypoint_seq),
            torch.randn(batch, config.text_dim, generator=generator), torch.ones(batch, 1))
