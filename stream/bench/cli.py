"""``hidemo bench``: engines, pipeline, baseline, efficiency, soak and compare.

How the subcommands compose::

    hidemo bench --quick --out DIR            # = bench all: engines + pipeline + baseline
    hidemo bench all --profile edge --streams 1 4 --duration 30
    hidemo bench pipeline --streams 4 --modes saturated --set features.replicas=2
    hidemo bench all --profile edge --streams 1 4 --placement fused   # workers, in memory
    hidemo bench all --streams 1 4 --placement split fused   # both, side by side
    hidemo bench pipeline --streams 4 --set fused.workers=1   # one fused worker: latency first
    hidemo bench baseline --streams 1 4
    hidemo bench --soak 10 --profile edge     # only a 10-minute paced run, with its trends
    hidemo bench engines --profile edge       # each engine alone (unchanged)
    hidemo bench compare A/report.json B/report.json
    hidemo bench scale --pipelines 1 2 4      # N hidemo runs at once: local vs one Triton

Every run writes ``DIR/report.json`` (figures, machine, versions, config, git commit), the
PNGs beside it, and each pipeline run's own outputs under ``DIR/runs/``; the tables go to
the terminal. Options come after the subcommand (``hidemo bench pipeline --quick``).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

log = logging.getLogger(__name__)

COMMANDS = ("all", "pipeline", "baseline")


def add_bench_options(parser: argparse.ArgumentParser) -> None:
    """Options of ``bench [all|pipeline|baseline]`` (argparse only: no heavy imports)."""
    parser.add_argument("--quick", action="store_true",
                        help="CI size: tiny profile, 1 stream, a few seconds per run")
    parser.add_argument("--profile", default=None,
                        help="paper, edge or tiny (default: edge; tiny with --quick)")
    parser.add_argument("--engine-dir", type=Path, default=None,
                        help="engines folder (default: artifacts/engines/PROFILE)")
    parser.add_argument("--weights-dir", type=Path, default=Path("weights"),
                        help="checkpoints for the torch backend (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="report folder (default: artifacts/bench/PROFILE-TIME)")
    parser.add_argument("--streams", type=int, nargs="+", default=None, metavar="N",
                        help="stream counts to run (default: 1 4; 1 with --quick)")
    parser.add_argument("--modes", nargs="+", choices=("paced", "saturated"),
                        default=["paced", "saturated"],
                        help="paced: sources at their frame rate; saturated: as fast as the "
                             "pipeline takes frames (default: both)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="measured seconds per run (default: 30; 6 with --quick)")
    parser.add_argument("--warmup-s", type=float, default=None, metavar="S",
                        help="seconds left out at the start of each run (default: 3; 1.5 "
                             "with --quick)")
    parser.add_argument("--fps", type=float, default=None,
                        help="capture rate per stream (default: the profile's analysis rate)")
    parser.add_argument("--source", action="append", default=None, metavar="demo|PATH",
                        help="pipeline sources, cycled over the streams (default: demo)")
    parser.add_argument("--config", type=Path, default=None, help="a hidemo run config file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a run config field, e.g. features.replicas=2")
    parser.add_argument("--metrics-bind", default=None, metavar="HOST:PORT",
                        help="serve each pipeline run's /metrics, /healthz and /readyz here, "
                             "as `hidemo run --metrics-bind` does (to measure what they "
                             "cost); short for --set metrics.bind=HOST:PORT")
    parser.add_argument("--placement", choices=("auto", "split", "fused"), nargs="+",
                        default=None,
                        help="the pipeline's processes (run config `placement`): split, "
                             "fused or auto (default: the config's); several run each "
                             "scenario once per placement, side by side in one report")
    parser.add_argument("--soak", type=float, default=None, metavar="MINUTES",
                        help="instead of the scenarios: one paced run this long, with the "
                             "per-minute trends of latency and RSS")
    parser.add_argument("--soak-streams", type=int, default=1, metavar="N")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="engine backends (default: every one present; onnxruntime "
                             "with --quick)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None,
                        help="engine batch sizes (default: 1 4 8; 1 4 with --quick)")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[16, 64, 128],
                        help="text embedder token counts")
    parser.add_argument("--windows", type=float, nargs="+", default=None, metavar="SECONDS",
                        help="classifier window lengths (default: the engine's)")
    parser.add_argument("--iters", type=int, default=None,
                        help="timed runs per engine case (default: 10; 5 with --quick)")
    parser.add_argument("--threads", type=int, default=None,
                        help="engine threads in the engine bench (default: the pipeline "
                             "stages' setting, so efficiency compares like with like)")
    parser.add_argument("--baseline-threads", type=int, nargs="+", default=[0],
                        help="engine threads of the one-process baseline, one baseline per "
                             "value (default 0: the runtime's default, as a notebook would; "
                             "e.g. 0 1 also runs it on the pipeline stages' one thread)")


def add_bench_commands(bench: argparse.ArgumentParser, commands: Any) -> None:
    """Add ``all``, ``pipeline``, ``baseline`` and ``compare`` to ``hidemo bench``; the bare
    ``hidemo bench`` takes the same options and runs ``all``."""
    add_bench_options(bench)
    helps = {"all": "engines, pipeline and baseline, with ratios, efficiency and plots",
             "pipeline": "the live pipeline, paced and saturated, per stream count",
             "baseline": "the same engines in one process, one frame after another"}
    for name in COMMANDS:
        add_bench_options(commands.add_parser(name, help=helps[name]))
    from stream.bench.scale import add_scale_options

    add_scale_options(commands.add_parser(
        "scale", help="several pipelines at once, on local engines and on one Triton server"))
    compare = commands.add_parser("compare", help="two bench reports side by side")
    compare.add_argument("reports", type=Path, nargs=2, metavar="REPORT")


@dataclass(frozen=True)
class Plan:
    """The resolved options: what runs, how long, where it goes."""

    command: str
    profile: str
    engine_dir: Path
    out: Path
    streams: tuple[int, ...]
    modes: tuple[str, ...]
    duration_s: float
    warmup_s: float
    fps: float | None
    sources: tuple[str, ...]
    soak_minutes: float | None
    soak_streams: int
    quick: bool


def plan_from_args(args: argparse.Namespace) -> Plan:
    quick = bool(args.quick)
    profile = args.profile or ("tiny" if quick else "edge")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Plan(
        command=args.command or "all", profile=profile,
        engine_dir=args.engine_dir or Path("artifacts") / "engines" / profile,
        out=args.out or Path("artifacts") / "bench" / f"{profile}-{stamp}",
        streams=tuple(args.streams or ((1,) if quick else (1, 4))),
        modes=tuple(args.modes),
        duration_s=args.duration or (6.0 if quick else 30.0),
        warmup_s=args.warmup_s if args.warmup_s is not None else (1.5 if quick else 3.0),
        fps=args.fps, sources=tuple(args.source or ["demo"]), soak_minutes=args.soak,
        soak_streams=args.soak_streams, quick=quick)


def bench_command(args: argparse.Namespace) -> int:
    """``hidemo bench [all|pipeline|baseline|compare]``; returns the exit code."""
    if args.command == "compare":
        return compare_command(args.reports)
    if args.command == "scale":
        from stream.bench.scale import scale_command

        return scale_command(args)
    from rich.console import Console

    from engines.console import wide_console
    from stream.bench import report as rep
    from stream.bench.plots import write_plots

    plan = plan_from_args(args)
    if not (plan.engine_dir / "classifier.manifest.json").is_file():
        raise FileNotFoundError(
            f"no engines in {plan.engine_dir}; build them first: hidemo engines build "
            f"--profile {plan.profile} --engine-dir {plan.engine_dir}")
    console = Console(stderr=True)
    plan.out.mkdir(parents=True, exist_ok=True)
    report = _header(plan, args)
    if plan.soak_minutes is not None:
        _soak(plan, args, report, console)
    else:
        _scenarios(plan, args, report, console)
    report["load_average_after"] = rep.load_average()
    report["plots"] = write_plots(report, plan.out)
    path = plan.out / "report.json"
    path.write_text(json.dumps(report, indent=1, default=str))
    out = wide_console()
    if report["engines"]["rows"]:
        out.print(rep.engines_table(report["engines"]["rows"],
                                    f"engines (threads {report['settings']['threads']})"))
    if report["pipeline"] or report["baseline"]:
        out.print(rep.pipeline_table(report))
    for run in report["pipeline"]:
        out.print(rep.split_table(run))
    for line in rep.summary_lines(report):
        out.print(line)
    console.print(f"report: {path}; plots: {', '.join(report['plots'])}")
    failed = [r["label"] for r in report["pipeline"] if r.get("exit_code")]
    if failed:
        console.print(f"[red]pipeline runs failed: {failed} (logs under {plan.out}/runs)",
                      soft_wrap=True)
    return 1 if failed else 0


def _setup(plan: Plan, args: argparse.Namespace, placement: str | None = None) -> Any:
    """The pipeline's setup: ``placement`` (None: the first one asked for, if any) over the
    config file and ``--set``."""
    from stream.bench.pipeline import PipelineSetup

    placement = placement or next(iter(args.placement or []), None)
    overrides = [] if placement is None else [f"placement={placement}"]
    if getattr(args, "metrics_bind", None):
        overrides.append(f"metrics.bind={args.metrics_bind}")
    return PipelineSetup(profile=plan.profile, engine_dir=plan.engine_dir,
                         sources=plan.sources, config_file=args.config,
                         overrides=(*args.set, *overrides))


def _header(plan: Plan, args: argparse.Namespace) -> dict[str, Any]:
    from engines.provenance import git_commit, library_versions, machine_info, utc_now
    from stream.bench.pipeline import Scenario, scenario_config
    from stream.bench.report import KIND, load_average

    config = scenario_config(_setup(plan, args),
                             Scenario(plan.streams[0], "paced", plan.duration_s, plan.fps),
                             plan.out / "runs" / "config")
    return {
        "kind": KIND, "created": utc_now(), "git_commit": git_commit(),
        "machine": machine_info(), "versions": library_versions(),
        "load_average_before": load_average(), "command": plan.command,
        "profile": plan.profile, "engine_dir": str(plan.engine_dir),
        "plan": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(plan).items()},
        "run_config": config.model_dump(mode="json"),
        "settings": {"threads": _engine_threads(args, config)},
        "engines": {"rows": []}, "pipeline": [], "baseline": [], "ratios": [],
        "efficiency": [], "soak": None,
    }


def _engine_threads(args: argparse.Namespace, config: Any) -> int:
    return args.threads if args.threads is not None else config.features.threads


def _scenarios(plan: Plan, args: argparse.Namespace, report: dict[str, Any],
               console: Any) -> None:
    from stream.bench import report as rep
    from stream.bench.efficiency import efficiency
    from stream.bench.engines import BenchRow

    rows: list[BenchRow] = []
    if plan.command == "all":
        rows = _engine_rows(plan, args, report, console)
    report["pipeline"], report["baseline"] = _interleaved_runs(plan, args, console)
    report["ratios"] = rep.ratios(report["pipeline"], report["baseline"])
    if rows:
        report["efficiency"] = [efficiency(rows, run) for run in report["pipeline"]
                                if run["scenario"]["mode"] == "saturated"]


def _engine_rows(plan: Plan, args: argparse.Namespace, report: dict[str, Any],
                 console: Any) -> list[Any]:
    from stream.bench.engines import BenchSettings, bench_engines
    from stream.bench.engines_cli import DEFAULT_ENGINES
    from stream.bench.perception import bench_holistic_engines, bench_mediapipe

    settings = BenchSettings(
        batch_sizes=tuple(args.batch_sizes or ((1, 4) if plan.quick else (1, 4, 8))),
        seq_lens=tuple(args.seq_lens), window_seconds=tuple(args.windows or ()) or None,
        iters=args.iters or (5 if plan.quick else 10),
        max_seconds=1.0 if plan.quick else 3.0, threads=report["settings"]["threads"],
        backends=tuple(args.backends or (["onnxruntime"] if plan.quick else [])) or None)
    console.print(f"bench engines in {plan.engine_dir} (threads {settings.threads})")
    rows = bench_engines(plan.engine_dir, settings, list(DEFAULT_ENGINES),
                         weights_dir=args.weights_dir)
    rows += bench_mediapipe(settings)
    rows += bench_holistic_engines(plan.engine_dir, settings)
    report["settings"].update(asdict(settings))
    report["engines"]["rows"] = [asdict(r) for r in rows]
    return rows


def _interleaved_runs(plan: Plan, args: argparse.Namespace,
                      console: Any) -> tuple[list[dict], list[dict]]:
    """The pipeline's and the baseline's runs, scenario by scenario: each scenario's
    pipeline runs (one per placement) and then its baseline runs (one per thread count),
    so the runs a ratio compares are minutes apart at most, not a whole block of runs
    (a shared machine's speed drifts; measured here: the same run 4.4 to 5.5 frames/s
    across half an hour). Baselines are listed by thread count, then scenario."""
    pipeline: list[dict] = []
    baseline: list[dict] = []
    for streams in plan.streams:
        for mode in plan.modes:
            if plan.command in ("all", "pipeline"):
                pipeline += _pipeline_runs(plan, args, console, streams, mode)
            if plan.command in ("all", "baseline"):
                baseline += _baseline_runs(plan, args, console, streams, mode)
    order = list(dict.fromkeys(args.baseline_threads))
    baseline.sort(key=lambda run: order.index(run["threads"]))  # stable: scenario order
    return pipeline, baseline


def _pipeline_runs(plan: Plan, args: argparse.Namespace, console: Any, streams: int,
                   mode: str) -> list[dict]:
    """One scenario's pipeline runs, one per placement asked for."""
    from stream.bench.pipeline import Mode, Scenario, run_scenario

    placements: list[str | None] = list(dict.fromkeys(args.placement or [None]))
    several = len(placements) > 1
    scenario = Scenario(streams, cast(Mode, mode), plan.duration_s + plan.warmup_s,
                        plan.fps, plan.warmup_s)
    runs = []
    for placement in placements:
        asked = f", placement {placement}" if several else ""
        console.print(f"bench pipeline: {scenario.label}{asked}, "
                      f"{plan.duration_s:g} s measured")
        slug = f"{scenario.slug}-{placement}" if several else scenario.slug
        run = run_scenario(_setup(plan, args, placement), scenario,
                           plan.out / "runs" / slug)
        if several:  # the run's own label names what auto resolved to
            run["label"] = f"{run['label']}, {placement}"
        runs.append(run)
    return runs


def _baseline_runs(plan: Plan, args: argparse.Namespace, console: Any, streams: int,
                   mode: str) -> list[dict]:
    """One scenario's baseline runs, one per engine thread count (each opens its engines
    and closes them after, so none stay loaded while the pipeline runs)."""
    from stream.bench.baseline import Baseline
    from stream.bench.pipeline import Mode, Scenario, scenario_config

    # the pipeline's own config, so the same rates
    config = scenario_config(_setup(plan, args),
                             Scenario(1, cast(Mode, mode), plan.duration_s, plan.fps),
                             plan.out / "runs" / "baseline")
    runs = []
    for threads in dict.fromkeys(args.baseline_threads):  # each value once, in order
        console.print(f"bench baseline: {streams} stream(s), {mode}, "
                      f"threads {threads or 'default'}")
        baseline = Baseline.from_run_config(config, threads=threads)
        try:  # opened from the scenario's own config: its rates too
            figures = baseline.run(streams, mode, plan.duration_s, plan.warmup_s)
        finally:
            baseline.close()
        figures["threads"] = threads
        runs.append(figures)
    return runs


def _soak(plan: Plan, args: argparse.Namespace, report: dict[str, Any], console: Any) -> None:
    from stream.bench.pipeline import Scenario, run_scenario
    from stream.bench.report import soak_slopes

    assert plan.soak_minutes is not None
    seconds = plan.soak_minutes * 60.0
    scenario = Scenario(plan.soak_streams, "paced", seconds + plan.warmup_s, plan.fps,
                        plan.warmup_s)
    console.print(f"bench soak: {scenario.label} for {plan.soak_minutes:g} min")
    run = run_scenario(_setup(plan, args), scenario, plan.out / "runs" / f"soak-{scenario.slug}")
    report["pipeline"] = [run]
    report["soak"] = {"minutes": plan.soak_minutes, "streams": plan.soak_streams,
                      "slopes": soak_slopes(run), "run_index": 0}


def compare_command(paths: list[Path]) -> int:
    from engines.console import wide_console
    from stream.bench.report import KIND, compare_table

    reports = []
    for path in paths:
        data = json.loads(Path(path).read_text())
        if data.get("kind") != KIND:
            raise ValueError(f"{path} is not a hidemo bench report (kind {data.get('kind')!r})")
        reports.append(data)
    wide_console().print(compare_table(reports[0], reports[1]))
    return 0
