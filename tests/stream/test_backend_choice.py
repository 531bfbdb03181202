"""The run's ``backend``: ``torch`` puts the perception engines on torch (CUDA where torch
sees a GPU, for machines without onnxruntime-gpu) and keeps the window classifier, which
only onnxruntime runs, on onnxruntime; an unknown name is a configuration error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from engines.runtime import open_engine
from stream.bench.engines import synthetic_feeds
from stream.config import RunConfig, SourceConfig


@pytest.mark.slow
def test_torch_backend_runs_perception_on_torch_and_the_classifier_on_onnxruntime(
        tiny_engine_dir: Path) -> None:
    config = RunConfig(profile="tiny", engine_dir=tiny_engine_dir, backend="torch",
                       sources=[SourceConfig(spec="demo")])
    backends = {}
    for name in ("image_embedder", "classifier"):
        engine, _ = open_engine(config.resolved_engine_dir(), name, config.backend, threads=1)
        with engine:
            outputs = engine.run(synthetic_feeds(engine.signature, batch=2, sequence=None,
                                                 axes={"image_seq": 4, "keypoint_seq": 8}))
            assert all(np.isfinite(value).all() for value in outputs.values())
            backends[name] = engine.backend.split(":")[0]
    assert backends == {"image_embedder": "torch", "classifier": "onnxruntime"}


def test_an_unknown_backend_is_a_configuration_error() -> None:
    with pytest.raises(ValidationError, match="backend"):
        RunConfig(backend="cuda")
