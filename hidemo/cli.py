"""The ``hidemo`` command: parses arguments and hands each job to the package that owns it.

This is the one module that may reach every package; it stays thin and imports each
package's command lazily, so ``hidemo bench`` never loads training code and ``--help`` is
instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from engines.backends.onnxruntime import ProviderUnavailable
from engines.backends.tensorrt import BackendUnavailable
from engines.manifest import EngineRefused

DEFAULT_PROFILE = "edge"
BENCH_BACKENDS = ("torch", "onnxruntime", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt",
                  "tflite")
"""Mirrors ``stream.bench.engines.VARIANTS`` (a test keeps them equal) so --help stays light."""


def default_engine_dir(profile: str) -> Path:
    return Path("artifacts") / "engines" / profile


def _add_engine_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default=DEFAULT_PROFILE,
                        help="model set: paper, edge or tiny (default: %(default)s)")
    parser.add_argument("--engine-dir", type=Path, default=None,
                        help="where engines live (default: artifacts/engines/PROFILE)")
    parser.add_argument("--weights-dir", type=Path, default=Path("weights"),
                        help="checkpoints folder: yolo11x.pt, facebook/dinov2-base/, ... "
                             "(default: %(default)s); absent models get random weights")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hidemo", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    jobs = parser.add_subparsers(dest="job", required=True)

    engines = jobs.add_parser("engines", help="build and inspect perception engines")
    engine_cmds = engines.add_subparsers(dest="command", required=True)
    build = engine_cmds.add_parser("build", help="export, verify and install a profile's engines")
    _add_engine_args(build)
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")
    build.add_argument("--only", nargs="+", metavar="ENGINE",
                       help="build only these (detector, image_embedder, text_embedder, "
                            "classifier, kp_pose_detection, kp_pose_landmark, ...)")
    build.add_argument("--convert-env", type=Path, default=Path("artifacts/build-env"),
                       help="where the TFLite->ONNX conversion environment (TensorFlow, "
                            "tf2onnx) is created once and reused (default: %(default)s)")
    build.add_argument("--int8", action="store_true",
                       help="also build classifier_int8 (dynamic int8 of the classifier, "
                            "for CPUs)")
    build.add_argument("--tensorrt", action="store_true",
                       help="then build a TensorRT plan of every engine in the folder for this "
                            "GPU and TensorRT (needs TensorRT >= 10 and a CUDA GPU)")
    build.add_argument("--trt-fp32", action="store_true",
                       help="TensorRT plans in fp32 (default: fp16 kernels allowed)")
    build.add_argument("--trt-axis", action="append", default=[], metavar="NAME=MIN,OPT,MAX",
                       help="range of a dynamic axis in the plans' optimization profile, e.g. "
                            "batch=1,4,16 (repeatable; defaults in export/tensorrt_plans.py)")
    build.add_argument("--trt-workspace-mb", type=int, default=1024,
                       help="TensorRT builder workspace (default: %(default)s MiB)")
    build.add_argument("--trt-device", type=int, default=0,
                       help="CUDA device to build the plans for (default: %(default)s)")
    evaluate = engine_cmds.add_parser(
        "evaluate", help="score the built classifier engines on a training run's test set "
                         "(fp32 against torch, int8 drift)")
    evaluate.add_argument("--run", type=Path, required=True, help="a `hidemo train --out` folder")
    evaluate.add_argument("--engine-dir", type=Path, default=None,
                          help="(default: artifacts/engines/PROFILE of the run)")
    listing = engine_cmds.add_parser("list", help="show each engine and its state")
    _add_engine_args(listing)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")

    from engines.serving.export_cli import add_export_triton_parser  # argparse only

    add_export_triton_parser(engine_cmds)

    bench = jobs.add_parser("bench", help="measure latency and throughput")
    bench_cmds = bench.add_subparsers(dest="command")  # none: `bench all`
    bench_engines = bench_cmds.add_parser("engines", help="each engine alone, per backend")
    _add_engine_args(bench_engines)
    bench_engines.add_argument("--json", type=Path, metavar="FILE", help="write a JSON report")
    bench_engines.add_argument("--backends", nargs="+", default=None, choices=BENCH_BACKENDS,
                               help="(default: every one present on this machine)")
    bench_engines.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4, 8])
    bench_engines.add_argument("--seq-lens", nargs="+", type=int, default=[16, 64, 128],
                               help="token counts for the text embedder")
    bench_engines.add_argument("--engines", nargs="+", default=None, metavar="ENGINE",
                               help="only these engines")
    bench_engines.add_argument("--warmup", type=int, default=2)
    bench_engines.add_argument("--iters", type=int, default=10,
                               help="timed runs per case, at most (see --max-seconds)")
    bench_engines.add_argument("--max-seconds", type=float, default=3.0,
                               help="stop timing a case after this long (at least 3 runs)")
    bench_engines.add_argument("--threads", type=int, default=0,
                               help="intra-op threads per engine (0: runtime default)")
    bench_engines.add_argument("--windows", type=float, nargs="+", default=None,
                               metavar="SECONDS",
                               help="classifier window lengths (default: the engine's)")

    from stream.bench.cli import add_bench_commands  # argparse only

    add_bench_commands(bench, bench_cmds)

    from training.train_cli import add_train_parser  # argparse only: no torch at import

    add_train_parser(jobs)

    from training.cli import add_features_parser  # argparse only

    add_features_parser(jobs)

    from training.pseudo.label_cli import add_label_parser  # argparse only

    add_label_parser(jobs)

    from stream.run.cli import add_run_parser  # argparse only

    add_run_parser(jobs)

    from stream.report.cli import add_report_parser  # argparse only

    add_report_parser(jobs)

    serve = jobs.add_parser(
        "serve-engines", help="serve verified engines with Triton Inference Server "
                              "(supervised; pipelines use it with --set backend=triton)")
    serve.add_argument("--profile", default="edge",
                       help="engine profile whose folder to serve (default: edge)")
    serve.add_argument("--engine-dir", type=Path, default=None,
                       help="where engines live (default: artifacts/engines/PROFILE)")
    serve.add_argument("--engines", nargs="+", default=None, metavar="ENGINE",
                       help="only these engines (default: every engine in the folder)")
    serve.add_argument("--bind", default="127.0.0.1:8001", metavar="HOST:PORT",
                       help="gRPC address (default: loopback 127.0.0.1:8001; any other "
                            "address puts inference behind the access token too)")
    serve.add_argument("--http-port", type=int, default=8000,
                       help="HTTP port, on the --bind host (default: 8000)")
    serve.add_argument("--metrics-bind", default=None, metavar="HOST:PORT",
                       help="Triton's Prometheus metrics (default: off)")
    serve.add_argument("--metrics-public", action="store_true",
                       help="allow a non-loopback --metrics-bind (no access control there)")
    serve.add_argument("--model-prefix", default="",
                       help="served name = prefix + engine name (set triton.model_prefix "
                            "to match)")
    serve.add_argument("--max-batch-size", type=int, default=16)
    serve.add_argument("--preferred-batch-sizes", type=int, nargs="+", default=[4, 8])
    serve.add_argument("--max-queue-delay-us", type=int, default=5000,
                       help="how long a request may wait for others to join its batch")
    serve.add_argument("--instances", type=int, default=1, help="model instances per engine")
    serve.add_argument("--threads", type=int, default=0,
                       help="onnxruntime threads per instance (0: onnxruntime's choice)")
    serve.add_argument("--state-dir", type=Path, default=Path("artifacts/serve"),
                       help="token, log (triton.log) and the server's scratch folders")
    serve.add_argument("--token-file", type=Path, default=None,
                       help="access token file (default: STATE_DIR/token, made once, 0600)")
    serve.add_argument("--env-root", type=Path, default=Path("artifacts/serve-env"),
                       help="where the serving environment (PyTriton, numpy<2) is made")
    serve.add_argument("--max-restarts", type=int, default=None,
                       help="give up after this many restarts (default: never)")

    keys = jobs.add_parser("keys", help="make CurveZMQ keys for endpoints outside loopback")
    keys.add_argument("--out", type=Path, required=True, metavar="DIR",
                      help="writes server.key(_secret), client.key(_secret) and "
                           "authorized_clients/; set endpoints.curve.dir=DIR")
    keys.add_argument("--force", action="store_true",
                      help="replace existing keys (every client must get the new ones)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "engine_dir", "unset") is None and getattr(args, "profile", None):
        args.engine_dir = default_engine_dir(args.profile)
    try:
        if args.job == "engines" and args.command == "build":
            from export.cli import build_command

            return build_command(args)
        if args.job == "engines" and args.command == "evaluate":
            from export.evaluate import evaluate_command, run_profile

            engine_dir = args.engine_dir or default_engine_dir(run_profile(args.run))
            return evaluate_command(args.run, engine_dir)
        if args.job == "engines" and args.command == "list":
            from engines.cli import list_command

            return list_command(args)
        if args.job == "engines" and args.command == "export-triton":
            from engines.serving.export_cli import export_triton_command

            return export_triton_command(args)
        if args.job == "run":
            from stream.run.cli import run_command

            return run_command(args)
        if args.job == "report":
            from stream.report.cli import report_command

            return report_command(args)
        if args.job == "train":
            from training.train_cli import train_command

            return train_command(args)
        if args.job == "features":
            from training.cli import features_command

            return features_command(args)
        if args.job == "label":
            from training.pseudo.label_cli import label_command

            return label_command(args)
        if args.job == "serve-engines":
            from engines.serving.server import serve_command

            return serve_command(args)
        if args.job == "keys":
            from stream.transport.curve import keys_command

            return keys_command(args.out, force=args.force)
        if args.job == "bench" and args.command == "engines":
            from stream.bench.engines_cli import bench_engines_command

            return bench_engines_command(args)
        if args.job == "bench":
            from stream.bench.cli import bench_command

            return bench_command(args)
    except KeyboardInterrupt:
        return 130
    except (ValueError, FileNotFoundError, FileExistsError, EngineRefused,
            BackendUnavailable, ProviderUnavailable) as exc:
        # A user error (bad profile, missing weights folder, stale engine, a backend this
        # machine lacks): the message says what to do; a traceback would only hide it.
        # -v shows the traceback.
        if args.verbose:
            raise
        print(f"hidemo: error: {exc}", file=sys.stderr)
        return 2
    raise AssertionError(f"unhandled command {args.job} {getattr(args, 'command', '')}")


if __name__ == "__main__":
    sys.exit(main())
