"""An ONNX file as a torch module (onnx2torch): the keypoint engines on torch, CUDA included.

The keypoint engines are converted from TFLite, so there is no torch source to rebuild; on
a GPU host where onnxruntime-gpu cannot be installed, torch CUDA is how they run batched.
onnx2torch turns the graph into an ``nn.Module`` with the same inputs and outputs.

onnx2torch imports ``torchvision`` at import time (for its NonMaxSuppression and RoiAlign
converters). PyPI's torchvision does not load beside the CPU torch wheel, so where it is
missing a placeholder stands in whose two functions refuse to run; the keypoint graphs use
neither operator, and a graph that did would fail loudly, not silently.
"""

from __future__ import annotations

import importlib
import sys
import types
import warnings
from pathlib import Path
from typing import Any


def _refuse(*_: Any, **__: Any) -> Any:
    raise NotImplementedError("this graph needs torchvision (NMS/RoiAlign), which is not "
                              "importable here; run it on onnxruntime instead")


def _placeholder_torchvision() -> None:
    """Register a ``torchvision`` whose ``ops`` refuse to run (see the module docstring)."""
    package = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    for name in ("nms", "roi_align", "box_convert"):
        setattr(ops, name, _refuse)
    package.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"] = package
    sys.modules["torchvision.ops"] = ops


def import_onnx2torch() -> Any:
    """``onnx2torch.convert``, importable whether or not torchvision loads.

    The placeholder lives only while onnx2torch imports (it keeps the two functions it
    took): left in ``sys.modules`` it would pass for a real torchvision to every later
    import check (transformers' asks for its ``__spec__``, which a placeholder lacks)."""
    placeholder = False
    try:
        importlib.import_module("torchvision")
    except Exception:  # noqa: BLE001 - a broken torchvision raises more than ImportError
        _forget_torchvision()
        _placeholder_torchvision()
        placeholder = True
    try:
        from onnx2torch import convert
    except ImportError as error:
        raise ImportError("running a converted engine on torch needs onnx2torch "
                          "(pip install 'onnx2torch==1.5.*')") from error
    finally:
        if placeholder:
            _forget_torchvision()
    quiet_onnx2torch()
    return convert


def _forget_torchvision() -> None:
    for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
        del sys.modules[name]


ONNX2TORCH_SLICE_WARNING = "Using a non-tuple sequence for multidimensional indexing"
"""The start of torch's deprecation warning that onnx2torch's Slice converter raises on
every call: the library's to fix, not the user's, and our outputs are checked against the
engine's own reference by the parity tests."""


def quiet_onnx2torch() -> None:
    """Filter, at its source, the deprecation warning onnx2torch's converted modules raise
    (once per process it would still reach every stage log and the bench console)."""
    warnings.filterwarnings("ignore", message=ONNX2TORCH_SLICE_WARNING, category=UserWarning,
                            module=r"onnx2torch\.")


def onnx_module(onnx_path: Path) -> Any:
    """The ONNX file as an ``nn.Module`` (positional inputs, outputs in graph order)."""
    import onnx

    return import_onnx2torch()(onnx.load(str(onnx_path)))
