"""Keypoint encoders: per-frame features from the 137-point skeleton, then time.

Both encoders compute the inter-frame offsets inside the model (so the exported engine
has them and the live pipeline feeds raw normalised keypoints only): ``kp[t] - kp[t-1]``
in x and y, zero at ``t = 0``, where either frame is masked, and where either frame lacks
the joint (confidence 0), so a joint that appears or vanishes is not a jump from the origin.

- :class:`KeypointEncoder` (the design's encoder): three streams, body (25 joints), face
  (70) and hands (42, both), each a per-frame MLP over its joints' (x, y, conf, dx, dy);
  the three are fused to ``d_model`` and a Transformer runs over time.
- :class:`GraphKeypointEncoder` (ablation baseline): two graph convolutions per frame over
  the skeleton (:data:`SKELETON_EDGES`, symmetric-normalised adjacency with self loops),
  mean-pooled per stream, fused, then the same temporal Transformer.
"""

from __future__ import annotations

import torch
from torch import nn

from engines.adapters.openpose_layout import (
    BODY,
    FACE,
    LEFT_HAND,
    NUM_KEYPOINTS,
    RIGHT_HAND,
    SKELETON_EDGES,
)
from training.models.config import ClassifierConfig
from training.models.transformer import TemporalEncoder

POINT_FEATURES = 5
"""Per joint and frame: x, y, confidence, dx, dy."""

STREAMS: dict[str, tuple[int, int]] = {
    "body": (BODY.start, BODY.stop),
    "face": (FACE.start, FACE.stop),
    "hands": (LEFT_HAND.start, RIGHT_HAND.stop),  # left and right are contiguous
}
"""Row ranges of each stream in the 137-point layout."""


def point_features(keypoints: torch.Tensor, mask: torch.Tensor,
                   offset_scale: float = 1.0) -> torch.Tensor:
    """(B, T, 137, 3) keypoints and (B, T) frame mask -> (B, T, 137, 5) with offsets.

    Masked frames are zeroed (whatever the caller left in them), so padding never leaks.
    Offsets are multiplied by ``offset_scale`` (see ``ClassifierConfig.offset_scale``).
    """
    frame = mask[:, :, None, None]
    keypoints = keypoints * frame
    seen = (keypoints[..., 2:3] > 0).to(keypoints.dtype) * frame  # B,T,137,1
    previous = torch.cat([keypoints[:, :1], keypoints[:, :-1]], dim=1)
    seen_before = torch.cat([torch.zeros_like(seen[:, :1]), seen[:, :-1]], dim=1)
    offsets = (keypoints[..., :2] - previous[..., :2]) * seen * seen_before * offset_scale
    return torch.cat([keypoints, offsets], dim=-1)


def _stream_mlp(joints: int, d_model: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(joints * POINT_FEATURES, 2 * d_model), nn.GELU(),
                         nn.Dropout(dropout), nn.Linear(2 * d_model, d_model))


class KeypointEncoder(nn.Module):
    """Body / face / hands MLPs per frame, fused, then a temporal Transformer -> (B, d)."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        d = config.d_model
        self.offset_scale = config.offset_scale
        self.streams = nn.ModuleDict({name: _stream_mlp(hi - lo, d, config.dropout)
                                      for name, (lo, hi) in STREAMS.items()})
        self.fuse = nn.Sequential(nn.LayerNorm(3 * d), nn.Linear(3 * d, d))
        self.temporal = TemporalEncoder(d, config.layers, config.heads, config.ff_mult,
                                        config.dropout, config.max_len)

    def forward(self, keypoints: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        points = point_features(keypoints, mask, self.offset_scale)
        parts = [mlp(points[:, :, lo:hi].flatten(2))
                 for (lo, hi), mlp in zip(STREAMS.values(), self.streams.values(), strict=True)]
        return self.temporal(self.fuse(torch.cat(parts, dim=-1)), mask)


def normalized_adjacency(edges: tuple[tuple[int, int], ...] = SKELETON_EDGES,
                         nodes: int = NUM_KEYPOINTS) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2 of the undirected skeleton (Kipf and Welling's GCN)."""
    adjacency = torch.eye(nodes)
    for i, j in edges:
        adjacency[i, j] = adjacency[j, i] = 1.0
    scale = adjacency.sum(dim=1).rsqrt()
    return scale[:, None] * adjacency * scale[None, :]


class GraphConv(nn.Module):
    """One GCN layer per frame: A_hat X W, then GELU. x (B, T, 137, C_in)."""

    def __init__(self, adjacency: torch.Tensor, c_in: int, c_out: int) -> None:
        super().__init__()
        self.register_buffer("adjacency", adjacency, persistent=False)
        self.linear = nn.Linear(c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.adjacency @ self.linear(x))


class GraphKeypointEncoder(nn.Module):
    """Ablation baseline: per-frame GCN over the skeleton, per-stream pooling, then time."""

    def __init__(self, config: ClassifierConfig, hidden: int | None = None) -> None:
        super().__init__()
        d = config.d_model
        self.offset_scale = config.offset_scale
        hidden = hidden or max(16, d // 2)
        adjacency = normalized_adjacency()
        self.gcn = nn.Sequential(GraphConv(adjacency, POINT_FEATURES, hidden),
                                 GraphConv(adjacency, hidden, hidden))
        self.fuse = nn.Sequential(nn.LayerNorm(3 * hidden), nn.Linear(3 * hidden, d))
        self.temporal = TemporalEncoder(d, config.layers, config.heads, config.ff_mult,
                                        config.dropout, config.max_len)

    def forward(self, keypoints: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        points = point_features(keypoints, mask, self.offset_scale)
        seen = (points[..., 2:3] > 0).to(points.dtype)
        nodes = self.gcn(points)  # B,T,137,hidden
        parts = []
        for lo, hi in STREAMS.values():
            weights = seen[:, :, lo:hi]
            parts.append((nodes[:, :, lo:hi] * weights).sum(2)
                         / weights.sum(2).clamp(min=1.0))
        return self.temporal(self.fuse(torch.cat(parts, dim=-1)), mask)
