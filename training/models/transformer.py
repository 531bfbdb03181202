"""A small pre-norm Transformer encoder written out by hand, and masked pooling.

Why not ``nn.TransformerEncoder`` / ``nn.MultiheadAttention``: torch's TorchScript-based
ONNX exporter (the one ``export/`` uses) bakes the trace-time sequence length into their
Reshapes, so the engine fails at any other window length. Here every reshape keeps the
batch and time axes symbolic (``unflatten``/``flatten`` of the feature axis only), and the
mask enters as an additive bias ``(mask - 1) * 1e4``: a fully masked sequence then gives a
uniform softmax instead of NaN (``-inf`` bias would give 0/0).

Example:
    >>> encoder = TemporalEncoder(d_model=16, layers=1, heads=2, ff_mult=2, dropout=0.0,
    ...                           max_len=32)
    >>> encoder(torch.zeros(2, 5, 16), torch.ones(2, 5)).shape
    torch.Size([2, 16])
"""

from __future__ import annotations

import math

import torch
from torch import nn

MASK_BIAS = 1e4
"""Added (negated) to masked keys' scores: large enough to zero them after softmax, small
enough to stay finite in fp16 (max 65504)."""


class SelfAttention(nn.Module):
    """Multi-head self-attention: softmax(Q K^T / sqrt(d) + (mask - 1) * 1e4) V."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, d), mask (B, T) of 0/1 -> (B, T, d)."""
        qkv = self.qkv(x).unflatten(-1, (3, self.heads, self.head_dim))  # B,T,3,H,Dh
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B,H,T,Dh
        scores = q @ k.transpose(-1, -2) / math.sqrt(self.head_dim)
        scores = scores + (mask[:, None, None, :] - 1.0) * MASK_BIAS
        weights = self.dropout(scores.softmax(dim=-1))
        context = (weights @ v).transpose(1, 2).flatten(2)  # B,T,d
        return self.out(context)


class EncoderLayer(nn.Module):
    """Pre-norm block: x + attn(LN(x)), then x + FF(LN(x))."""

    def __init__(self, d_model: int, heads: int, ff_mult: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(d_model)
        self.attn = SelfAttention(d_model, heads, dropout)
        self.norm2 = nn.LayerNorm(d_model)
        self.ff = nn.Sequential(nn.Linear(d_model, ff_mult * d_model), nn.GELU(),
                                nn.Dropout(dropout), nn.Linear(ff_mult * d_model, d_model))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x), mask))
        return x + self.dropout(self.ff(self.norm2(x)))


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x (B, T, d) over the slots where mask (B, T) is 1; zeros where none is.

    The count is clamped to 1, so an all-masked row gives 0, never 0/0.
    """
    weights = mask.unsqueeze(-1)
    return (x * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def present(mask: torch.Tensor) -> torch.Tensor:
    """(B, T) mask -> (B, 1): 1 where the sequence has at least one unmasked slot."""
    return mask.amax(dim=1, keepdim=True).clamp(0.0, 1.0)


class TemporalEncoder(nn.Module):
    """Learned positions (sliced to T) + pre-norm layers + final LN + masked mean pool.

    Sequences up to ``max_len`` slots; each slot is one grid step of its modality's rate.
    """

    def __init__(self, d_model: int, layers: int, heads: int, ff_mult: int, dropout: float,
                 max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.positions = nn.Parameter(torch.randn(1, max_len, d_model) * 0.02)
        self.layers = nn.ModuleList(EncoderLayer(d_model, heads, ff_mult, dropout)
                                    for _ in range(layers))
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, d), mask (B, T) -> pooled (B, d); zeros for an all-masked row."""
        x = self.dropout(x + self.positions[:, : x.shape[1]])
        for layer in self.layers:
            x = layer(x, mask)
        return masked_mean(self.norm(x), mask)
