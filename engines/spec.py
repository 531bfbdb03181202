"""Tensor and engine signatures: what an engine takes and gives, independent of backend.

An engine's identity is its signature plus its manifest, never its file name. Dynamic axes
carry a name (``"batch"``, ``"sequence"``) so two backends, a manifest and a caller can
agree on which dimension may change.

The records are pydantic models: a manifest's signature is validated when it is read (a
dtype numpy does not know, a negative or fractional size, an unknown key are refused), and
``model_dump(mode="json")`` writes the format the manifest has always had.

Example:
    >>> spec = TensorSpec(name="pixels", dtype="float32", shape=("batch", 3, 224, 224))
    >>> spec.dynamic_axes
    {0: 'batch'}
    >>> spec.check(np.zeros((2, 3, 224, 224), np.float32))
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field, field_validator

from engines.record import Record

Dim = Annotated[int, Field(ge=0)] | Annotated[str, Field(min_length=1)]
"""A fixed size, or the name of a dynamic axis."""


class SignatureError(ValueError):
    """An array handed to an engine does not match the engine's declared input."""


class TensorSpec(Record):
    """One named input or output: dtype (numpy name) and shape with named dynamic axes."""

    name: str = Field(min_length=1)
    dtype: str
    shape: tuple[Dim, ...]

    @field_validator("dtype")
    @classmethod
    def _numpy_dtype(cls, value: str) -> str:
        try:
            np.dtype(value)
        except TypeError as exc:
            raise ValueError(f"{value!r} is not a numpy dtype name (e.g. float32)") from exc
        return value

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


class Signature(Record):
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
