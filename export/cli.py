"""``hidemo engines build``: export and verify a profile's engines, with progress."""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from engines.console import wide_console
from engines.profiles import get_profile
from engines.sources import WeightsLocator
from export.build import ENGINES, build_profile


def build_command(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    profile = get_profile(args.profile)
    roles = args.only or list(ENGINES)
    unknown = sorted(set(roles) - set(ENGINES))
    if unknown:
        console.print(f"[red]unknown engine(s) {unknown}; choose from {list(ENGINES)}")
        return 2
    started = time.perf_counter()

    def progress(name: str, what: str) -> None:
        console.print(f"[bold]{name:15}[/] {what}  [dim]({time.perf_counter() - started:.0f} s)")

    console.print(f"building profile [bold]{profile.name}[/] into {args.engine_dir}")
    outcomes = build_profile(profile, args.engine_dir, locator=WeightsLocator(args.weights_dir),
                             roles=roles, force=args.force,
                             int8=getattr(args, "int8", False), progress=progress)
    table = Table(title=f"engines: {profile.name} ({args.engine_dir})")
    for column in ("engine", "model", "result", "parity max |diff|", "weights", "seconds"):
        table.add_column(column)
    for outcome in outcomes:
        manifest = outcome.manifest
        weights = "[yellow]RANDOM" if manifest.random_weights else "checkpoint"
        colour = "green" if outcome.action != "failed-parity" else "red"
        table.add_row(outcome.name, manifest.model, f"[{colour}]{outcome.action}",
                      f"{manifest.parity.worst:.1e}", weights, f"{outcome.seconds:.1f}")
    wide_console().print(table)
    return 1 if any(o.action == "failed-parity" for o in outcomes) else 0
