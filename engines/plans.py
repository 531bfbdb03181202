"""TensorRT plan records: what the manifest says about each plan built from an engine's ONNX.

A plan is valid for one TensorRT version and one GPU model, and only for the ONNX it was
built from, so every plan gets a typed record in its engine's manifest (the sidecar): file,
sha256, TensorRT version, GPU, compute capability, precision, optimization-profile shapes,
the ONNX sha256 it came from, and when. Nothing of this goes inside the plan file.

This module is pure Python (no TensorRT, no CUDA): the runtime uses :func:`select_plan` to
find the plan for the machine it runs on, the builder uses it to decide what is stale, and
both use :func:`tensorrt_build_command` to name the fix.

Example:
    >>> record = PlanRecord(file="det-1a2b.trt10.3.0.NVIDIA_H100.fp16.plan", sha256="0" * 64,
    ...                     tensorrt_version="10.3.0", gpu_name="NVIDIA H100",
    ...                     compute_capability="9.0", precision="fp16", profile_shapes={},
    ...                     onnx_sha256="1" * 64, created="2026-01-01T00:00:00")
    >>> select_plan([record], "10.3.0", "NVIDIA H100") is record
    True
    >>> select_plan([record], "10.4.0", "NVIDIA H100") is None
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated

from pydantic import Field

from engines.record import Record

Size = Annotated[int, Field(ge=0)]
ShapeTriple = tuple[tuple[Size, ...], tuple[Size, ...], tuple[Size, ...]]
"""(min, opt, max) shape of one plan input."""


class PlanRecord(Record):
    """One TensorRT plan of an engine, as listed in the engine's manifest."""

    file: str
    """File name in the engine folder (``<onnx stem>.trt<ver>.<GPU>.<precision>.plan``)."""
    sha256: str
    tensorrt_version: str
    gpu_name: str
    """The CUDA device name the plan was built on (``torch.cuda.get_device_name``)."""
    compute_capability: str
    """``major.minor`` of that device; recorded so a report can say why a plan will not load."""
    precision: str
    """``fp16`` (TensorRT may pick fp16 kernels) or ``fp32``."""
    profile_shapes: dict[str, ShapeTriple]
    """Per dynamic input, the (min, opt, max) shapes the plan accepts."""
    onnx_sha256: str
    """The ONNX the plan was built from; a plan of an older ONNX is stale."""
    created: str

    def matches(self, tensorrt_version: str, gpu_name: str) -> bool:
        """True when this plan was built for exactly this TensorRT version and GPU model."""
        return self.tensorrt_version == tensorrt_version and self.gpu_name == gpu_name

    def describe(self) -> str:
        return (f"{self.file} (TensorRT {self.tensorrt_version}, {self.gpu_name}, "
                f"{self.precision})")


def select_plan(plans: Iterable[PlanRecord], tensorrt_version: str,
                gpu_name: str) -> PlanRecord | None:
    """The plan built for this TensorRT version and GPU model, or None.

    A manifest holds at most one plan per (TensorRT version, GPU) pair: the builder replaces
    the old record when it rebuilds for the same machine kind.
    """
    for plan in plans:
        if plan.matches(tensorrt_version, gpu_name):
            return plan
    return None


def tensorrt_build_command(profile: str, engine_dir: Path | str) -> str:
    """The command that builds (or rebuilds) the TensorRT plans of an engine folder."""
    return f"hidemo engines build --tensorrt --profile {profile} --engine-dir {engine_dir}"


def no_plan_message(name: str, plans: Iterable[PlanRecord], tensorrt_version: str,
                    gpu_name: str) -> str:
    """Why no plan of engine ``name`` runs here: the machine, and the plans that do exist."""
    listed = [plan.describe() for plan in plans]
    return (f"engine {name!r}: no TensorRT plan for TensorRT {tensorrt_version} on "
            f"{gpu_name} (the manifest lists {listed or 'no plans'}); a plan runs only with "
            "the TensorRT version and GPU model it was built with")
