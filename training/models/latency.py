"""CPU latency of one window through the classifier in torch eager (the ablation's column).

Measures what a window costs the live classify stage before export: no autograd, after a
warm-up, median over ``repeats`` runs. Absolute numbers depend on the machine and its
load; compare variants (MLP vs GCN keypoint encoder) in the same process.

Example:
    >>> window_latency_ms(model, image_slots=16, keypoint_slots=40)  # doctest: +SKIP
    1.7
"""

from __future__ import annotations

import statistics
import time

import torch

from training.models.classifier import HiddenEmotionClassifier, example_inputs


def window_latency_ms(model: HiddenEmotionClassifier, batch: int = 1, image_slots: int = 16,
                      keypoint_slots: int = 40, repeats: int = 20, warmup: int = 3) -> float:
    """Median milliseconds of one forward pass on ``batch`` windows (eval mode, no_grad)."""
    inputs = example_inputs(model.config, batch=batch, image_seq=image_slots,
                            keypoint_seq=keypoint_slots)
    was_training = model.training
    model.eval()
    samples = []
    try:
        with torch.no_grad():
            for _ in range(warmup):
                model(*inputs)
            for _ in range(max(1, repeats)):
                start = time.perf_counter()
                model(*inputs)
                samples.append((time.perf_counter() - start) * 1000.0)
    finally:
        model.train(was_training)
    return statistics.median(samples)
