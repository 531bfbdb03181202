"""torch -> ONNX, with the exporter that suits each model.

YOLO goes through ultralytics' own exporter (it knows its Detect head's export mode);
DINOv2 and the text encoder go through torch's TorchScript-based exporter, which gives a
faster DINOv2 graph in ONNX Runtime than the dynamo exporter here, handles their dynamic
batch and sequence axes, and writes a single self-contained file.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import warnings
from pathlib import Path

from engines.sources import SourceModel

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17


def export_onnx(source: SourceModel, path: Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write ``source`` as ONNX to ``path`` with its signature's names and dynamic axes."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    if source.exporter == "ultralytics":
        return _export_ultralytics(source, path, opset)
    return _export_torch(source, path, opset)


def _export_ultralytics(source: SourceModel, path: Path, opset: int) -> Path:
    yolo = source.native
    imgsz = source.signature.inputs[0].shape[-1]
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        # The exporter writes beside its checkpoint, or in the cwd for a yaml: a scratch cwd
        # keeps a failed export from littering the user's folder.
        # fp32 is the exporter's default; no `half=False`: newer ultralytics warns that
        # `half` is deprecated (for `quantize`), which older releases do not know
        written = yolo.export(format="onnx", imgsz=imgsz, dynamic=True, simplify=False,
                              opset=opset, device="cpu", verbose=False)
        shutil.move(str(Path(tmp) / written) if not Path(written).is_absolute()
                    else str(written), path)
    return path


def _export_torch(source: SourceModel, path: Path, opset: int) -> Path:
    import torch

    signature = source.signature
    sizes = {axis: 2 for spec in signature.inputs for axis in spec.dynamic_axes.values()}
    if "sequence" in sizes:
        sizes["sequence"] = 16
    feeds = source.sample_feeds(sizes)
    args = tuple(torch.from_numpy(feeds[name]) for name in signature.input_names)
    dynamic_axes = {t.name: t.dynamic_axes for t in signature.inputs + signature.outputs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python ints in HF code
        torch.onnx.export(
            source.module,
            args,
            str(path),
            input_names=signature.input_names,
            output_names=signature.output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    return path
