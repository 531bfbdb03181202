"""``hidemo report RUN_DIR [--out DIR]``: the page of a finished run, and its pictures.

Example::

    hidemo run --source talk.mp4 --profile edge --out runs/talk --record runs/talk/talk.mp4
    hidemo report runs/talk            # runs/talk/report.html and report-*.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]


def add_report_parser(jobs: SubParsers) -> argparse.ArgumentParser:
    """Add the ``report`` subcommand to ``hidemo``'s subparsers."""
    report = jobs.add_parser(
        "report", help="one self-contained HTML page (and PNGs) from a finished run's outputs")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="the --out folder of a `hidemo run`")
    report.add_argument("--out", dest="report_out", type=Path, default=None, metavar="DIR",
                        help="write report.html and report-*.png here (default: RUN_DIR)")
    return report


def report_command(args: argparse.Namespace) -> int:
    """Read the run, write the page and its pictures (each whole or not at all), say where.
    A folder that is not a run's is an error (exit 2); a full disk, exit 1."""
    from stream.files import write_document
    from stream.report.outputs import read_outputs
    from stream.report.page import build_report

    outputs = read_outputs(args.run_dir)
    report = build_report(outputs)
    out = args.report_out or args.run_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, png in report.pngs.items():
            write_document(out / name, png, durable=False)
        write_document(out / "report.html", report.html, durable=False)
    except OSError as error:
        print(f"hidemo report: {out}: {error.strerror or error}; the report was not written "
              f"(free some space or choose another --out)", file=sys.stderr)
        return 1
    series = report.data["series"]
    print(f"hidemo report: {out / 'report.html'} ({len(series)} person timeline(s) over "
          f"{len(report.data['streams'])} stream(s), {len(report.pngs)} PNG(s))",
          file=sys.stderr)
    for problem in outputs.problems:
        print(f"  warning: {problem}", file=sys.stderr)
    return 0
