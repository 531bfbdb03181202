"""``hidemo bench scale``: several pipelines at once, on local engines and on one Triton.

Each pipeline is its own ``hidemo run`` process (its own supervisor and stages, as on a
host of its own), all started together with ``K`` streams each. Every pipeline count runs
twice in one bench: with local engines, then with the heavy encoders served by one Triton
server (``--triton URL``, or a ``hidemo serve-engines`` the bench starts and stops), so the
two are measured on the same machine, minutes apart. Per pipeline the figures are those of
``hidemo bench pipeline`` (:func:`stream.bench.pipeline.pipeline_figures`), and for the
Triton runs Triton's own statistics over the run (the difference of its statistics API
before and after): requests, executions, the batch sizes it formed, queue and compute time
per model.

Example:
    hidemo bench scale --pipelines 1 2 4 --streams-per-pipeline 1 --duration 20
    hidemo bench scale --pipelines 2 --triton 10.0.0.5:8001 --token-file triton.token
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parser is built on every hidemo command: nothing heavy at import
    from stream.bench.pipeline import Scenario
    from stream.config import RunConfig

log = logging.getLogger(__name__)

SERVED = ("image_embedder", "text_embedder", "detector")
READY_TIMEOUT_S = 600.0
RUN_GRACE_S = 180.0
"""Beyond its duration, how long a pipeline may take to start and stop before it is ended."""


def add_scale_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="edge", help="engine profile (default: edge)")
    parser.add_argument("--engine-dir", type=Path, default=None,
                        help="engines folder (default: artifacts/engines/PROFILE)")
    parser.add_argument("--pipelines", type=int, nargs="+", default=[1, 2, 4], metavar="N",
                        help="pipeline counts to run (default: 1 2 4)")
    parser.add_argument("--streams-per-pipeline", type=int, default=1, metavar="K")
    parser.add_argument("--mode", choices=("paced", "saturated"), default="saturated",
                        help="sources at their frame rate, or as fast as each pipeline "
                             "takes frames (default)")
    parser.add_argument("--duration", type=float, default=20.0, metavar="S",
                        help="measured seconds per run (default: 20)")
    parser.add_argument("--warmup-s", type=float, default=3.0, metavar="S")
    parser.add_argument("--source", default="demo", help="every stream's source (default: demo)")
    parser.add_argument("--triton", default=None, metavar="HOST:PORT",
                        help="a running Triton (gRPC) serving these engines (default: start "
                             "hidemo serve-engines for the bench)")
    parser.add_argument("--token-file", type=Path, default=None,
                        help="that server's access token (needed for its statistics)")
    parser.add_argument("--http-port", type=int, default=None,
                        help="that server's HTTP port, for its statistics (default: gRPC "
                             "port - 1, Triton's layout)")
    parser.add_argument("--backends", nargs="+", choices=("local", "triton"),
                        default=["local", "triton"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override every pipeline's run config")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="report folder (default: artifacts/bench/scale-TIME)")


def scale_command(args: argparse.Namespace) -> int:
    """Run every (backend, pipeline count) and write ``DIR/report.json``."""
    from engines.console import wide_console
    from engines.provenance import git_commit, library_versions, machine_info, utc_now
    from stream.bench.report import load_average

    engine_dir = args.engine_dir or Path("artifacts") / "engines" / args.profile
    if not (engine_dir / "classifier.manifest.json").is_file():
        raise FileNotFoundError(
            f"no engines in {engine_dir}; build them first: hidemo engines build --profile "
            f"{args.profile} --engine-dir {engine_dir}")
    out = args.out or Path("artifacts") / "bench" / f"scale-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    server = None
    url, token_file, http_port = args.triton, args.token_file, args.http_port
    report: dict[str, Any] = {
        "kind": "hidemo-bench-scale", "created": utc_now(), "git_commit": git_commit(),
        "machine": machine_info(), "versions": library_versions(),
        "load_average_before": load_average(), "profile": args.profile,
        "engine_dir": str(engine_dir), "command": " ".join(sys.argv), "runs": []}
    try:
        if "triton" in args.backends and url is None:
            server = StartedServer.start(engine_dir, out / "serve")
            url, token_file, http_port = server.url, server.token_file, server.http_port
        report["triton"] = {"url": url, "started_by_bench": server is not None}
        for count in args.pipelines:
            for backend in args.backends:
                label = f"{count}x{args.streams_per_pipeline}-{backend}"
                folder = out / "runs" / label
                stats = None if backend == "local" else TritonStats(url, http_port,
                                                                    token_file)
                before = None if stats is None else stats.snapshot()
                runs = run_pipelines(args, engine_dir, folder, count,
                                     None if backend == "local" else (url, token_file))
                served = None if stats is None else stats.delta(before, stats.snapshot())
                report["runs"].append(combine(label, backend, count, runs, served))
                log.info("bench scale: %s done", label)
    finally:
        if server is not None:
            server.stop()
    report["load_average_after"] = load_average()
    path = out / "report.json"
    path.write_text(json.dumps(report, indent=1, default=str))
    wide_console().print(scale_table(report))
    print(f"report: {path}", file=sys.stderr)
    failed = [r["label"] for r in report["runs"] if r["failed"]]
    if failed:
        print(f"pipelines failed in {failed} (logs under {out}/runs)", file=sys.stderr)
    return 1 if failed else 0


def run_pipelines(args: argparse.Namespace, engine_dir: Path, folder: Path, count: int,
                  triton: tuple[str, Path | None] | None) -> list[dict[str, Any]]:
    """``count`` ``hidemo run`` processes started together; each one's figures."""
    from stream.bench.pipeline import PipelineSetup, Scenario, scenario_config

    overrides = list(args.set)
    if triton is not None:
        url, token_file = triton
        overrides += ["backend=triton", f"triton.url={url}"]
        if token_file is not None:
            overrides.append(f"triton.token_file={token_file}")
    setup = PipelineSetup(profile=args.profile, engine_dir=engine_dir,
                          sources=(args.source,), overrides=tuple(overrides))
    scenario = Scenario(args.streams_per_pipeline, args.mode, args.duration,
                        warmup_s=args.warmup_s)
    started = []
    for index in range(count):
        out = (folder / f"p{index}").resolve()
        out.mkdir(parents=True, exist_ok=True)
        config = scenario_config(setup, scenario, out)
        config = config.model_copy(update={"duration": args.duration + args.warmup_s})
        path = out / "bench-run.json"
        path.write_text(json.dumps(config.model_dump(mode="json")))
        log_file = open(out / "console.log", "w")  # noqa: SIM115 - closed below
        process = subprocess.Popen([sys.executable, "-m", "hidemo", "run", "--config",
                                    str(path)], stdout=log_file, stderr=subprocess.STDOUT)
        started.append((out, config, process, log_file))
    figures = []
    for out, config, process, log_file in started:
        try:
            code = process.wait(args.duration + args.warmup_s + RUN_GRACE_S)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            code = process.wait(60)
        log_file.close()
        figures.append(pipeline_result(out, config, scenario, code))
    return figures


def pipeline_result(out: Path, config: RunConfig, scenario: Scenario,
                    code: int) -> dict[str, Any]:
    from stream.bench.figures import read_jsonl
    from stream.bench.pipeline import pipeline_figures

    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    figures = pipeline_figures(scenario, config, summary,
                               read_jsonl(out / "frames.jsonl"),
                               read_jsonl(out / "predictions.jsonl"))
    figures.pop("timeline", None)
    figures["exit_code"] = code
    figures["out"] = str(out)
    figures["served"] = summary.get("served", {})
    return figures


def combine(label: str, backend: str, count: int, runs: list[dict[str, Any]],
            served: dict[str, Any] | None) -> dict[str, Any]:
    """One row: total and per-pipeline throughput, e2e latency over every pipeline."""
    from stream.bench.figures import percentiles

    latencies: list[float] = []
    for run in runs:
        for stream in run["streams"].values():
            # per stream percentiles are kept; the row's latency pools each pipeline's p50
            if stream["e2e_latency_ms"]:
                latencies.append(stream["e2e_latency_ms"]["p50"])
    per_pipeline = [run["throughput_fps"] for run in runs]
    return {
        "label": label, "backend": backend, "pipelines": count,
        "total_fps": round(sum(per_pipeline), 3), "per_pipeline_fps": per_pipeline,
        "e2e_p50_ms": _pooled(runs, "p50"), "e2e_p95_ms": _pooled(runs, "p95"),
        "stream_p50s_ms": percentiles(latencies),
        "predictions": sum(run["predictions"] for run in runs),
        "failed": [run["out"] for run in runs if run["exit_code"]],
        "triton": served, "runs": runs,
    }


def _pooled(runs: list[dict[str, Any]], key: str) -> float | None:
    """The mean over pipelines of their e2e percentile ``key`` (None when none predicted)."""
    values = [run["e2e_latency_ms"][key] for run in runs if run["e2e_latency_ms"]]
    return round(sum(values) / len(values), 1) if values else None


class TritonStats:
    """Triton's statistics API (HTTP, with the access token), per model."""

    def __init__(self, url: str, http_port: int | None, token_file: Path | None) -> None:
        host, _, port = url.rpartition(":")
        self.url = f"{host}:{http_port or int(port) - 1}"
        self.headers = None if token_file is None else {
            "triton-access-token": Path(token_file).read_text().strip()}

    def snapshot(self) -> dict[str, dict[str, Any]]:
        import tritonclient.http as http

        client = http.InferenceServerClient(self.url)
        try:
            stats = client.get_inference_statistics(headers=self.headers)
        except Exception as error:  # noqa: BLE001 - statistics are a bonus, not the bench
            log.warning("Triton statistics at %s unavailable (%s)", self.url, error)
            return {}
        finally:
            client.close()
        return {m["name"]: m for m in stats.get("model_stats", [])}

    @staticmethod
    def delta(before: dict[str, Any] | None, after: dict[str, Any]) -> dict[str, Any]:
        """Per model over the run: requests, executions, mean batch, batch sizes formed,
        queue and compute time."""
        out = {}
        for name, now in after.items():
            was = (before or {}).get(name, {})
            requests = _count(now, "success") - _count(was, "success")
            executions = int(now.get("execution_count", 0)) - int(was.get("execution_count", 0))
            if requests <= 0:
                continue
            batches = {}
            old = {int(b["batch_size"]): int(b["compute_infer"]["count"])
                   for b in was.get("batch_stats", [])}
            for item in now.get("batch_stats", []):
                size = int(item["batch_size"])
                formed = int(item["compute_infer"]["count"]) - old.get(size, 0)
                if formed:
                    batches[size] = formed
            items = sum(size * n for size, n in batches.items())
            out[name] = {
                "requests": requests, "executions": executions,
                "mean_batch": round(items / max(1, sum(batches.values())), 2),
                "batches": dict(sorted(batches.items())),
                "queue_ms_per_request": _ms(now, was, "queue", requests),
                "compute_ms_per_execution": round(
                    sum(_ns(now, k) - _ns(was, k) for k in
                        ("compute_input", "compute_infer", "compute_output"))
                    / 1e6 / max(1, executions), 2),
            }
        return out


def _count(stats: dict[str, Any], key: str) -> int:
    return int(stats.get("inference_stats", {}).get(key, {}).get("count", 0))


def _ns(stats: dict[str, Any], key: str) -> int:
    return int(stats.get("inference_stats", {}).get(key, {}).get("ns", 0))


def _ms(now: dict[str, Any], was: dict[str, Any], key: str, per: int) -> float:
    return round((_ns(now, key) - _ns(was, key)) / 1e6 / max(1, per), 2)


class StartedServer:
    """``hidemo serve-engines`` started for the bench on free loopback ports."""

    def __init__(self, process: subprocess.Popen[str], grpc_port: int, http_port: int,
                 state_dir: Path) -> None:
        self.process = process
        self.http_port = http_port
        self.url = f"127.0.0.1:{grpc_port}"
        self.token_file = state_dir / "token"

    @classmethod
    def start(cls, engine_dir: Path, state_dir: Path) -> StartedServer:
        grpc_port, http_port = _free_ports(2)
        names = [n for n in SERVED if (engine_dir / f"{n}.manifest.json").is_file()]
        process = subprocess.Popen(
            [sys.executable, "-m", "hidemo", "serve-engines", "--engine-dir", str(engine_dir),
             "--engines", *names, "--bind", f"127.0.0.1:{grpc_port}", "--http-port",
             str(http_port), "--state-dir", str(state_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        server = cls(process, grpc_port, http_port, state_dir)
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.put(line)
                log.info("serve-engines: %s", line.rstrip())

        threading.Thread(target=pump, daemon=True).start()
        from engines.serving.server import READY

        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                if READY in lines.get(timeout=1.0):
                    return server
            except queue.Empty:
                if process.poll() is not None:
                    break
        server.stop()
        raise RuntimeError(f"hidemo serve-engines did not become ready; see "
                           f"{state_dir / 'triton.log'}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [probe.getsockname()[1] for probe in sockets]
    finally:
        for probe in sockets:
            probe.close()


def scale_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"bench scale ({report['profile']})")
    for column in ("pipelines", "backend", "total fps", "per pipeline fps", "e2e p50 ms",
                   "e2e p95 ms", "Triton: requests/executions", "mean batch",
                   "queue ms/req", "compute ms/exec"):
        table.add_column(column)
    for row in report["runs"]:
        model = (row.get("triton") or {}).get("image_embedder", {})
        table.add_row(
            str(row["pipelines"]), row["backend"], f"{row['total_fps']:.2f}",
            " ".join(f"{v:.2f}" for v in row["per_pipeline_fps"]),
            _text(row["e2e_p50_ms"]), _text(row["e2e_p95_ms"]),
            f"{model['requests']}/{model['executions']}" if model else "",
            _text(model.get("mean_batch")), _text(model.get("queue_ms_per_request")),
            _text(model.get("compute_ms_per_execution")))
    return table


def _text(value: object) -> str:
    return "" if value is None else str(value)
