"""Thin torch wrappers that give each backbone the engine contract.

Each wrapper takes the engine's inputs as positional tensors and returns a tuple in the
signature's output order, so ``torch.onnx.export`` and :class:`TorchEngine` see the same
function. This module imports torch at the top: import it only from source builders.
"""

from __future__ import annotations

import torch
from torch import nn


class FirstOutput(nn.Module):
    """An ultralytics DetectionModel returns ``(decoded, raw)`` in eval mode; keep ``decoded``."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor]:
        out = self.inner(images)
        return (out[0] if isinstance(out, (tuple, list)) else out,)


class DinoEmbedder(nn.Module):
    """DINOv2 at one fixed input size: CLS embedding and mean patch token.

    The checkpoint's position grid (518 px for the released models) is interpolated once
    here, at the engine's input size, and stored as the weights. Otherwise the tracer bakes a
    bicubic Resize into every exported graph ("always interpolate when tracing").
    """

    def __init__(self, backbone: nn.Module, image_size: int) -> None:
        super().__init__()
        embeddings = backbone.embeddings
        dim = embeddings.position_embeddings.shape[-1]
        patch = backbone.config.patch_size
        num_patches = (image_size // patch) ** 2
        with torch.no_grad():
            folded = embeddings.interpolate_pos_encoding(
                torch.zeros(1, num_patches + 1, dim), image_size, image_size
            ).detach().clone()
        embeddings.position_embeddings = nn.Parameter(folded)
        embeddings.interpolate_pos_encoding = _fixed_positions.__get__(embeddings)
        backbone.config.image_size = image_size
        self.backbone = backbone

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.backbone(pixel_values=pixels).last_hidden_state
        return hidden[:, 0], hidden[:, 1:].mean(dim=1)


def _fixed_positions(self: nn.Module, embeddings: torch.Tensor, height: int,
                     width: int) -> torch.Tensor:
    return self.position_embeddings


class MeanPooledEncoder(nn.Module):
    """BERT-family encoder with attention-masked mean pooling (sentence-transformers' recipe),
    optionally L2-normalised, so the engine outputs one vector per text."""

    def __init__(self, encoder: nn.Module, normalize: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor,
                attention_mask: torch.Tensor) -> tuple[torch.Tensor]:
        hidden = self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, p=2.0, dim=-1)
        return (pooled,)
