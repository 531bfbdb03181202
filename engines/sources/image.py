"""DINOv2 image embedder source: ``from_pretrained`` when the checkpoint is here, else config."""

from __future__ import annotations

import numpy as np

from engines.manifest import SourceInfo, hash_source, sha256_json
from engines.profiles import ImageEmbedderSpec
from engines.sources.base import RANDOM_SEED, SourceModel, WeightsLocator, warn_random
from engines.spec import Signature, TensorSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_image_embedder(spec: ImageEmbedderSpec, locator: WeightsLocator) -> SourceModel:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    from engines.sources.modules import DinoEmbedder

    checkpoint = locator.pretrained_dir(spec.model_id)
    if checkpoint is not None:
        backbone = Dinov2Model.from_pretrained(str(checkpoint), attn_implementation="eager")
        source = SourceInfo(kind="checkpoint", description=f"transformers {spec.model_id}",
                            sha256=hash_source(checkpoint), path=str(checkpoint.resolve()))
    else:
        warn_random("image_embedder", spec.model_id, f"{locator.weights_dir} and the HF cache")
        torch.manual_seed(RANDOM_SEED)
        config = Dinov2Config(image_size=spec.image_size, **spec.config)
        config._attn_implementation = "eager"
        backbone = Dinov2Model(config)
        source = SourceInfo(
            kind="random-init", description=f"Dinov2Config {spec.config}, seed {RANDOM_SEED}",
            sha256=sha256_json({"config": config.to_dict(), "seed": RANDOM_SEED}))
    # Eager attention exports to a faster ONNX graph than the SDPA lowering.
    module = DinoEmbedder(backbone.float().eval(), spec.image_size)
    dim = backbone.config.hidden_size
    size = spec.image_size
    signature = Signature(
        inputs=(TensorSpec(name="pixels", dtype="float32", shape=("batch", 3, size, size)),),
        outputs=(TensorSpec(name="cls", dtype="float32", shape=("batch", dim)),
                 TensorSpec(name="patch_mean", dtype="float32", shape=("batch", dim))),
    )
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)

    def sample_feeds(sizes: dict[str, int]) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(sizes["batch"])
        image = rng.random((sizes["batch"], 3, size, size), dtype=np.float32)
        return {"pixels": ((image - mean) / std).astype(np.float32)}

    return SourceModel(
        name="image_embedder",
        model=spec.model_id,
        module=module,
        signature=signature,
        source=source,
        config={**spec.model_dump(), "resolved": backbone.config.to_dict()},
        sample_feeds=sample_feeds,
        parity_shapes=[{"batch": 1}, {"batch": 3}],
        preprocess={"image_size": size, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                    "channels": "RGB", "resize": "letterbox-square"},
    )
