"""SSD anchors of MediaPipe's BlazeFace-style detectors (``SsdAnchorsCalculator``).

Each detector predicts one box per anchor, relative to that anchor's centre; decoding
needs the anchors in the same order as the model's outputs. All three detectors here use
``fixed_anchor_size`` (every anchor is 1 x 1), so only the centres carry information; the
options are kept as MediaPipe names them so the graph files can be checked line by line.

Example:
    >>> len(ssd_anchors(POSE_DETECTION_ANCHORS))
    2254
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnchorOptions:
    """The ``SsdAnchorsCalculatorOptions`` fields the MediaPipe detectors set."""

    input_size: int
    strides: tuple[int, ...]
    min_scale: float = 0.1484375
    max_scale: float = 0.75
    anchor_offset: float = 0.5
    aspect_ratios: tuple[float, ...] = (1.0,)
    interpolated_scale_aspect_ratio: float = 1.0
    fixed_anchor_size: bool = True


POSE_DETECTION_ANCHORS = AnchorOptions(input_size=224, strides=(8, 16, 32, 32, 32))
"""pose_detection_cpu.pbtxt: 5 layers on a 224 x 224 input."""

FACE_SHORT_RANGE_ANCHORS = AnchorOptions(input_size=128, strides=(8, 16, 16, 16))
"""face_detection_short_range.pbtxt: 4 layers on a 128 x 128 input."""

PALM_ANCHORS = AnchorOptions(input_size=192, strides=(8, 16, 16, 16), min_scale=0.1484375,
                             max_scale=0.75)
"""palm_detection_cpu.pbtxt (full model): 4 layers on a 192 x 192 input."""


def _scale(options: AnchorOptions, layer: int) -> float:
    count = len(options.strides)
    if count == 1:
        return (options.min_scale + options.max_scale) * 0.5
    return options.min_scale + (options.max_scale - options.min_scale) * layer / (count - 1)


def ssd_anchors(options: AnchorOptions) -> np.ndarray:
    """(N, 4) anchors ``x_centre, y_centre, width, height`` as fractions of the input.

    Consecutive layers with the same stride share one feature map; at each of its cells
    come, per layer, one anchor per aspect ratio plus one interpolated-scale anchor.
    """
    rows: list[tuple[float, float, float, float]] = []
    strides = options.strides
    layer = 0
    while layer < len(strides):
        sizes: list[tuple[float, float]] = []
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            scale = _scale(options, last)
            for ratio in options.aspect_ratios:
                sizes.append((scale * math.sqrt(ratio), scale / math.sqrt(ratio)))
            if options.interpolated_scale_aspect_ratio > 0:
                following = 1.0 if last == len(strides) - 1 else _scale(options, last + 1)
                mixed = math.sqrt(scale * following)
                ratio = options.interpolated_scale_aspect_ratio
                sizes.append((mixed * math.sqrt(ratio), mixed / math.sqrt(ratio)))
            last += 1
        cells = math.ceil(options.input_size / strides[layer])
        for y in range(cells):
            for x in range(cells):
                for width, height in sizes:
                    if options.fixed_anchor_size:
                        width = height = 1.0
                    rows.append(((x + options.anchor_offset) / cells,
                                 (y + options.anchor_offset) / cells, width, height))
        layer = last
    return np.asarray(rows, dtype=np.float32)
