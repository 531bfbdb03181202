"""``hidemo engines build``: export and verify a profile's engines, with progress; with
``--tensorrt``, then a TensorRT plan for every engine (:mod:`export.tensorrt_cli`)."""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from engines.console import wide_console
from engines.profiles import get_profile
from engines.sources import WeightsLocator
from export.build import ENGINES, build_profile
from export.mediapipe.buildenv import ConvertEnvError


def build_command(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    profile = get_profile(args.profile)
    roles = args.only or list(ENGINES)
    unknown = sorted(set(roles) - set(ENGINES))
    if unknown:
        console.print(f"[red]unknown engine(s) {unknown}; choose from {list(ENGINES)}")
        return 2
    plans = None
    if getattr(args, "tensorrt", False):
        from export.tensorrt_cli import plan_settings

        plans = plan_settings(args)  # a bad --trt-axis fails now, not after the ONNX build
    started = time.perf_counter()

    def progress(name: str, what: str) -> None:
        console.print(f"[bold]{name:15}[/] {what}  [dim]({time.perf_counter() - started:.0f} s)")

    console.print(f"building profile [bold]{profile.name}[/] into {args.engine_dir}")
    try:
        outcomes = build_profile(profile, args.engine_dir,
                                 locator=WeightsLocator(args.weights_dir), roles=roles,
                                 force=args.force, int8=getattr(args, "int8", False),
                                 progress=progress,
                                 convert_env=getattr(args, "convert_env", None))
    except ConvertEnvError as error:
        console.print(f"[red]keypoint engine conversion failed:[/] {error}")
        return 1
    table = Table(title=f"engines: {profile.name} ({args.engine_dir})")
    for column in ("engine", "model", "result", "parity (worst)", "weights", "seconds"):
        table.add_column(column)
    for outcome in outcomes:
        manifest = outcome.manifest
        weights = "[yellow]RANDOM" if manifest.random_weights else "checkpoint"
        colour = "green" if outcome.action != "failed-parity" else "red"
        table.add_row(outcome.name, manifest.model, f"[{colour}]{outcome.action}",
                      f"{manifest.parity.worst:.1e}", weights, f"{outcome.seconds:.1f}")
    wide_console().print(table)
    code = 1 if any(o.action == "failed-parity" for o in outcomes) else 0
    if plans is not None:
        from export.tensorrt_cli import tensorrt_step

        code = max(code, tensorrt_step(args, plans, console, onnx_ok=code == 0))
    return code
