"""``hidemo engines list``: every engine in an engine folder and whether it would load."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.table import Table

from engines.adapters.classifier import CLASSIFIER_NAME
from engines.console import wide_console
from engines.manifest import MANIFEST_SUFFIX, EngineRefused, engine_state, read_manifest
from engines.sources.mediapipe import KEYPOINT_ENGINES
from engines.sources.roles import ROLES


def engine_names(engine_dir: Path) -> list[str]:
    """The profile's engines first (perception, the classifier, the keypoint engines), then
    any other manifest in the folder (``classifier_int8``)."""
    found = sorted(p.name.removesuffix(MANIFEST_SUFFIX)
                   for p in Path(engine_dir).glob(f"*{MANIFEST_SUFFIX}"))
    expected = [*ROLES, CLASSIFIER_NAME, *KEYPOINT_ENGINES]
    return [*expected, *[n for n in found if n not in expected]]


def list_engines(engine_dir: Path) -> list[dict[str, object]]:
    rows = []
    for name in engine_names(engine_dir):
        state, why = engine_state(engine_dir, name)
        row: dict[str, object] = {"name": name, "state": state, "detail": why}
        try:
            manifest = read_manifest(engine_dir, name)
        except EngineRefused:
            rows.append(row)
            continue
        row.update(model=manifest.model, profile=manifest.profile, file=manifest.onnx_file,
                   random_weights=manifest.random_weights, parity=manifest.parity.worst,
                   precision=manifest.precision, created=manifest.created,
                   inputs=[t.model_dump(mode="json") for t in manifest.signature.inputs],
                   outputs=[t.model_dump(mode="json") for t in manifest.signature.outputs],
                   plans=[plan.model_dump(mode="json") for plan in manifest.plans])
        rows.append(row)
    return rows


def list_command(args: argparse.Namespace) -> int:
    rows = list_engines(args.engine_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        colours = {"ok": "green", "random-weights": "yellow", "stale": "red",
                   "failed-parity": "red", "missing": "dim"}
        table = Table(title=f"engines in {args.engine_dir}")
        for column in ("engine", "state", "model", "inputs", "parity", "detail"):
            table.add_column(column)
        for row in rows:
            inputs = ", ".join(f"{t['name']}{tuple(t['shape'])}" for t in row.get("inputs", []))
            parity = f"{row['parity']:.1e}" if "parity" in row else ""
            colour = colours.get(str(row["state"]), "white")
            table.add_row(str(row["name"]), f"[{colour}]{row['state']}", str(row.get("model", "")),
                          inputs, parity, str(row["detail"]))
        wide_console().print(table)
    return 0 if all(r["state"] in ("ok", "random-weights") for r in rows) else 1
