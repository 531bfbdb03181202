"""ONNX -> TensorRT plan, with the TensorRT builder API and one optimization profile.

A plan fixes, at build time, the range each dynamic axis may take at run time. The ranges
come from the engine's :class:`~engines.spec.Signature`, whose dynamic axes carry names, and
one table of ranges per named axis (``{"batch": (1, 4, 8), "sequence": (1, 64, 256)}``:
min, the size TensorRT tunes its kernels for, max). :func:`profile_shapes` turns the two
into the min/opt/max shape of every dynamic input; it is pure Python.

The plan goes to a name that says its TensorRT version and GPU
(:func:`engines.backends.tensorrt.plan_file_name`); its metadata goes to the manifest,
written by the caller (:mod:`export.tensorrt_plans`), never into the plan. The file is
written atomically: a reader never sees half a plan.

Example:
    >>> spec = Signature((TensorSpec("x", "float32", ("batch", 8)),),
    ...                  (TensorSpec("y", "float32", ("batch", 3)),))
    >>> profile_shapes(spec, {"batch": (1, 4, 8)})
    {'x': ((1, 8), (4, 8), (8, 8))}
    >>> build_plan("linear.onnx", "linear.plan", spec, profile_shapes(spec, {"batch": (1, 4, 8)}),
    ...            fp16=False, workspace_bytes=1 << 30)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engines.backends.tensorrt import import_tensorrt, make_logger
from engines.spec import Signature, TensorSpec

Shape = tuple[int, ...]
ShapeProfile = tuple[Shape, Shape, Shape]
"""(min, opt, max) shape of one input."""
AxisRange = tuple[int, int, int]
"""(min, opt, max) size of one named dynamic axis."""

DEFAULT_WORKSPACE_BYTES = 1 << 30

log = logging.getLogger(__name__)


class PlanBuildError(RuntimeError):
    """TensorRT could not parse the ONNX file or build a plan from it; the message says why."""


def _is_size(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_axis_range(axis: str, value: object) -> AxisRange:
    if (
        not isinstance(value, (tuple, list))
        or len(value) != 3
        or not all(_is_size(v) for v in value)
    ):
        raise ValueError(
            f"axis range {axis!r}: {value!r} is not three integers (min, opt, max), "
            f"e.g. {{{axis!r}: (1, 4, 8)}}"
        )
    low, opt, high = value
    if not 1 <= low <= opt <= high:
        raise ValueError(
            f"axis range {axis!r}: {tuple(value)} must satisfy 1 <= min <= opt <= max"
        )
    return (low, opt, high)


def profile_shapes(
    signature: Signature, axis_ranges: Mapping[str, AxisRange]
) -> dict[str, ShapeProfile]:
    """Min/opt/max shapes for every input of ``signature`` that has a dynamic axis.

    Each named axis takes its (min, opt, max) from ``axis_ranges``; fixed sizes stay as they
    are. Inputs without dynamic axes are left out (TensorRT needs no profile for them), and
    ranges for axes this signature does not use are ignored, so one table can serve every
    engine of a deployment profile.
    """
    ranges = {axis: _check_axis_range(axis, value) for axis, value in axis_ranges.items()}
    shapes: dict[str, ShapeProfile] = {}
    for spec in signature.inputs:
        if not spec.dynamic_axes:
            continue
        missing = [
            f"axis {index} {axis!r}"
            for index, axis in spec.dynamic_axes.items()
            if axis not in ranges
        ]
        if missing:
            names = sorted({a for a in spec.dynamic_axes.values() if a not in ranges})
            example = ", ".join(f"{a!r}: (min, opt, max)" for a in names)
            raise ValueError(
                f"input {spec.name!r} (shape {spec.shape}): no range for dynamic "
                f"{', '.join(missing)}; add {{{example}}} to the axis ranges"
            )
        low, opt, high = (
            tuple(ranges[d][k] if isinstance(d, str) else d for d in spec.shape)
            for k in range(3)
        )
        shapes[spec.name] = (low, opt, high)
    return shapes


def check_shape_profiles(
    signature: Signature, shape_profiles: Mapping[str, ShapeProfile]
) -> None:
    """Raise ``ValueError`` naming the input unless ``shape_profiles`` fits ``signature``.

    Every input with a dynamic axis needs a profile; each profile has the input's rank,
    keeps its fixed sizes, and has ``1 <= min <= opt <= max`` on every axis.
    """
    specs: dict[str, TensorSpec] = {s.name: s for s in signature.inputs}
    unknown = sorted(set(shape_profiles) - set(specs))
    if unknown:
        raise ValueError(
            f"shape profiles for {unknown}, which are not inputs of the signature "
            f"({signature.input_names})"
        )
    for spec in signature.inputs:
        if spec.name not in shape_profiles:
            if spec.dynamic_axes:
                raise ValueError(
                    f"input {spec.name!r} has dynamic axes {spec.dynamic_axes} but no shape "
                    "profile; derive one with profile_shapes(signature, axis_ranges)"
                )
            continue
        profile = shape_profiles[spec.name]
        if not isinstance(profile, (tuple, list)) or len(profile) != 3:
            raise ValueError(f"input {spec.name!r}: profile must be (min, opt, max) shapes")
        low, opt, high = (tuple(s) for s in profile)
        for label, shape in (("min", low), ("opt", opt), ("max", high)):
            if len(shape) != len(spec.shape) or not all(_is_size(d) for d in shape):
                raise ValueError(
                    f"input {spec.name!r}: {label} shape {shape} must be {len(spec.shape)} "
                    f"integers, like {spec.shape}"
                )
        for axis, want in enumerate(spec.shape):
            sizes = (low[axis], opt[axis], high[axis])
            if isinstance(want, int) and sizes != (want, want, want):
                raise ValueError(
                    f"input {spec.name!r}: axis {axis} is fixed to {want} in the signature, "
                    f"the profile gives (min, opt, max) = {sizes}"
                )
            if not 1 <= sizes[0] <= sizes[1] <= sizes[2]:
                raise ValueError(
                    f"input {spec.name!r}: axis {axis} ({want!r}) has (min, opt, max) = "
                    f"{sizes}; needs 1 <= min <= opt <= max"
                )


def _check_network(
    network: Any, signature: Signature, shape_profiles: Mapping[str, ShapeProfile], onnx: Path
) -> None:
    """The parsed network must have the signature's names and dynamic axes where it does."""
    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    outputs = [network.get_output(i).name for i in range(network.num_outputs)]
    if sorted(inputs) != sorted(signature.input_names) or not set(
        signature.output_names
    ) <= set(outputs):
        raise PlanBuildError(
            f"{onnx}: the ONNX graph has inputs {sorted(inputs)} and outputs {outputs}, the "
            f"signature wants inputs {signature.input_names} and outputs "
            f"{signature.output_names}; re-export the ONNX (hidemo engines build) or fix the "
            "signature"
        )
    for name, tensor in inputs.items():
        dims = tuple(int(d) for d in tensor.shape)
        profile = shape_profiles.get(name)
        for axis, dim in enumerate(dims):
            if dim < 0 and profile is None:
                raise PlanBuildError(
                    f"{onnx}: input {name!r} axis {axis} is dynamic in the ONNX graph "
                    f"(shape {dims}) but static in the signature; give the axis a name in "
                    "the signature or re-export with a fixed size"
                )
            fixed_elsewhere = (
                dim >= 0
                and profile is not None
                and len(dims) == len(profile[0])
                and any(shape[axis] != dim for shape in profile)
            )
            if fixed_elsewhere:
                raise PlanBuildError(
                    f"{onnx}: input {name!r} axis {axis} is fixed to {dim} in the ONNX graph "
                    f"(shape {dims}), the profile asks for "
                    f"{tuple(s[axis] for s in profile)}; re-export the ONNX with this axis "
                    "dynamic"
                )


def _write_atomically(data: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _attach_timing_cache(config: Any, path: Path) -> None:
    """Start the build from the timing cache at ``path`` (empty when there is none yet).

    The cache holds kernel timings, so a second build (another engine, a rebuild) skips
    measuring layers it has seen. It is only valid for one TensorRT version and GPU: the
    caller names the file after both. An unreadable cache is replaced by an empty one.
    """
    data = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(data)
    if cache is not None and config.set_timing_cache(cache, False):
        return
    log.warning("timing cache %s could not be used (from another TensorRT or GPU, or "
                "damaged); starting an empty one", path)
    config.set_timing_cache(config.create_timing_cache(b""), False)


def build_plan(
    onnx_path: Path | str,
    plan_path: Path | str,
    signature: Signature,
    shape_profiles: Mapping[str, ShapeProfile],
    fp16: bool = False,
    workspace_bytes: int = DEFAULT_WORKSPACE_BYTES,
    timing_cache: Path | None = None,
) -> Path:
    """Build a TensorRT plan from ``onnx_path`` and write it atomically to ``plan_path``.

    ``shape_profiles`` gives (min, opt, max) shapes per dynamic input (see
    :func:`profile_shapes`); all go into one optimization profile. ``fp16`` lets TensorRT
    pick fp16 kernels (IO stays as in the ONNX); ``workspace_bytes`` caps the scratch
    memory a layer may use. ``timing_cache``: a file read before and rewritten (atomically)
    after the build, so later builds reuse the kernel timings. Raises
    :class:`PlanBuildError` with TensorRT's reasons.
    """
    trt = import_tensorrt()
    onnx_path, plan_path = Path(onnx_path), Path(plan_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(
            f"onnx_path {onnx_path} does not exist; export the engine first "
            "(hidemo engines build)"
        )
    if not _is_size(workspace_bytes) or workspace_bytes <= 0:
        raise ValueError(f"workspace_bytes {workspace_bytes!r}: must be a positive integer")
    check_shape_profiles(signature, shape_profiles)

    logger = make_logger(trt)
    builder = trt.Builder(logger)
    # TensorRT 10: every network is explicit batch; the EXPLICIT_BATCH flag is deprecated
    # and ignored (and gone in 11), so no creation flags are needed.
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    # parse_from_file (not parse(bytes)) so weights in a side .onnx.data file are found.
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for index in range(parser.num_errors):
            error = parser.get_error(index)
            errors.append(f"  [{index}] {error.desc()} (node {error.node()})")
        raise PlanBuildError(
            f"{onnx_path}: TensorRT's ONNX parser failed with {parser.num_errors} error(s):\n"
            + "\n".join(errors or ["  (none reported; see the hidemo.tensorrt log)"])
            + "\n  check the opset and operators (polygraphy inspect model) or re-export"
        )
    _check_network(network, signature, shape_profiles, onnx_path)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    if fp16:
        flag = getattr(trt.BuilderFlag, "FP16", None)
        if flag is None:
            raise PlanBuildError(
                f"TensorRT {trt.__version__} has no BuilderFlag.FP16 (removed in 11: networks "
                "are strongly typed); export an fp16 ONNX and build with fp16=False"
            )
        config.set_flag(flag)
    if shape_profiles:
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in shape_profiles.items():
            profile.set_shape(name, tuple(low), tuple(opt), tuple(high))
        config.add_optimization_profile(profile)
    if timing_cache is not None:
        _attach_timing_cache(config, Path(timing_cache))

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise PlanBuildError(
            f"{onnx_path}: TensorRT {trt.__version__} could not build a plan ("
            + ("; ".join(logger.errors) or "no error logged")
            + "); common causes: workspace_bytes too small, an unsupported layer, or a "
            "shape profile the graph cannot take"
        )
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(serialized, plan_path)
    if timing_cache is not None:
        _write_atomically(config.get_timing_cache().serialize(), Path(timing_cache))
    return plan_path
