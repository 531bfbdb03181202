"""Each engine alone, per backend, per batch size (and sequence length where it applies).

Latency is wall-clock around ``Engine.run`` on the host, inputs already prepared, after a
warm-up; it includes host<->device copies on GPU backends (what a pipeline stage pays).
The text embedder is timed per token count (``seq_lens``); the window classifier per window
length in seconds (``window_seconds``; None: the one its manifest was built for), each laid
on its own modality's grid (``image_seq = seconds x image_rate``, ``keypoint_seq = seconds
x keypoint_rate``), which is what the live classifier is fed.

Example:
    >>> rows = bench_engines(Path("artifacts/engines/edge"), BenchSettings())  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import logging
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from engines.backends import onnxruntime as ort_backend
from engines.engine import Backend, Engine
from engines.manifest import EngineRefused, read_manifest
from engines.runtime import load_engine
from engines.sources.mediapipe import KEYPOINT_ROLE
from engines.spec import Signature

log = logging.getLogger(__name__)

VARIANTS = ("torch", "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt",
            "tflite")
"""``tflite`` runs only the keypoint engines (the ``.tflite`` they were converted from)."""


@dataclass(frozen=True)
class BenchSettings:
    batch_sizes: tuple[int, ...] = (1, 4, 8)
    seq_lens: tuple[int, ...] = (16, 64, 128)
    window_seconds: tuple[float, ...] | None = None
    warmup: int = 2
    iters: int = 10
    min_iters: int = 3
    max_seconds: float = 3.0
    threads: int = 0
    backends: tuple[str, ...] | None = None
    engines: tuple[str, ...] | None = None


@dataclass(frozen=True)
class BenchRow:
    engine: str
    model: str
    backend: str
    device: str
    batch: int
    sequence: int | None
    runs: int
    median_ms: float
    p95_ms: float
    p99_ms: float
    throughput: float
    """Items (images or texts) per second at this batch size."""
    random_weights: bool
    extra: dict[str, float] = field(default_factory=dict)
    window_s: float | None = None
    """The classifier's window length (its axes' lengths are in ``extra``)."""



def sample_stats(samples: list[float], batch: int) -> dict[str, float | int]:
    """A :class:`BenchRow`'s timing fields from milliseconds per call at ``batch`` items."""
    median = statistics.median(samples)
    return {"runs": len(samples), "median_ms": median, "p95_ms": percentile(samples, 95),
            "p99_ms": percentile(samples, 99), "throughput": batch * 1000.0 / median}


def available_variants() -> list[str]:
    """Backends this machine can run now, always including torch and onnxruntime (CPU)."""
    present = set(ort_backend.available_providers())
    variants = ["torch", "onnxruntime"]
    if ort_backend.CUDA in present:
        variants.append("onnxruntime-cuda")
    if ort_backend.TENSORRT in present:
        variants.append("onnxruntime-tensorrt")
    from engines.backends.tensorrt import tensorrt_available

    if tensorrt_available():
        variants.append("tensorrt")
    if importlib.util.find_spec("ai_edge_litert") is not None:
        variants.append("tflite")
    return variants


def open_variant(engine_dir: Path, name: str, variant: str, threads: int,
                 weights_dir: Path | None) -> Engine:
    if variant == "torch":
        return load_engine(engine_dir, name, Backend.TORCH, threads=threads,
                           weights_dir=weights_dir)
    if variant == "tensorrt":
        return load_engine(engine_dir, name, Backend.TENSORRT)
    if variant == "tflite":
        return load_engine(engine_dir, name, Backend.TFLITE, threads=threads)
    providers = {
        "onnxruntime": [ort_backend.CPU],
        "onnxruntime-cuda": [ort_backend.CUDA, ort_backend.CPU],
        "onnxruntime-tensorrt": [ort_backend.TENSORRT, ort_backend.CUDA, ort_backend.CPU],
    }[variant]
    return load_engine(engine_dir, name, Backend.ONNXRUNTIME, threads=threads,
                       providers=providers)


def synthetic_feeds(signature: Signature, batch: int, sequence: int | None,
                    axes: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Inputs of the right dtype and shape; token ids stay inside every BERT vocabulary.
    ``axes`` gives named dynamic axes their lengths; any other non-batch dynamic axis takes
    ``sequence`` (16 when None)."""
    rng = np.random.default_rng(0)
    feeds = {}
    lengths = {axis: sequence or 16 for spec in signature.inputs
               for axis in spec.dynamic_axes.values() if axis != "batch"}
    lengths.update(axes or {})
    for spec in signature.inputs:
        shape = spec.concrete(**{**lengths, "batch": batch})
        if spec.name == "attention_mask" or spec.name.endswith("_mask"):
            feeds[spec.name] = np.ones(shape, dtype=spec.dtype)
        elif np.issubdtype(np.dtype(spec.dtype), np.integer):
            feeds[spec.name] = rng.integers(1000, 2000, shape).astype(spec.dtype)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds


@dataclass(frozen=True)
class Case:
    """One timed shape: a batch size, and a token count or a window length."""

    batch: int
    sequence: int | None = None
    window_s: float | None = None
    axes: dict[str, int] = field(default_factory=dict)


def window_axes(preprocess: dict[str, Any], seconds: float) -> dict[str, int]:
    """The classifier's sequence lengths for a window of ``seconds`` (its grids' slots)."""
    image_rate = float(preprocess["image_rate"])
    keypoint_rate = float(preprocess["keypoint_rate"])
    return {"image_seq": max(1, round(seconds * image_rate)),
            "keypoint_seq": max(1, round(seconds * keypoint_rate))}


def time_case(run: Callable[[], object], settings: BenchSettings) -> list[float]:
    """Milliseconds per call: ``warmup`` untimed calls, then up to ``iters`` timed ones."""
    for _ in range(settings.warmup):
        run()
    samples: list[float] = []
    deadline = time.perf_counter() + settings.max_seconds
    while len(samples) < settings.iters:
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1000)
        if len(samples) >= settings.min_iters and time.perf_counter() > deadline:
            break
    return samples


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def _cases(signature: Signature, settings: BenchSettings,
           preprocess: dict[str, Any]) -> Iterator[Case]:
    dynamic = {axis for s in signature.inputs for axis in s.dynamic_axes.values()} - {"batch"}
    for batch in settings.batch_sizes:
        if {"image_seq", "keypoint_seq"} <= dynamic and "window_seconds" in preprocess:
            windows = settings.window_seconds or (float(preprocess["window_seconds"]),)
            for seconds in windows:
                yield Case(batch, window_s=seconds, axes=window_axes(preprocess, seconds))
        elif dynamic:
            for sequence in settings.seq_lens:
                yield Case(batch, sequence=sequence)
        else:
            yield Case(batch)


def bench_engines(engine_dir: Path, settings: BenchSettings, names: list[str],
                  weights_dir: Path | None = None,
                  on_row: Callable[[BenchRow], None] | None = None) -> list[BenchRow]:
    """Benchmark each engine in ``names`` on each backend variant; skip what cannot load."""
    variants = list(settings.backends or available_variants())
    rows: list[BenchRow] = []
    for name in names:
        try:
            manifest = read_manifest(engine_dir, name)
        except EngineRefused as exc:
            log.warning("skipping %s: %s", name, exc)
            continue
        for variant in variants:
            if variant == "tflite" and manifest.role != KEYPOINT_ROLE:
                continue  # only converted engines have a .tflite source
            try:
                engine = open_variant(engine_dir, name, variant, settings.threads, weights_dir)
            except (EngineRefused, RuntimeError, ImportError) as exc:
                log.warning("skipping %s on %s: %s", name, variant, str(exc).splitlines()[0])
                continue
            with engine:
                for case in _cases(engine.signature, settings, manifest.preprocess):
                    feeds = synthetic_feeds(engine.signature, case.batch, case.sequence,
                                            case.axes)
                    samples = time_case(partial(engine.run, feeds), settings)
                    row = BenchRow(
                        engine=name, model=manifest.model, backend=engine.backend,
                        device=engine.device, batch=case.batch, sequence=case.sequence,
                        **sample_stats(samples, case.batch),
                        random_weights=engine.random_weights,
                        extra={k: float(v) for k, v in case.axes.items()},
                        window_s=case.window_s,
                    )
                    rows.append(row)
                    if on_row:
                        on_row(row)
    return rows
