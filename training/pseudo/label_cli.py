"""``hidemo label ...``: pseudo-label a manifest's videos with a teacher, and report on it.

Only argparse at import time (``hidemo`` builds every parser for ``--help``): the
providers, OpenCV and the perception core load inside :func:`label_command`.

API keys come from the environment only (``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``,
``OPENAI_API_KEY``, or the variable ``--api-key-env`` names), never from the command line,
where shell history and ``ps`` would keep them.

Example:
    hidemo label --manifest data/imigue.csv --provider gemini --out artifacts/labels.sqlite
    hidemo label --manifest m.csv --provider openai --model qwen2.5-vl \\
        --base-url http://localhost:11434/v1 --crop frame --out labels.sqlite
    hidemo label report --store artifacts/labels.sqlite --manifest data/imigue.csv
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: nothing heavy loads for --help
    from engines.adapters.perception import PerceptionCore
    from training.pseudo.records import Labeler, Sampling

PROVIDERS = ("gemini", "openai", "teacher")
STRUCTURED = ("auto", "json_schema", "json_object", "none")
SELECT = ("unlabelled", "all")
DEFAULT_GEMINI_MODEL = "gemini-2.5-pro"
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY")
"""Where the providers look for keys; their values are also redacted from stored errors."""


def add_label_parser(jobs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``label`` (and ``label report``) to the ``hidemo`` job parsers."""
    label = jobs.add_parser(
        "label", help="pseudo-label videos with a VLM or a trained checkpoint (teacher)",
        description="Label a manifest's videos with a teacher: a VLM (chain of thought, then "
                    "reflection) or a trained hidemo checkpoint. Answers go to a SQLite "
                    "label store keyed by video content, prompt version, provider, model and "
                    "sampling: a rerun never pays twice and resumes a killed run. "
                    "`hidemo label report` summarises a store. Keys come from the "
                    "environment (GEMINI_API_KEY, OPENAI_API_KEY, or --api-key-env).")
    label.add_argument("--manifest", type=Path, metavar="FILE",
                       help="CSV: video_id, path, label, subject, split[, transcript]")
    label.add_argument("--provider", choices=PROVIDERS,
                       help="gemini (Google's API), openai (any OpenAI-compatible server: "
                            "OpenAI, vLLM, Ollama, LM Studio) or teacher (a checkpoint)")
    label.add_argument("--out", type=Path, metavar="STORE",
                       help="label store file (SQLite; created, or resumed)")
    label.add_argument("--model", default=None,
                       help=f"model name (gemini default: {DEFAULT_GEMINI_MODEL}; required "
                            "for openai)")
    label.add_argument("--base-url", default=None, metavar="URL",
                       help=f"server address (openai default: {DEFAULT_OPENAI_URL}; gemini: "
                            "Google's)")
    label.add_argument("--api-key-env", default=None, metavar="NAME",
                       help="read the API key from this environment variable (default: "
                            "the provider's own, GEMINI_API_KEY or OPENAI_API_KEY)")
    label.add_argument("--structured", choices=STRUCTURED, default="auto",
                       help="openai: how the JSON answer is enforced (json_schema, "
                            "json_object, none; auto falls back as the server allows) "
                            "(default: %(default)s)")
    label.add_argument("--prompts", default="v1", metavar="VERSION",
                       help="prompt version under training/pseudo/prompts (default: "
                            "%(default)s)")
    label.add_argument("--frames", type=int, default=8,
                       help="images per video, evenly over it (default: %(default)s)")
    label.add_argument("--size", type=int, default=448,
                       help="longest side of each image, pixels (default: %(default)s)")
    label.add_argument("--jpeg-quality", type=int, default=85,
                       help="JPEG quality 1-100 (default: %(default)s)")
    label.add_argument("--crop", choices=("person", "frame"), default="person",
                       help="show the most prominent person's crop (the perception core's) "
                            "or the whole frame (default: %(default)s)")
    label.add_argument("--select", choices=SELECT, default="unlabelled",
                       help="which manifest rows: those with no label, or all (default: "
                            "%(default)s)")
    label.add_argument("--ids", default=None, metavar="A,B,...",
                       help="only these video ids (overrides --select)")
    label.add_argument("--max-attempts", type=int, default=5,
                       help="provider calls per step, retries included (default: "
                            "%(default)s)")
    label.add_argument("--force", action="store_true",
                       help="label again (and pay again) even where the store has an answer")
    label.add_argument("--profile", default="edge",
                       help="crop person: the profile whose detector engine finds the person "
                            "(default: %(default)s)")
    label.add_argument("--engine-dir", type=Path, default=None,
                       help="crop person: where engines live (default: "
                            "artifacts/engines/PROFILE)")
    label.add_argument("--detector", choices=("auto", "yolo", "mediapipe"), default="auto",
                       help="crop person: the profile's YOLO engine, MediaPipe Pose, or auto "
                            "(YOLO when built with real weights, else MediaPipe) (default: "
                            "%(default)s)")
    label.add_argument("--teacher", type=Path, default=None, metavar="RUN",
                       help="teacher: a `hidemo train --out` folder or checkpoint")
    label.add_argument("--features", type=Path, default=None, metavar="STORE",
                       help="teacher: the feature store holding the manifest's videos")
    commands = label.add_subparsers(dest="command", metavar="{report}")
    report = commands.add_parser(
        "report", help="summarise a label store: counts, agreement with gold, calibration",
        description="What a label store holds: outcomes per teacher, label balance, cost, "
                    "and, with a manifest, agreement with the gold labels and calibration.")
    report.add_argument("--store", type=Path, required=True, help="the label store")
    report.add_argument("--manifest", type=Path, default=None, metavar="FILE",
                        help="compare with this manifest's gold labels")
    report.add_argument("--plot", type=Path, default=None, metavar="PNG",
                        help="write a reliability diagram")
    report.add_argument("--provider", default=None, help="only this provider's outcomes")
    report.add_argument("--model", default=None, help="only this model's outcomes")
    report.add_argument("--prompts", default=None, metavar="VERSION",
                        help="only this prompt version, in full (e.g. v1-1a2b3c4d, as the "
                             "store lists it)")
    return label


def label_command(args: argparse.Namespace) -> int:
    """Run ``hidemo label`` or ``hidemo label report``: 0 all done, 1 some videos failed or
    were skipped; bad arguments raise ValueError (``hidemo`` prints it and exits 2)."""
    if getattr(args, "command", None) == "report":
        return _report_command(args)
    return _label_command(args)


def _require(args: argparse.Namespace, *names: str, why: str = "") -> None:
    missing = [f"--{name.replace('_', '-')}" for name in names
               if getattr(args, name, None) is None]
    if missing:
        raise ValueError(f"label {why}needs {' and '.join(missing)}")


def _sampling(args: argparse.Namespace) -> Sampling:
    from training.pseudo.records import CropMode, Sampling
    from training.pseudo.sampling import check_sampling

    sampling = Sampling(frames=args.frames, size=args.size, crop=CropMode(args.crop),
                        jpeg_quality=args.jpeg_quality)
    try:
        check_sampling(sampling)
    except ValueError as error:
        raise ValueError(f"--frames/--size/--jpeg-quality: {error}") from None
    return sampling


def _secrets(args: argparse.Namespace) -> list[str]:
    names = [*KEY_VARIABLES, *([args.api_key_env] if args.api_key_env else [])]
    return [os.environ[name] for name in names if os.environ.get(name)]


def _api_key(args: argparse.Namespace) -> str | None:
    if args.api_key_env is None:
        return None
    key = os.environ.get(args.api_key_env)
    if not key:
        raise ValueError(f"--api-key-env {args.api_key_env}: that environment variable is "
                         "not set (or empty)")
    return key


def _labeler(args: argparse.Namespace) -> Labeler:
    from training.pseudo.providers.base import ProviderError

    if args.max_attempts < 1:
        raise ValueError(f"--max-attempts is {args.max_attempts}; it must be at least 1")
    if args.provider == "teacher":
        _require(args, "teacher", "features", why="--provider teacher ")
        from training.pseudo.teacher import CheckpointTeacher

        return CheckpointTeacher.from_run(args.teacher, args.features)
    from training.pseudo.labeler import VlmLabeler
    from training.pseudo.prompts import load_prompts
    from training.pseudo.retry import RetryPolicy

    prompts = load_prompts(args.prompts)
    try:
        if args.provider == "gemini":
            from training.pseudo.providers.gemini import GeminiProvider

            provider = GeminiProvider(model=args.model or DEFAULT_GEMINI_MODEL,
                                      api_key=_api_key(args), base_url=args.base_url)
        else:
            _require(args, "model", why="--provider openai ")
            from training.pseudo.providers.openai_compat import OpenAICompatProvider

            provider = OpenAICompatProvider(args.model, args.base_url or DEFAULT_OPENAI_URL,
                                            api_key=_api_key(args),
                                            structured=args.structured)
    except ProviderError as error:  # no key, bad URL: a configuration error
        raise ValueError(str(error)) from None
    return VlmLabeler(provider, prompts, RetryPolicy(max_attempts=args.max_attempts),
                      redact=_secrets(args))


CHATTY_LOGGERS = ("httpx", "httpx2", "google_genai", "openai")
"""Clients that log every request at INFO: one line per call drowns the per-video lines
(``-v`` shows them again)."""


def _label_command(args: argparse.Namespace) -> int:
    import logging

    from training.data.manifest import read_manifest
    from training.pseudo.label_job import run_labelling, select_rows
    from training.pseudo.sampling import open_person_core
    from training.pseudo.store import LabelStore

    _require(args, "manifest", "provider", "out")
    if not getattr(args, "verbose", False):
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    sampling = _sampling(args)
    select = [i.strip() for i in args.ids.split(",") if i.strip()] if args.ids else args.select
    if args.ids is not None and not select:
        raise ValueError("--ids is empty; give video ids separated by commas")
    rows = read_manifest(args.manifest)
    select_rows(rows, select)  # unknown ids: an error before any model or client loads
    engine_dir = args.engine_dir or Path("artifacts") / "engines" / args.profile

    def core_factory() -> PerceptionCore:
        return open_person_core(engine_dir, args.detector, profile=args.profile)

    labeler = _labeler(args)
    try:
        with LabelStore.open(args.out) as store:
            print(f"labelling with {labeler.provider} {labeler.model}, prompts "
                  f"{labeler.prompt_version}, sampling {sampling.key()} into {args.out}")
            summary = run_labelling(rows, labeler, store, sampling, core_factory,
                                    select=select, say=lambda line: print(line, flush=True),
                                    force=args.force)
    finally:
        labeler.close()
    for skipped in summary.skipped:
        print(f"skipped: {skipped}")
    if summary.no_person_frames:
        print(f"no person found in {summary.no_person_frames} sampled frame(s); those "
              "were shown whole")
    print(summary.line())
    return summary.exit_code


def _report_command(args: argparse.Namespace) -> int:
    from training.data.manifest import read_manifest
    from training.pseudo.report import report_from_store, write_reliability_plot
    from training.pseudo.store import LabelStore

    if not args.store.is_file():
        raise FileNotFoundError(f"label store {args.store} does not exist; make one with "
                                "`hidemo label --out STORE`")
    rows = read_manifest(args.manifest) if args.manifest else []
    with LabelStore.open(args.store) as store:
        report = report_from_store(store, rows, provider=args.provider, model=args.model,
                                   prompt_version=args.prompts)
    print(report.to_text())
    if args.plot is not None:
        write_reliability_plot(report, args.plot)
        print(f"reliability plot: {args.plot}")
    return 0
