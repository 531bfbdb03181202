"""YOLO11 person detector source: ``YOLO("yolo11x.pt")`` when present, else from its yaml."""

from __future__ import annotations

import numpy as np

from engines.manifest import SourceInfo, hash_source, sha256_json
from engines.profiles import DetectorSpec
from engines.sources.base import RANDOM_SEED, SourceModel, WeightsLocator, warn_random
from engines.spec import Signature, TensorSpec


def build_detector(spec: DetectorSpec, locator: WeightsLocator) -> SourceModel:
    import torch
    from ultralytics import YOLO

    from engines.sources.modules import FirstOutput

    checkpoint = locator.file(spec.weights_file)
    if checkpoint is not None:
        yolo = YOLO(str(checkpoint))
        source = SourceInfo(kind="checkpoint", description=f"ultralytics {checkpoint.name}",
                            sha256=hash_source(checkpoint), path=str(checkpoint.resolve()))
    else:
        warn_random("detector", spec.weights_file, str(locator.weights_dir))
        torch.manual_seed(RANDOM_SEED)
        yolo = YOLO(f"{spec.variant}.yaml")
        source = SourceInfo(
            kind="random-init", description=f"ultralytics {spec.variant}.yaml, seed {RANDOM_SEED}",
            sha256=sha256_json({"yaml": spec.variant, "seed": RANDOM_SEED}))
    detection_model = yolo.model.float().eval()
    num_classes = len(yolo.names)
    strides = (8, 16, 32)
    anchors = sum((spec.imgsz // s) ** 2 for s in strides)
    signature = Signature(
        inputs=(TensorSpec(name="images", dtype="float32",
                           shape=("batch", 3, spec.imgsz, spec.imgsz)),),
        outputs=(TensorSpec(name="output0", dtype="float32",
                            shape=("batch", 4 + num_classes, anchors)),),
    )

    def sample_feeds(sizes: dict[str, int]) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(sizes.get("batch", 1))
        images = rng.random((sizes["batch"], 3, spec.imgsz, spec.imgsz), dtype=np.float32)
        return {"images": images}

    return SourceModel(
        name="detector",
        model=spec.variant,
        module=FirstOutput(detection_model),
        signature=signature,
        source=source,
        config=spec.model_dump(),
        sample_feeds=sample_feeds,
        parity_shapes=[{"batch": 1}, {"batch": 2}],
        preprocess={"imgsz": spec.imgsz, "letterbox_color": 114, "scale": 1 / 255,
                    "channels": "RGB", "person_class": 0, "num_classes": num_classes,
                    "conf_threshold": spec.conf_threshold, "iou_threshold": spec.iou_threshold},
        exporter="ultralytics",
        native=yolo,
    )
