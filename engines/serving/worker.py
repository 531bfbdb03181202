"""The Triton server process: runs in the serving environment, not in hidemo's.

``hidemo serve-engines`` (:mod:`engines.serving.server`) verifies the engines, writes a plan
(JSON: ports, token, workspace, one entry per model) and starts this script with the
serving environment's Python. It needs only numpy, onnxruntime and PyTriton there, so it
imports nothing from hidemo. Each model is an ONNX engine on onnxruntime inside Triton's
Python backend, with Triton's dynamic batcher in front (PyTriton's ``@batch`` hands the
batch Triton formed to one onnxruntime call). The model's identity (the manifest's
``hidemo.*`` parameters) goes into the model configuration Triton serves, so a client can
refuse a model that is not the engine it verified.

It writes one JSON line ``{"event": "ready", ...}`` to its events pipe (a file descriptor
the supervisor passes; tritonserver's log shares stdout, so events never go there) once
every model is loaded, and serves until SIGTERM or SIGINT.

Usage (by the supervisor): ``<serving env>/bin/python worker.py PLAN.json EVENTS_FD``
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any


def _session(onnx: str, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(onnx, sess_options=options, providers=_providers())


def _providers() -> list[str]:
    import onnxruntime as ort

    present = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in wanted if p in present]


def _infer_function(model: dict[str, Any], threads: int) -> Any:
    """One onnxruntime session behind a function PyTriton calls with a formed batch."""
    from pytriton.decorators import batch

    session = _session(model["onnx"], threads)
    outputs = [o["name"] for o in model["outputs"]]
    dtypes = {o["name"]: o["dtype"] for o in model["outputs"]}

    def run(**feeds: Any) -> dict[str, Any]:
        results = session.run(outputs, feeds)
        return {name: value.astype(dtypes[name], copy=False)
                for name, value in zip(outputs, results, strict=True)}

    return batch(run) if model["max_batch_size"] > 0 else run


def _bind(triton: Any, model: dict[str, Any], threads: int) -> None:
    import numpy as np
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    inputs = [Tensor(name=t["name"], dtype=np.dtype(t["dtype"]), shape=tuple(t["dims"]))
              for t in model["inputs"]]
    outputs = [Tensor(name=t["name"], dtype=np.dtype(t["dtype"]), shape=tuple(t["dims"]))
               for t in model["outputs"]]
    batched = model["max_batch_size"] > 0
    config = ModelConfig(
        batching=batched,
        max_batch_size=model["max_batch_size"] if batched else 0,
        batcher=DynamicBatcher(
            preferred_batch_size=list(model["preferred_batch_sizes"]) or None,
            max_queue_delay_microseconds=model["max_queue_delay_us"],
        ),
    )
    functions = [_infer_function(model, threads) for _ in range(model["instances"])]
    triton.bind(model_name=model["name"], infer_func=functions, inputs=inputs,
                outputs=outputs, config=config, strict=False)
    _add_parameters(triton, model["name"], model["parameters"])


def _add_parameters(triton: Any, name: str, parameters: dict[str, str]) -> None:
    """Put the engine's identity into the model configuration Triton will serve.

    PyTriton has no public way to add model parameters; its configuration record keeps
    ``backend_parameters`` (written as ``parameters``), which its own Python backend reads
    only for its keys, so the identity rides there. Checked against PyTriton 0.7."""
    for model in triton._model_manager.models:
        if model.model_name == name:
            model._get_triton_model_config().backend_parameters.update(parameters)
            return
    raise RuntimeError(f"model {name!r} was not bound")


def main(plan_path: str, events_fd: int) -> int:
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    os.set_inheritable(events_fd, False)  # tritonserver must not hold the pipe open
    events = os.fdopen(events_fd, "w", buffering=1)

    def tell(event: dict[str, Any]) -> None:
        events.write(json.dumps(event) + "\n")

    plan = json.loads(Path(plan_path).read_text())
    config = TritonConfig(
        grpc_address=plan["grpc_address"], grpc_port=plan["grpc_port"],
        http_address=plan["http_address"], http_port=plan["http_port"],
        allow_metrics=plan["metrics_port"] is not None,
        metrics_address=plan["metrics_address"], metrics_port=plan["metrics_port"],
        exit_on_error=True, strict_readiness=True, log_verbose=0,
    )
    security = TritonSecurityConfig(access_token=plan["token"],
                                    restricted_endpoints=list(plan["restricted"]))
    stop = threading.Event()
    triton = Triton(config=config, workspace=plan["workspace"], security_config=security)

    def _stop(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        for model in plan["models"]:
            _bind(triton, model, plan["threads"])
        triton.run()
        tell({"event": "ready", "models": [m["name"] for m in plan["models"]]})
        while not stop.wait(1.0):
            if not triton.is_alive():
                tell({"event": "died"})
                return 1
        return 0
    finally:
        triton.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2])))
