"""A keypoint engine on the TFLite interpreter, from the very ``.tflite`` it was converted from.

The keypoint engines are MediaPipe's own TFLite models converted to ONNX. On a CPU the
TFLite interpreter (with its XNNPACK delegate) is at par with onnxruntime on some of them and
faster on others, so it is a backend to measure, not to assume away: ``hidemo bench
engines`` times both and the keypoint estimator's ``auto`` choice reads the result.

The source file is the one the manifest names and hashes (``verify`` refuses a changed
one); outputs are renamed as the manifest's ``config["outputs"]`` says, so callers see the
same names as on every other backend. TFLite models have a fixed batch of 1: a batch runs
item by item (on a CPU batching gains nothing).

A model with DENSIFY ops (sparse weights) would be silently broken on XNNPACK, which reads
their outputs as zeros. Its DENSIFY ops are folded into constants in memory when it opens
(:mod:`engines.backends.tflite_densify`), and the folded model runs on XNNPACK only after
it gave the builtin kernels' outputs on a test input; otherwise (or as the parity gate's
reference) the model runs on the builtin kernels, 4x slower for BlazePose's detector.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from engines.backends.tflite_densify import DensifyError, densify
from engines.engine import Engine
from engines.manifest import EngineManifest
from engines.spec import Signature

log = logging.getLogger(__name__)

DENSE_PARITY = 1e-4
"""Largest difference, relative to max(1, |output|), the folded model may show against the
builtin kernels on the test input before it is trusted on XNNPACK (the engines' own
parity tolerance)."""


def _interpreter_api() -> Any:
    try:
        from ai_edge_litert import interpreter
    except ImportError as error:
        raise ImportError("the tflite backend needs 'ai-edge-litert==2.3.*'") from error
    return interpreter


def _builtin_interpreter(tflite: Path | bytes, threads: int = 0) -> Any:
    """An interpreter on the builtin kernels only (no default delegate)."""
    api = _interpreter_api()
    return api.Interpreter(
        **_model(tflite), num_threads=threads if threads > 0 else None,
        experimental_op_resolver_type=api.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)


def _xnnpack_interpreter(tflite: Path | bytes, threads: int = 0) -> Any:
    """An interpreter with the default delegate (XNNPACK on a CPU)."""
    return _interpreter_api().Interpreter(**_model(tflite),
                                          num_threads=threads if threads > 0 else None)


def _model(tflite: Path | bytes) -> dict[str, Any]:
    return ({"model_content": tflite} if isinstance(tflite, bytes)
            else {"model_path": str(tflite)})


def _has_densify(interpreter: Any) -> bool:
    details = getattr(interpreter, "_get_ops_details", None)
    if details is None:  # older interpreters: be safe, no delegate
        return True
    return any(op.get("op_name") == "DENSIFY" for op in details())


def output_shapes(tflite: Path) -> dict[str, tuple[int, ...]]:
    """The ``.tflite`` file's outputs: its own names -> shapes (batch 1)."""
    details = _builtin_interpreter(tflite).get_output_details()
    return {d["name"]: tuple(int(v) for v in d["shape"]) for d in details}


def _folded(name: str, tflite: Path, builtin: Any, threads: int) -> tuple[Any, int] | None:
    """An XNNPACK interpreter on ``tflite`` with its DENSIFY ops folded, and how many there
    were; None (logged) when folding fails or the folded model's outputs on a test input
    differ from the builtin kernels' (the caller keeps the builtin interpreter)."""
    try:
        dense, folded = densify(tflite.read_bytes())
        interpreter = _xnnpack_interpreter(dense, threads)
        difference = _difference(builtin, interpreter)
    except (DensifyError, ValueError, RuntimeError) as error:
        log.warning("engine %s: its DENSIFY ops could not be folded (%s); it runs on the "
                    "builtin TFLite kernels (about 4x slower)", name, error)
        return None
    if difference > DENSE_PARITY:
        log.warning("engine %s: folded for XNNPACK it differs from the builtin kernels by "
                    "%.3g (> %g); it runs on the builtin kernels (about 4x slower)", name,
                    difference, DENSE_PARITY)
        return None
    return interpreter, folded


def _difference(reference: Any, candidate: Any) -> float:
    """Largest output difference of ``candidate`` against ``reference`` on one seeded
    input, relative to max(1, |reference|), over every output."""
    reference.allocate_tensors()
    candidate.allocate_tensors()
    detail = reference.get_input_details()[0]
    sample = np.random.default_rng(0).uniform(-1.0, 1.0, detail["shape"]).astype(
        detail["dtype"])
    worst = 0.0
    outputs = []
    for interpreter in (reference, candidate):
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], sample)
        interpreter.invoke()
        outputs.append({d["name"]: interpreter.get_tensor(d["index"]).astype(np.float64)
                        for d in interpreter.get_output_details()})
    want, got = outputs
    if set(want) != set(got):
        return float("inf")
    for output, value in want.items():
        scale = max(1.0, float(np.abs(value).max()))
        worst = max(worst, float(np.abs(got[output] - value).max()) / scale)
    return worst


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
        self.densified = 0
        """DENSIFY ops folded into constants so the model runs on XNNPACK (0: none)."""
        if reference:
            self._delegate = "builtin"
        elif not _has_densify(interpreter):
            self._delegate = "xnnpack"
            interpreter = _xnnpack_interpreter(tflite, threads)
        else:
            folded = _folded(name, tflite, interpreter, threads)
            self._delegate = "builtin" if folded is None else "xnnpack"
            if folded is not None:
                interpreter, self.densified = folded
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
