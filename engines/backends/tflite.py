"""A keypoint engine on the TFLite interpreter, from the very ``.tflite`` it was converted from.

The keypoint engines are MediaPipe's own TFLite models converted to ONNX. On a CPU the
TFLite interpreter (with its XNNPACK delegate) is at par with onnxruntime on some of them and
faster on others, so it is a backend to measure, not to assume away: ``hidemo bench
engines`` times both and the keypoint estimator's ``auto`` choice reads the result.

The source file is the one the manifest names and hashes (``verify`` refuses a changed
one); outputs are renamed as the manifest's ``config["outputs"]`` says, so callers see the
same names as on every other backend. TFLite models have a fixed batch of 1: a batch runs
item by item (on a CPU batching gains nothing). A model with DENSIFY ops runs without the
default delegate: XNNPACK reads their outputs as zeros, a silently broken model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engines.engine import Engine
from engines.manifest import EngineManifest
from engines.spec import Signature


def _interpreter_api() -> Any:
    try:
        from ai_edge_litert import interpreter
    except ImportError as error:
        raise ImportError("the tflite backend needs 'ai-edge-litert==2.3.*'") from error
    return interpreter


def _builtin_interpreter(tflite: Path, threads: int = 0) -> Any:
    """An interpreter on the builtin kernels only (no default delegate)."""
    api = _interpreter_api()
    return api.Interpreter(
        model_path=str(tflite), num_threads=threads if threads > 0 else None,
        experimental_op_resolver_type=api.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def _has_densify(interpreter: Any) -> bool:
    details = getattr(interpreter, "_get_ops_details", None)
    if details is None:  # older interpreters: be safe, no delegate
        return True
    return any(op.get("op_name") == "DENSIFY" for op in details())


def output_shapes(tflite: Path) -> dict[str, tuple[int, ...]]:
    """The ``.tflite`` file's outputs: its own names -> shapes (batch 1)."""
    details = _builtin_interpreter(tflite).get_output_details()
    return {d["name"]: tuple(int(v) for v in d["shape"]) for d in details}


class TfliteEngine(Engine):
    """``run`` loops the batch through one interpreter; outputs renamed to the engine's.

    ``reference=True`` keeps to the builtin kernels (no XNNPACK): the parity gate's
    reference, bit-exact with TFLite's own kernels.
    """

    def __init__(self, name: str, tflite: Path, signature: Signature,
                 outputs: dict[str, str], *, threads: int = 0,
                 reference: bool = False) -> None:
        super().__init__(name, signature, random_weights=False)
        interpreter = _builtin_interpreter(tflite, threads)
        if reference or _has_densify(interpreter):
            self._delegate = "builtin"
        else:
            self._delegate = "xnnpack"
            interpreter = _interpreter_api().Interpreter(
                model_path=str(tflite), num_threads=threads if threads > 0 else None)
        self._interpreter = interpreter
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        by_name = {d["name"]: d["index"] for d in self._interpreter.get_output_details()}
        missing = sorted(set(outputs) - set(by_name))
        if missing:
            raise ValueError(f"{tflite} has no output(s) {missing}; it has {sorted(by_name)}")
        self._outputs = {new: by_name[old] for old, new in outputs.items()}

    @classmethod
    def from_manifest(cls, manifest: EngineManifest, threads: int = 0) -> TfliteEngine:
        if not manifest.source.path or "outputs" not in manifest.config:
            raise ValueError(f"engine {manifest.name!r} was not converted from a .tflite file; "
                             "the tflite backend runs only the keypoint engines")
        return cls(manifest.name, Path(manifest.source.path), manifest.signature,
                   dict(manifest.config["outputs"]), threads=threads)

    @property
    def backend(self) -> str:
        return f"tflite:{self._delegate}"

    @property
    def device(self) -> str:
        return "cpu"

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        (image,) = feeds.values()
        results: dict[str, list[np.ndarray]] = {name: [] for name in self._outputs}
        for index in range(image.shape[0]):
            self._interpreter.set_tensor(self._input, np.ascontiguousarray(image[index:index + 1]))
            self._interpreter.invoke()
            for name, tensor in self._outputs.items():
                results[name].append(self._interpreter.get_tensor(tensor).copy())
        return {name: (np.concatenate(parts) if parts else
                       np.zeros((0, *self._shape(name)[1:]), np.float32))
                for name, parts in results.items()}

    def _shape(self, name: str) -> tuple[int, ...]:
        spec = next(s for s in self.signature.outputs if s.name == name)
        return tuple(d if isinstance(d, int) else 1 for d in spec.shape)

    def close(self) -> None:
        self._interpreter = None
