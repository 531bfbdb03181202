"""The parity gate: an exported engine must agree with its torch source on the same input.

Checked at two shapes per engine (e.g. batch 1 and batch 3, sequence 8 and 37): a graph
that baked a trace-time size into a Reshape passes at one shape and fails at the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.backends.onnxruntime import OnnxRuntimeEngine
from engines.backends.torch_eager import TorchEngine
from engines.engine import Engine
from engines.manifest import ParityResult
from engines.sources import SourceModel

FP32_TOLERANCE = 1e-4


def compare(reference: Engine, candidate: Engine, feeds_list: list[dict[str, np.ndarray]],
            tolerance: float) -> ParityResult:
    """Max abs difference per output over every feed; passes when all are within tolerance."""
    worst: dict[str, float] = {}
    shapes = []
    for feeds in feeds_list:
        expected = reference.run(feeds)
        got = candidate.run(feeds)
        for name, want in expected.items():
            have = got[name]
            if have.shape != want.shape:
                diff = float("inf")
            else:
                diff = float(np.max(np.abs(have.astype(np.float64) - want.astype(np.float64))))
            if not np.isfinite(diff):
                diff = float("inf")
            worst[name] = max(worst.get(name, 0.0), diff)
        shapes.append({name: list(a.shape) for name, a in feeds.items()})
    passed = all(d <= tolerance for d in worst.values())
    return ParityResult(passed=passed, tolerance=tolerance, max_abs_diff=worst,
                        shapes_checked=shapes, reference=reference.backend)


def check_onnx_parity(source: SourceModel, onnx_path: Path,
                      tolerance: float = FP32_TOLERANCE) -> ParityResult:
    """Run ``onnx_path`` on onnxruntime (CPU) and ``source.module`` in torch eager; compare."""
    reference = TorchEngine(source.name, source.module, source.signature,
                            random_weights=source.random_weights)
    candidate = OnnxRuntimeEngine(source.name, onnx_path, source.signature,
                                  random_weights=source.random_weights)
    try:
        feeds = [source.sample_feeds(sizes) for sizes in source.parity_shapes]
        return compare(reference, candidate, feeds, tolerance)
    finally:
        candidate.close()
