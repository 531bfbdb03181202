"""MediaPipe's own ``.tflite`` models -> batched ONNX keypoint engines (see ``build``)."""
