"""Sentence vectors around the text-embedder engine: tokenise, pad per batch, run.

The tokenizer is the ``tokenizer.json`` stored beside the engine (listed and hashed in its
manifest), so the engine and its vocabulary cannot drift apart. Texts are truncated to the
manifest's ``max_length`` and padded only to the longest text of each batch (the shipped
MiniLM tokenizer pads every text to 128 tokens, which wastes most of the compute on short
sentences). The engine mean-pools over the attention mask, so padding does not change a
text's vector. An empty string is allowed (it is just ``[CLS] [SEP]``).

Example:
    >>> embedder = TextEmbedder.from_engine_dir("artifacts/engines/edge")  # doctest: +SKIP
    >>> embedder.embed(["I am fine.", "We lost."]).vectors.shape  # doctest: +SKIP
    (2, 384)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engines.runtime import BackendChoice

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from engines.adapters.common import require_preprocess
from engines.adapters.records import TextEmbeddings
from engines.engine import Backend, Engine
from engines.manifest import EngineManifest
from engines.runtime import open_engine

TEXT_KEYS = ("tokenizer", "max_length")
"""Preprocess entries a text-embedder manifest must carry (engines.sources.text)."""

DEFAULT_PAD_TOKEN = "[PAD]"


def tokenizer_path(engine_dir: Path, manifest: EngineManifest) -> Path:
    """The tokenizer file of a text engine: ``preprocess["tokenizer"]``, a file the build
    copied beside the engine (its name carries the engine's hash; the manifest hashes it)."""
    file_name = manifest.preprocess.get("tokenizer")
    if file_name is None:
        raise ValueError(
            f"engine {manifest.name!r} (role {manifest.role!r}) names no tokenizer in its "
            "manifest's preprocess; pass the text_embedder engine, or rebuild it with "
            "`hidemo engines build`"
        )
    path = Path(engine_dir) / file_name
    if not path.is_file():
        raise FileNotFoundError(
            f"engine {manifest.name!r}: tokenizer {path} is missing; rebuild the engine with "
            f"`hidemo engines build --profile {manifest.profile} --engine-dir {engine_dir}`"
        )
    return path


def batch_tokenizer(tokenizer: Tokenizer, max_length: int) -> Tokenizer:
    """A copy of ``tokenizer`` that truncates to ``max_length`` and pads to the longest text.

    A copy, so the caller's tokenizer keeps its own settings.
    """
    configured = Tokenizer.from_str(tokenizer.to_str())
    padding = tokenizer.padding or {}
    pad_token = padding.get("pad_token", DEFAULT_PAD_TOKEN)
    pad_id = padding.get("pad_id", tokenizer.token_to_id(pad_token))
    if pad_id is None:
        raise ValueError(
            f"tokenizer has no padding settings and no {DEFAULT_PAD_TOKEN!r} token; use the "
            "tokenizer.json the text engine was built with"
        )
    configured.enable_truncation(max_length)
    configured.enable_padding(pad_id=pad_id, pad_token=pad_token)
    return configured


class TextEmbedder:
    """Text embedder on an :class:`Engine`: ``embed(texts)`` -> :class:`TextEmbeddings`.

    ``tokenizer`` is a ready :class:`tokenizers.Tokenizer` (``from_engine_dir`` loads the
    one stored beside the engine); texts go through the engine ``max_batch`` at a time.
    """

    def __init__(self, engine: Engine, manifest: EngineManifest, tokenizer: Tokenizer, *,
                 max_batch: int = 64) -> None:
        require_preprocess(manifest, TEXT_KEYS, "text embedder")
        if max_batch < 1:
            raise ValueError(f"max_batch is {max_batch}; it must be at least 1")
        names = engine.signature.input_names
        if not {"input_ids", "attention_mask"} <= set(names):
            raise ValueError(
                f"text embedder {manifest.name!r} takes {names}; expected 'input_ids' and "
                "'attention_mask' (rebuild with `hidemo engines build`)"
            )
        self.engine = engine
        self.manifest = manifest
        self.max_batch = max_batch
        self.max_length = int(manifest.preprocess["max_length"])
        self.tokenizer = batch_tokenizer(tokenizer, self.max_length)
        self.random_weights = bool(manifest.random_weights or engine.random_weights)
        output = engine.signature.outputs[0]
        self._output = output.name
        self.dim = int(output.shape[-1])

    @classmethod
    def from_engine_dir(cls, engine_dir: Path | str, backend: BackendChoice = Backend.AUTO,
                        *, name: str = "text_embedder", **options: Any) -> TextEmbedder:
        """Verify and load engine ``name`` and its tokenizer; ``options`` go to ``__init__``."""
        engine_dir = Path(engine_dir)
        engine, manifest = open_engine(engine_dir, name, backend)
        tokenizer = Tokenizer.from_file(str(tokenizer_path(engine_dir, manifest)))
        return cls(engine, manifest, tokenizer, **options)

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """int64 ``input_ids`` and ``attention_mask`` (batch, longest) for ``texts``."""
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] is {type(text).__name__}; expected str")
        encodings = self.tokenizer.encode_batch(list(texts))
        return {
            "input_ids": np.array([e.ids for e in encodings], np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], np.int64),
        }

    def embed(self, texts: Sequence[str]) -> TextEmbeddings:
        """One vector per text, in order; empty input gives (0, D)."""
        if isinstance(texts, str):
            raise TypeError("embed takes a list of texts; wrap a single text: embed([text])")
        parts = [np.zeros((0, self.dim), np.float32)]
        for start in range(0, len(texts), self.max_batch):
            feeds = self.tokenize(texts[start:start + self.max_batch])
            parts.append(self.engine.run(feeds)[self._output])
        return TextEmbeddings(np.concatenate(parts), self.random_weights)

    def close(self) -> None:
        """Release the engine."""
        self.engine.close()
