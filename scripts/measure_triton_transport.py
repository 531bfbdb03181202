"""How tensors reach a served engine: gRPC, gRPC with system shared memory, HTTP, against
the same engine in-process, on one machine.

Starts ``hidemo serve-engines`` for the engines measured (free loopback ports), opens each
engine through the ``triton`` backend in each transport and locally on onnxruntime, and
times ``engine.run`` at each batch size (after a warm-up); prints a table and writes JSON.

Usage:
    .venv/bin/python scripts/measure_triton_transport.py [--profile edge] [--repeats 30]
        [--engines image_embedder detector] [--batch-sizes 1 8] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from triton_server import serving

from engines.runtime import load_engine
from engines.serving.settings import TritonSettings


def feeds_for(engine, batch: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for spec in engine.signature.inputs:
        shape = spec.concrete(batch=batch, sequence=16) if spec.dynamic_axes else spec.shape
        out[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return out


def timed(engine, feeds: dict[str, np.ndarray], repeats: int) -> dict[str, float]:
    for _ in range(3):
        engine.run(feeds)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        engine.run(feeds)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="edge")
    parser.add_argument("--engines", nargs="+", default=["image_embedder", "detector"])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    engine_dir = Path("artifacts/engines") / args.profile
    rows = []
    state = Path("artifacts/serve-measure")
    with serving(engine_dir, state, engines=tuple(args.engines)) as served:
        modes = {
            "in-process onnxruntime": "onnxruntime",
            "triton grpc": TritonSettings(url=served.url, shared_memory="off",
                                          engines=tuple(args.engines)),
            "triton grpc + shm": TritonSettings(url=served.url, shared_memory="system",
                                                token_file=served.token_file,
                                                engines=tuple(args.engines)),
            "triton http": TritonSettings(url=served.http_url, protocol="http",
                                          shared_memory="off", engines=tuple(args.engines)),
        }
        for name in args.engines:
            for label, backend in modes.items():
                with load_engine(engine_dir, name, backend) as engine:
                    for batch in args.batch_sizes:
                        figures = timed(engine, feeds_for(engine, batch), args.repeats)
                        rows.append({"engine": name, "transport": label, "batch": batch,
                                     "backend": engine.backend, **figures})
                        print(f"{name:15} {label:24} b{batch:<3} p50 {figures['p50_ms']:8.2f} "
                              f"ms  p95 {figures['p95_ms']:8.2f} ms", flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
