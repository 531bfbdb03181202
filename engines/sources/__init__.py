"""Source models: the torch modules behind each engine, with real weights when present.

A source is the parity reference for its export and the model behind the torch backend.
Each builder follows the real loading path first (``YOLO("yolo11x.pt")``,
``from_pretrained("facebook/dinov2-base")``) and, only when no weights exist on this
machine, builds the same architecture from its config with seeded random weights, says so
in a warning, and marks the source ``random-init`` so that every manifest and every output
that depends on it carries the mark.

Imports of torch, ultralytics and transformers happen inside the builders: the live
pipeline on onnxruntime never pays for them.
"""

from __future__ import annotations

from engines.sources.base import SourceModel, WeightsLocator
from engines.sources.roles import ROLES, build_source

__all__ = ["ROLES", "SourceModel", "WeightsLocator", "build_source"]
