"""What a served model must say about itself: names, dtypes, dims, batch, and identity.

One place maps an engine manifest to Triton's vocabulary, so the model repository
(``hidemo engines export-triton``), the server (``hidemo serve-engines``) and the client
backend agree by construction:

- dtypes: numpy names to Triton's wire names (``FP32``) and config names (``TYPE_FP32``);
- dims: a signature whose inputs and outputs all lead with the ``batch`` axis is served with
  ``max_batch_size > 0`` and dims without that axis; any other named (dynamic) axis is -1;
- identity: the manifest fields that make an engine *this* engine (ONNX sha256, source,
  parity, random weights) as string parameters under the ``hidemo.`` prefix.

Example:
    >>> triton_dims(("batch", 3, 224, 224), batched=True)
    [3, 224, 224]
    >>> triton_dims(("batch", "sequence"), batched=True)
    [-1]
"""

from __future__ import annotations

from collections.abc import Mapping

from engines.manifest import EngineManifest
from engines.spec import Dim, Signature

BATCH_AXIS = "batch"
PARAMETER_PREFIX = "hidemo."

WIRE_DTYPES: dict[str, str] = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32",
    "uint64": "UINT64", "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64",
}
"""numpy dtype name -> Triton tensor datatype (the inference protocol's names)."""


class NotServable(ValueError):
    """An engine whose signature Triton cannot describe (a dtype it lacks)."""


def wire_dtype(numpy_name: str) -> str:
    """Triton's datatype for a numpy dtype name (``float32`` -> ``FP32``)."""
    try:
        return WIRE_DTYPES[numpy_name]
    except KeyError:
        raise NotServable(f"dtype {numpy_name!r} has no Triton datatype; servable dtypes: "
                          f"{sorted(WIRE_DTYPES)}") from None


def config_dtype(numpy_name: str) -> str:
    """The ``data_type`` enum name in ``config.pbtxt`` (``float32`` -> ``TYPE_FP32``)."""
    return f"TYPE_{wire_dtype(numpy_name)}"


def batched(signature: Signature) -> bool:
    """True when every input and output leads with the ``batch`` axis: Triton then owns
    that axis (``max_batch_size > 0``) and its dynamic batcher may join requests on it."""
    tensors = (*signature.inputs, *signature.outputs)
    return bool(tensors) and all(t.shape and t.shape[0] == BATCH_AXIS for t in tensors)


def triton_dims(shape: tuple[Dim, ...], *, batched: bool) -> list[int]:
    """Triton ``dims``: the batch axis left out when Triton owns it, named axes as -1."""
    rest = shape[1:] if batched else shape
    return [-1 if isinstance(d, str) else int(d) for d in rest]


def model_name(engine_name: str, prefix: str = "") -> str:
    """The name an engine is served under: ``prefix + engine name``."""
    return f"{prefix}{engine_name}"


def identity_parameters(manifest: EngineManifest) -> dict[str, str]:
    """The manifest's identity as Triton model parameters (strings, ``hidemo.`` keys).

    These are what the client compares before its first frame: a served model built from
    another ONNX file, another source, or one that failed parity is not this engine.
    """
    return {
        f"{PARAMETER_PREFIX}engine": manifest.name,
        f"{PARAMETER_PREFIX}profile": manifest.profile,
        f"{PARAMETER_PREFIX}model": manifest.model,
        f"{PARAMETER_PREFIX}onnx_sha256": manifest.onnx_sha256,
        f"{PARAMETER_PREFIX}source_sha256": manifest.source.sha256,
        f"{PARAMETER_PREFIX}parity_passed": "true" if manifest.parity.passed else "false",
        f"{PARAMETER_PREFIX}parity_worst": repr(manifest.parity.worst),
        f"{PARAMETER_PREFIX}random_weights": "true" if manifest.random_weights else "false",
    }


def identity_mismatches(expected: Mapping[str, str], served: Mapping[str, str]) -> list[str]:
    """Each identity key whose served value differs from the manifest's, said plainly."""
    return [f"{key}: served {served.get(key)!r}, manifest {value!r}"
            for key, value in expected.items() if served.get(key) != value]
