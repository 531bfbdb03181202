"""Fold a TFLite model's DENSIFY ops into plain constants, so XNNPACK can run the model.

Some MediaPipe models (``pose_detection``) store fp16 weights sparsely behind ``DENSIFY``
ops. Each such op's output is a constant, but XNNPACK reads it as zeros (a silently broken
model), so such a model had to run on TFLite's builtin kernels, several times slower than
the same weights dense on XNNPACK. Here the builtin interpreter computes every DENSIFY
output once, and a rewritten flatbuffer holds those dense values where the ops were. Two users:

- the ``tflite`` backend (:mod:`engines.backends.tflite`), in memory, when it opens such a
  model on XNNPACK;
- the keypoint engine build (:mod:`export.mediapipe.buildenv`), before tf2onnx, which
  cannot convert DENSIFY either.

Example:
    >>> dense, folded = densify(Path("pose_detection.tflite").read_bytes())  # doctest: +SKIP
    >>> folded
    38
"""

from __future__ import annotations

from typing import Any

import numpy as np

FILE_IDENTIFIER = b"TFL3"
"""The TFLite flatbuffer schema's file identifier (its ``file_identifier``)."""


class DensifyError(ValueError):
    """The model's DENSIFY ops could not be folded (the message says why)."""


def _litert() -> tuple[Any, Any]:
    try:
        from ai_edge_litert import interpreter, schema_py_generated
    except ImportError as error:
        raise ImportError("folding DENSIFY ops needs 'ai-edge-litert==2.3.*'") from error
    return interpreter, schema_py_generated


def _parse(model: bytes, schema: Any) -> Any:
    """The object tree of the flatbuffer ``model``; :class:`DensifyError` if it is none."""
    try:
        tree = schema.ModelT.InitFromPackedBuf(model, 0)
        list(tree.subgraphs)
        list(tree.operatorCodes)
    except Exception as error:  # a malformed buffer fails in many ways
        raise DensifyError(f"not a TFLite flatbuffer ({type(error).__name__}: {error})"
                           ) from error
    return tree


def _densify_codes(model: Any, schema: Any) -> set[int]:
    return {index for index, code in enumerate(model.operatorCodes)
            if max(code.builtinCode, code.deprecatedBuiltinCode)
            == schema.BuiltinOperator.DENSIFY}


def densify(model: bytes) -> tuple[bytes, int]:
    """``model`` with every DENSIFY op replaced by its dense constant, and how many were
    replaced (0: ``model`` itself, unchanged).

    The sparse tensors stay in the graph, unused, holding the dense data too (tf2onnx reads
    every constant, and a sparse buffer does not fit its dense shape). Raises
    :class:`DensifyError` for bytes that are no TFLite model, a DENSIFY outside the main
    subgraph, or one whose output the interpreter left all zeros.
    """
    interpreter_api, schema = _litert()
    tree = _parse(model, schema)
    codes = _densify_codes(tree, schema)
    if not codes:
        return model, 0
    interpreter = interpreter_api.Interpreter(
        model_content=model, experimental_preserve_all_tensors=True,
        experimental_op_resolver_type=interpreter_api.OpResolverType
        .BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    replaced = 0
    for subgraph_index, subgraph in enumerate(tree.subgraphs):
        kept = []
        for operator in subgraph.operators:
            if operator.opcodeIndex not in codes:
                kept.append(operator)
                continue
            if subgraph_index != 0:
                raise DensifyError("DENSIFY outside the main subgraph is not supported")
            sparse_index, dense_index = operator.inputs[0], operator.outputs[0]
            dense = interpreter.get_tensor(dense_index)
            if not np.any(dense):
                raise DensifyError(f"DENSIFY output {dense_index} read as all zeros: the "
                                   "interpreter did not run the builtin kernel")
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(dense.tobytes(), np.uint8)
            tree.buffers.append(buffer)
            subgraph.tensors[dense_index].buffer = len(tree.buffers) - 1
            sparse = subgraph.tensors[sparse_index]
            sparse.sparsity = None
            sparse.buffer = len(tree.buffers) - 1
            replaced += 1
        subgraph.operators = kept
    return _pack(tree), replaced


def _pack(tree: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(tree.Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())
