"""An engine manifest as Triton's model configuration (``config.pbtxt``).

The configuration is built as a ``model_config_pb2.ModelConfig`` message (Triton's
``model_config.proto``, compiled in tritonclient) and written with protobuf's text format,
so every field name and enum value is one the server's own parser accepts; nothing here
formats protobuf text by hand.

What goes in comes from :mod:`engines.serving.identity` (dtypes, dims, batch, identity
parameters) and the :class:`~engines.serving.settings.BatchingPolicy`. Two Triton rules are
applied here because the manifest cannot break them silently:

- a tensor with no dims left (a batched ``("batch",)`` or a scalar) is written as
  ``dims: [1]`` with an empty ``reshape``, Triton's form for it;
- a fixed size of 0 has no Triton ``dims`` (sizes are >= 1, or -1 for a variable one).

Example:
    >>> config = onnx_model_config(manifest, "detector", BatchingPolicy())  # doctest: +SKIP
    >>> print(config_text(config, source="detector.manifest.json"))  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engines.manifest import EngineManifest
from engines.serving.identity import (
    NotServable,
    batched,
    config_dtype,
    identity_parameters,
    triton_dims,
)
from engines.serving.settings import BatchingPolicy
from engines.spec import TensorSpec

if TYPE_CHECKING:
    from tritonclient.grpc import model_config_pb2

ONNX_PLATFORM = "onnxruntime_onnx"
PLAN_PLATFORM = "tensorrt_plan"


def onnx_model_config(manifest: EngineManifest, name: str,
                      policy: BatchingPolicy) -> model_config_pb2.ModelConfig:
    """The ``onnxruntime_onnx`` model of an engine, served as ``name``."""
    return _model_config(manifest, name, ONNX_PLATFORM, policy)


def plan_model_config(manifest: EngineManifest, name: str, policy: BatchingPolicy,
                      plan_files: dict[str, str]) -> model_config_pb2.ModelConfig:
    """The ``tensorrt_plan`` model of an engine: one plan file per compute capability
    (``{"8.6": "model_sm86.plan"}``), which Triton picks by the GPU it runs on."""
    config = _model_config(manifest, name, PLAN_PLATFORM, policy)
    for capability, file_name in sorted(plan_files.items()):
        config.cc_model_filenames[capability] = file_name
    return config


def config_text(config: model_config_pb2.ModelConfig, *, source: str) -> str:
    """``config.pbtxt``: the message in protobuf text format under a comment naming its
    source (the server's parser skips ``#`` comments)."""
    from google.protobuf import text_format

    header = (f"# Written by `hidemo engines export-triton` from {source}; export again "
              "rather than edit.\n")
    return header + text_format.MessageToString(config)


def _model_config(manifest: EngineManifest, name: str, platform: str,
                  policy: BatchingPolicy) -> model_config_pb2.ModelConfig:
    from tritonclient.grpc import model_config_pb2

    signature = manifest.signature
    is_batched = batched(signature)
    config = model_config_pb2.ModelConfig(name=name, platform=platform,
                                          max_batch_size=policy.max_batch_size if is_batched
                                          else 0)
    for spec in signature.inputs:
        _fill_tensor(config.input.add(), spec, is_batched, manifest.name)
    for spec in signature.outputs:
        _fill_tensor(config.output.add(), spec, is_batched, manifest.name)
    if is_batched:
        config.dynamic_batching.preferred_batch_size.extend(policy.preferred_batch_sizes)
        config.dynamic_batching.max_queue_delay_microseconds = policy.max_queue_delay_us
    group = config.instance_group.add()
    group.count = policy.instances
    group.kind = model_config_pb2.ModelInstanceGroup.Kind.Value(policy.kind)
    for key, value in identity_parameters(manifest).items():
        config.parameters[key].string_value = value
    return config


def _fill_tensor(tensor: model_config_pb2.ModelInput | model_config_pb2.ModelOutput,
                 spec: TensorSpec, is_batched: bool, engine: str) -> None:
    from tritonclient.grpc import model_config_pb2

    if any(size == 0 for size in spec.shape):
        raise NotServable(f"engine {engine!r}: tensor {spec.name!r} has a fixed size 0 in "
                          f"{spec.shape}; Triton dims are >= 1 (or -1 for a variable size)")
    try:
        dtype = config_dtype(spec.dtype)
    except NotServable as exc:
        raise NotServable(f"engine {engine!r}: tensor {spec.name!r}: {exc}") from None
    tensor.name = spec.name
    tensor.data_type = model_config_pb2.DataType.Value(dtype)
    dims = triton_dims(spec.shape, batched=is_batched)
    if dims:
        tensor.dims.extend(dims)
    else:  # nothing left per item: Triton's form is dims [1] reshaped to a scalar
        tensor.dims.append(1)
        tensor.reshape.SetInParent()
