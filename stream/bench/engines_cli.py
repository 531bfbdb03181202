"""``hidemo bench engines``: the table in the terminal, and a JSON report on request."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from rich.console import Console
from rich.table import Table

from engines.console import wide_console
from engines.provenance import git_commit, library_versions, machine_info, utc_now
from engines.sources.mediapipe import KEYPOINT_ENGINES
from stream.bench.engines import BenchRow, BenchSettings, bench_engines
from stream.bench.report import case_label

DEFAULT_ENGINES = ("detector", "image_embedder", "text_embedder", "classifier",
                   *KEYPOINT_ENGINES)


def rows_table(rows: list[BenchRow], title: str) -> Table:
    table = Table(title=title)
    for column in ("engine", "model", "backend", "batch", "seq", "median ms", "p95 ms",
                   "p99 ms", "items/s", "runs"):
        table.add_column(column, justify="right" if column[0].isdigit() or "ms" in column
                         or column in ("batch", "seq", "items/s", "runs") else "left")
    for row in rows:
        model = row.model + (" [yellow](random)" if row.random_weights else "")
        table.add_row(row.engine, model, row.backend, str(row.batch),
                      case_label(asdict(row)),
                      f"{row.median_ms:.1f}", f"{row.p95_ms:.1f}", f"{row.p99_ms:.1f}",
                      f"{row.throughput:.1f}", str(row.runs))
    return table


def bench_engines_command(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    settings = BenchSettings(
        batch_sizes=tuple(args.batch_sizes), seq_lens=tuple(args.seq_lens),
        warmup=args.warmup, iters=args.iters, max_seconds=args.max_seconds,
        threads=args.threads, backends=tuple(args.backends) if args.backends else None,
        window_seconds=tuple(args.windows) if getattr(args, "windows", None) else None,
    )
    names = list(args.engines or DEFAULT_ENGINES)
    rows = bench_engines(
        args.engine_dir, settings, names, weights_dir=args.weights_dir,
        on_row=lambda r: console.print(
            f"  {r.engine:15} {r.backend:22} b{r.batch:<2} "
            f"{case_label(asdict(r)):14} {r.median_ms:8.1f} ms"),
    )
    if any(row.engine in KEYPOINT_ENGINES for row in rows):  # built: Holistic on them too
        from stream.bench.perception import bench_holistic_engines, bench_mediapipe

        rows += [row for row in bench_mediapipe(settings) if row.engine == "keypoints"]
        rows += bench_holistic_engines(args.engine_dir, settings)
    if not rows:
        console.print(f"[red]no engine could be benchmarked in {args.engine_dir}; build them "
                      f"with: hidemo engines build --profile {args.profile}",
                      soft_wrap=True)  # a command to copy is never broken over lines
        return 1
    wide_console().print(rows_table(rows, f"bench engines: profile {args.profile}"))
    if any(r.random_weights for r in rows):
        console.print("[yellow]some engines have random weights: latency is real, outputs are not")
    if args.json:
        report = {
            "kind": "bench-engines", "created": utc_now(), "git_commit": git_commit(),
            "machine": machine_info(), "versions": library_versions(),
            "profile": args.profile, "engine_dir": str(args.engine_dir),
            "settings": asdict(settings), "rows": [asdict(r) for r in rows],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
        console.print(f"report written to {args.json}")
    return 0
