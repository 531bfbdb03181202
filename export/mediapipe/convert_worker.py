"""TFLite -> ONNX inside the conversion environment (TensorFlow + tf2onnx), nothing else.

Run by :mod:`export.mediapipe.buildenv` with that environment's Python, as a plain script:
it must not import hidemo (whose pins TensorFlow cannot share). Two steps:

1. Densify. Some MediaPipe models (``pose_detection``) store fp16 weights sparsely behind
   ``DENSIFY`` ops, which tf2onnx cannot convert. Each such op's output is a constant, so the
   TFLite interpreter computes it once (with the builtin kernels and *no* default delegate:
   XNNPACK reads DENSIFY outputs as zeros, a silently broken model), and the dense values
   replace the op in a rewritten flatbuffer.
2. Convert with ``tf2onnx.convert.from_tflite`` at the requested opset.

Usage: ``python convert_worker.py IN.tflite OUT.onnx --opset 17``; prints one JSON line
(versions, ops densified) on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def densify(source: str, target: str) -> int:
    """Write ``source`` to ``target`` with every DENSIFY op replaced by its dense constant;
    returns how many were replaced (0: ``target`` is a plain copy)."""
    import numpy as np
    import tensorflow as tf
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(source)
    densify_codes = {index for index, code in enumerate(model.operatorCodes)
                     if max(code.builtinCode, code.deprecatedBuiltinCode)
                     == schema.BuiltinOperator.DENSIFY}
    if not densify_codes:
        flatbuffer_utils.write_model(model, target)
        return 0
    interpreter = tf.lite.Interpreter(
        model_path=source,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType
        .BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        experimental_preserve_all_tensors=True)
    interpreter.allocate_tensors()
    for detail in interpreter.get_input_details():
        interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    interpreter.invoke()
    replaced = 0
    for subgraph_index, subgraph in enumerate(model.subgraphs):
        kept = []
        for operator in subgraph.operators:
            if operator.opcodeIndex not in densify_codes:
                kept.append(operator)
                continue
            if subgraph_index != 0:
                raise SystemExit("DENSIFY outside the main subgraph is not supported")
            sparse_index, dense_index = operator.inputs[0], operator.outputs[0]
            dense = interpreter.get_tensor(dense_index)
            if not np.any(dense):
                raise SystemExit(f"DENSIFY output {dense_index} read as all zeros: the "
                                 "interpreter did not run the builtin kernel")
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(dense.tobytes(), np.uint8)
            model.buffers.append(buffer)
            subgraph.tensors[dense_index].buffer = len(model.buffers) - 1
            # The sparse tensor is left unused; tf2onnx still reads every constant, and a
            # sparse buffer does not fit its dense shape, so it gets the dense data too.
            sparse = subgraph.tensors[sparse_index]
            sparse.sparsity = None
            sparse.buffer = len(model.buffers) - 1
            replaced += 1
        subgraph.operators = kept
    flatbuffer_utils.write_model(model, target)
    return replaced


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tflite")
    parser.add_argument("onnx")
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args()

    import onnx
    import tensorflow as tf
    import tf2onnx

    with tempfile.TemporaryDirectory() as scratch:
        dense_path = os.path.join(scratch, "dense.tflite")
        replaced = densify(args.tflite, dense_path)
        tf2onnx.convert.from_tflite(dense_path, opset=args.opset, output_path=args.onnx)
    print(json.dumps({"densified": replaced, "tensorflow": tf.__version__,
                      "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
                      "opset": args.opset}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
