"""TFLite -> ONNX inside the conversion environment (TensorFlow + tf2onnx), nothing else.

Run by :mod:`export.mediapipe.buildenv` with that environment's Python, as a plain script:
it must not import hidemo (whose pins TensorFlow cannot share). It converts with
``tf2onnx.convert.from_tflite`` at the requested opset. The model it is given has no
DENSIFY ops left (tf2onnx cannot convert them): ``buildenv`` folded them beforehand
(:mod:`engines.backends.tflite_densify`).

Usage: ``python convert_worker.py IN.tflite OUT.onnx --opset 17``; prints one JSON line
(versions) on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tflite")
    parser.add_argument("onnx")
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args()

    import onnx
    import tensorflow as tf
    import tf2onnx

    tf2onnx.convert.from_tflite(args.tflite, opset=args.opset, output_path=args.onnx)
    print(json.dumps({"tensorflow": tf.__version__,
                      "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__,
                      "opset": args.opset}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
