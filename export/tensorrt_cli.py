"""The ``--tensorrt`` step of ``hidemo engines build``: plans after the ONNX engines.

Kept apart from :mod:`export.cli` so the ONNX build reads the same with or without it. The
step runs only after the ONNX engines were built and verified; where TensorRT or a CUDA GPU
is missing it says so, says that the ONNX engines are fine, and exits non-zero, because the
user asked for plans and got none.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table

from engines.backends.tensorrt import BackendUnavailable
from engines.console import wide_console
from engines.plans import tensorrt_build_command
from export.tensorrt_build import build_plan
from export.tensorrt_plans import (
    PlanBuilder,
    PlanSettings,
    PlanTarget,
    build_plans,
    detect_target,
    parse_axis_ranges,
)

EXIT_NO_TENSORRT = 3
"""Exit status when plans were asked for and TensorRT or CUDA is missing (ONNX engines ok)."""

Detect = Callable[[int], PlanTarget]


def plan_settings(args: argparse.Namespace) -> PlanSettings:
    """The plan settings of the command line; raises ``ValueError`` on a bad ``--trt-axis``
    (checked before the ONNX build, which takes minutes)."""
    return PlanSettings(fp16=not getattr(args, "trt_fp32", False),
                        axis_ranges=parse_axis_ranges(getattr(args, "trt_axis", None) or []),
                        workspace_bytes=int(getattr(args, "trt_workspace_mb", 1024)) << 20,
                        force=bool(getattr(args, "force", False)))


def tensorrt_step(args: argparse.Namespace, settings: PlanSettings, console: Console, *,
                  onnx_ok: bool, detect: Detect = detect_target,
                  builder: PlanBuilder = build_plan) -> int:
    """Build the plans of ``args.engine_dir``; 0 when every engine has a current plan.

    ``detect`` and ``builder`` are the machine probe and the plan builder (TensorRT's by
    default), injectable so the console wiring can be tested without TensorRT.
    """
    engine_dir = Path(args.engine_dir)
    fix = tensorrt_build_command(args.profile, engine_dir)
    try:
        target = detect(int(getattr(args, "trt_device", 0)))
    except BackendUnavailable as exc:
        onnx = ("the ONNX engines above were built and verified fine; they run on onnxruntime"
                if onnx_ok else "the ONNX engines' results are in the table above")
        console.print(
            "[red]TensorRT plans not built: TensorRT (>= 10) or a CUDA GPU was not found on "
            f"this machine[/] ({str(exc).splitlines()[0]}).\n"
            f"{onnx}. Build the plans on the machine that will run them: {fix}",
            soft_wrap=True)  # the command stays one copyable line
        return EXIT_NO_TENSORRT

    console.print(f"TensorRT {target.tensorrt_version} on {target.device.name} "
                  f"(compute {target.device.compute_capability}): {settings.precision} plans")

    def progress(name: str, what: str) -> None:
        console.print(f"[bold]{name:15}[/] {what}")

    outcomes = build_plans(engine_dir, target, settings, builder=builder, progress=progress)
    table = Table(title=f"TensorRT plans ({engine_dir})")
    for column in ("engine", "result", "plan", "detail"):
        table.add_column(column)
    colours = {"built": "green", "up-to-date": "green", "skipped": "yellow", "failed": "red"}
    for outcome in outcomes:
        table.add_row(outcome.name, f"[{colours[outcome.action]}]{outcome.action}",
                      outcome.plan.file if outcome.plan else "", outcome.detail)
    wide_console().print(table)
    return 1 if any(o.action in ("failed", "skipped") for o in outcomes) else 0
