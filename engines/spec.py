"""Tensor and engine signatures: what an engine takes and gives, independent of backend.

An engine's identity is its signature plus its manifest, never its file name. Dynamic axes
carry a name (``"batch"``, ``"sequence"``) so two backends, a manifest and a caller can
agree on which dimension may change.

Example:
    >>> spec = TensorSpec("pixels", "float32", ("batch", 3, 224, 224))
    >>> spec.dynamic_axes
    {0: 'batch'}
    >>> spec.check(np.zeros((2, 3, 224, 224), np.float32))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Dim = int | str
"""A fixed size, or the name of a dynamic axis."""


class SignatureError(ValueError):
    """An array handed to an engine does not match the engine's declared input."""


@dataclass(frozen=True)
class TensorSpec:
    """One named input or output: dtype (numpy name) and shape with named dynamic axes."""

    name: str
    dtype: str
    shape: tuple[Dim, ...]

    @property
    def dynamic_axes(self) -> dict[int, str]:
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def check(self, array: np.ndarray) -> None:
        """Raise :class:`SignatureError` naming the tensor when ``array`` cannot be fed."""
        if array.dtype != np.dtype(self.dtype):
            raise SignatureError(
                f"input {self.name!r}: dtype {array.dtype} given, {self.dtype} expected; "
                f"convert with array.astype(np.{self.dtype})"
            )
        if array.ndim != len(self.shape):
            raise SignatureError(
                f"input {self.name!r}: {array.ndim} dims given (shape {array.shape}), "
                f"{len(self.shape)} expected {self.shape}"
            )
        for axis, (got, want) in enumerate(zip(array.shape, self.shape, strict=True)):
            if isinstance(want, int) and got != want:
                raise SignatureError(
                    f"input {self.name!r}: axis {axis} is {got}, must be {want} "
                    f"(expected shape {self.shape})"
                )

    def concrete(self, **sizes: int) -> tuple[int, ...]:
        """The shape with dynamic axes replaced by ``sizes`` (e.g. ``batch=4``)."""
        missing = [d for d in self.shape if isinstance(d, str) and d not in sizes]
        if missing:
            raise KeyError(f"{self.name}: sizes needed for dynamic axes {missing}")
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.shape)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(data["name"], data["dtype"], tuple(data["shape"]))


@dataclass(frozen=True)
class Signature:
    """The ordered inputs and outputs of an engine."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [t.name for t in self.outputs]

    def check_feeds(self, feeds: dict[str, np.ndarray]) -> None:
        """Validate a feed dict: every input present, nothing unknown, dtypes and shapes."""
        unknown = set(feeds) - set(self.input_names)
        missing = [n for n in self.input_names if n not in feeds]
        if unknown or missing:
            raise SignatureError(
                f"feeds must be exactly {self.input_names}; missing {missing}, unknown "
                f"{sorted(unknown)}"
            )
        for spec in self.inputs:
            spec.check(feeds[spec.name])
        batch_sizes = {feeds[s.name].shape[0] for s in self.inputs if s.shape[0] == "batch"}
        if len(batch_sizes) > 1:
            raise SignatureError(f"inputs disagree on the batch axis: sizes {sorted(batch_sizes)}")

    def to_json(self) -> dict[str, Any]:
        return {
            "inputs": [t.to_json() for t in self.inputs],
            "outputs": [t.to_json() for t in self.outputs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Signature:
        return cls(
            tuple(TensorSpec.from_json(t) for t in data["inputs"]),
            tuple(TensorSpec.from_json(t) for t in data["outputs"]),
        )
