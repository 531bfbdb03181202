"""``hidemo label ...``: pseudo-label a manifest's videos with a teacher, and report on it.

Only argparse at import time (``hidemo`` builds every parser for ``--help``): the
providers, OpenCV and the perception core load inside :func:`label_command`.

API keys come from the environment only (``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``,
``OPENAI_API_KEY``, or the variable ``--api-key-env`` names), never from the command line
or a config file, where shell history, ``ps`` and copies of the file would keep them.
Every key variable set, and any credential written into ``--base-url``, is blanked from
everything the run stores, logs or prints (:mod:`training.pseudo.redact`).

Options override the fields of a JSON ``--config`` file
(:class:`training.pseudo.label_config.LabelConfig`).

Exit status of ``hidemo label``: 0 when every selected video has a final answer (labelled
or refused, now or in an earlier run); 1 when any video failed (retries spent), was
skipped (unreadable, missing) or the run stopped after failures in a row (a rerun
retries exactly those); 2 for bad arguments or settings (nothing was called).

Example:
    hidemo label --manifest data/imigue.csv --provider gemini --out artifacts/labels.sqlite
    hidemo label --manifest m.csv --provider openai --model qwen2.5-vl \\
        --base-url http://localhost:11434/v1 --crop frame --timeout-s 30 --out labels.sqlite
    hidemo label report --store artifacts/labels.sqlite --manifest data/imigue.csv --per-video
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from training.pseudo.label_defaults import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_RETRY_AFTER_S,
    DEFAULT_TIMEOUT_S,
)

if TYPE_CHECKING:  # annotations only: nothing heavy loads for --help
    from engines.adapters.perception import PerceptionCore
    from training.pseudo.label_config import LabelConfig
    from training.pseudo.records import Labeler, Sampling
    from training.pseudo.redact import Redactor

log = logging.getLogger("hidemo.label")

PROVIDERS = ("gemini", "openai", "teacher")
STRUCTURED = ("auto", "json_schema", "json_object", "none")
SELECT = ("unlabelled", "all")
DEFAULT_GEMINI_MODEL = "gemini-2.5-pro"
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"
KEY_VARIABLES = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "OPENAI_API_KEY")
"""Where the providers look for keys; every one set is redacted from what a run keeps."""


def add_label_parser(jobs: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``label`` (and ``label report``) to the ``hidemo`` job parsers. Options default
    to None so that a ``--config`` file's fields apply unless an option is given; the
    defaults shown are :class:`~training.pseudo.label_config.LabelConfig`'s."""
    label = jobs.add_parser(
        "label", help="pseudo-label videos with a VLM or a trained checkpoint (teacher)",
        description="Label a manifest's videos with a teacher: a VLM (chain of thought, then "
                    "reflection) or a trained hidemo checkpoint. Answers go to a SQLite "
                    "label store keyed by video content, prompt version, provider, model and "
                    "sampling: a rerun never pays twice and resumes a killed run. "
                    "`hidemo label report` summarises a store. Keys come from the "
                    "environment (GEMINI_API_KEY, OPENAI_API_KEY, or --api-key-env). Exit "
                    "status: 0 every selected video has an answer; 1 some failed, were "
                    "skipped, or the run stopped (rerun to retry them); 2 bad arguments.")
    label.add_argument("--config", type=Path, default=None, metavar="FILE",
                       help="JSON file of these settings (field names with _ for -); options "
                            "given here override it")
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
    label.add_argument("--structured", choices=STRUCTURED, default=None,
                       help="openai: how the JSON answer is enforced (json_schema, "
                            "json_object, none; auto falls back as the server allows) "
                            "(default: auto)")
    label.add_argument("--prompts", default=None, metavar="VERSION",
                       help="prompt version under training/pseudo/prompts (default: v1)")
    label.add_argument("--frames", type=int, default=None,
                       help="images per video, evenly over it (default: 8)")
    label.add_argument("--size", type=int, default=None,
                       help="longest side of each image, pixels (default: 448)")
    label.add_argument("--jpeg-quality", type=int, default=None,
                       help="JPEG quality 1-100 (default: 85)")
    label.add_argument("--crop", choices=("person", "frame"), default=None,
                       help="show the most prominent person's crop (the perception core's) "
                            "or the whole frame (default: person)")
    label.add_argument("--select", choices=SELECT, default=None,
                       help="which manifest rows: those with no label, or all (default: "
                            "unlabelled)")
    label.add_argument("--ids", default=None, metavar="A,B,...",
                       help="only these video ids (overrides --select)")
    label.add_argument("--max-attempts", type=int, default=None,
                       help="provider calls per step, retries included (default: "
                            f"{DEFAULT_MAX_ATTEMPTS})")
    label.add_argument("--timeout-s", type=float, default=None, metavar="SECONDS",
                       help="how long the client waits for one answer; past it the attempt "
                            "fails and is retried, so a server that never answers costs "
                            "about max-attempts x this per step, plus the waits between "
                            f"retries (default: {DEFAULT_TIMEOUT_S:g})")
    label.add_argument("--max-retry-after-s", type=float, default=None, metavar="SECONDS",
                       help="the longest wait a server's Retry-After (or Gemini retryDelay) "
                            "is honoured for; longer requests wait this long (default: "
                            f"{DEFAULT_MAX_RETRY_AFTER_S:g})")
    label.add_argument("--force", action="store_true", default=None,
                       help="label again (and pay again) even where the store has an answer")
    label.add_argument("--profile", default=None,
                       help="crop person: the profile whose detector engine finds the person "
                            "(default: edge)")
    label.add_argument("--engine-dir", type=Path, default=None,
                       help="crop person: where engines live (default: "
                            "artifacts/engines/PROFILE)")
    label.add_argument("--detector", choices=("auto", "yolo", "mediapipe"), default=None,
                       help="crop person: the profile's YOLO engine, MediaPipe Pose, or auto "
                            "(YOLO when built with real weights, else MediaPipe) (default: "
                            "auto)")
    label.add_argument("--teacher", type=Path, default=None, metavar="RUN",
                       help="teacher: a `hidemo train --out` folder or checkpoint")
    label.add_argument("--features", type=Path, default=None, metavar="STORE",
                       help="teacher: the feature store holding the manifest's videos")
    commands = label.add_subparsers(dest="command", metavar="{report}")
    report = commands.add_parser(
        "report", help="summarise a label store: counts, spend, agreement with gold, "
                       "calibration, and each video's answer",
        description="What a label store holds: outcomes per teacher, what they cost (each "
                    "stored answer once, a file listed under several ids included), the "
                    "time per call and per labelled video, and, with a manifest, agreement "
                    "with the gold labels and calibration. --per-video lists every video.")
    report.add_argument("--store", type=Path, required=True, help="the label store")
    report.add_argument("--manifest", type=Path, default=None, metavar="FILE",
                        help="compare with this manifest's gold labels")
    report.add_argument("--plot", type=Path, default=None, metavar="PNG",
                        help="write a reliability diagram")
    report.add_argument("--per-video", action="store_true",
                        help="also print one line per video: status, label, confidence, the "
                             "label before reflection, gold, calls, tokens, cost, seconds, "
                             "and the error or the id whose answer a duplicate file shares")
    report.add_argument("--csv", type=Path, default=None, metavar="FILE",
                        help="write the per-video list as CSV (every column, full errors)")
    report.add_argument("--provider", default=None, help="only this provider's outcomes")
    report.add_argument("--model", default=None, help="only this model's outcomes")
    report.add_argument("--prompts", default=None, metavar="VERSION",
                        help="only this prompt version, in full (e.g. v1-1a2b3c4d, as the "
                             "store lists it)")
    return label


def label_command(args: argparse.Namespace) -> int:
    """Run ``hidemo label`` or ``hidemo label report``: 0 all done, 1 some videos failed,
    were skipped, or the run stopped; bad arguments raise ValueError (``hidemo`` prints it
    and exits 2)."""
    if getattr(args, "command", None) == "report":
        return _report_command(args)
    return _label_command(args)


CONFIG_OPTIONS = ("manifest", "provider", "out", "model", "base_url", "api_key_env",
                  "structured", "prompts", "frames", "size", "jpeg_quality", "crop", "select",
                  "max_attempts", "timeout_s", "max_retry_after_s", "force", "profile",
                  "engine_dir", "detector", "teacher", "features")
"""argparse destinations that are LabelConfig fields of the same name (``ids`` is parsed)."""


def load_config(args: argparse.Namespace) -> LabelConfig:
    """The settings of a ``hidemo label`` run: ``--config``, then the options given."""
    from training.pseudo.label_config import LabelConfig

    ids = None
    if args.ids is not None:
        ids = [i.strip() for i in args.ids.split(",") if i.strip()]
        if not ids:
            raise ValueError("--ids is empty; give video ids separated by commas")
    overrides = {name: getattr(args, name, None) for name in CONFIG_OPTIONS}
    return LabelConfig.load(args.config, {**overrides, "ids": ids})


def _require(config: LabelConfig, *names: str, why: str = "") -> None:
    missing = [f"--{name.replace('_', '-')}" for name in names
               if getattr(config, name, None) is None]
    if missing:
        raise ValueError(f"label {why}needs {' and '.join(missing)} (an option, or the "
                         "field in --config)")


def _sampling(config: LabelConfig) -> Sampling:
    from training.pseudo.records import CropMode, Sampling
    from training.pseudo.sampling import check_sampling

    sampling = Sampling(frames=config.frames, size=config.size, crop=CropMode(config.crop),
                        jpeg_quality=config.jpeg_quality)
    try:
        check_sampling(sampling)
    except ValueError as error:
        raise ValueError(f"--frames/--size/--jpeg-quality: {error}") from None
    return sampling


def run_redactor(config: LabelConfig) -> Redactor:
    """The run's one :class:`~training.pseudo.redact.Redactor`: every key variable set
    (the provider's own, the others, ``--api-key-env``'s) and the credentials in
    ``--base-url``. Warns when the key in use is too short to be told from text."""
    from training.pseudo.redact import MIN_SECRET_LENGTH, Redactor, run_secrets

    names = [*KEY_VARIABLES, *([config.api_key_env] if config.api_key_env else [])]
    secrets = run_secrets(os.environ, names, [config.base_url])
    short = [name for name in names if 0 < len(os.environ.get(name, "")) < MIN_SECRET_LENGTH]
    if short:
        log.warning("%s holds fewer than %d characters: too short to tell from text, so it "
                    "is not redacted from what this run stores and prints", short[0],
                    MIN_SECRET_LENGTH)
    return Redactor(secrets)


def _api_key(config: LabelConfig) -> str | None:
    if config.api_key_env is None:
        return None
    key = os.environ.get(config.api_key_env)
    if not key:
        raise ValueError(f"--api-key-env {config.api_key_env}: that environment variable is "
                         "not set (or empty)")
    return key


def _labeler(config: LabelConfig, redact: Redactor) -> Labeler:
    from training.pseudo.providers.base import ProviderError

    if config.provider == "teacher":
        _require(config, "teacher", "features", why="--provider teacher ")
        from training.pseudo.teacher import CheckpointTeacher

        return CheckpointTeacher.from_run(config.teacher, config.features)
    from training.pseudo.labeler import VlmLabeler
    from training.pseudo.prompts import load_prompts
    from training.pseudo.retry import RetryPolicy

    prompts = load_prompts(config.prompts)
    try:
        if config.provider == "gemini":
            from training.pseudo.providers.gemini import GeminiProvider

            provider = GeminiProvider(model=config.model or DEFAULT_GEMINI_MODEL,
                                      api_key=_api_key(config), base_url=config.base_url,
                                      timeout_s=config.timeout_s, redact=redact)
        else:
            _require(config, "model", why="--provider openai ")
            from training.pseudo.providers.openai_compat import OpenAICompatProvider

            provider = OpenAICompatProvider(
                config.model, config.base_url or DEFAULT_OPENAI_URL, api_key=_api_key(config),
                structured=config.structured, timeout_s=config.timeout_s, redact=redact)
    except ProviderError as error:  # no key, bad URL: a configuration error
        raise ValueError(redact(str(error))) from None
    policy = RetryPolicy(max_attempts=config.max_attempts,
                         max_retry_after_s=config.max_retry_after_s)
    return VlmLabeler(provider, prompts, policy, redact=redact)


CHATTY_LOGGERS = ("httpx", "httpx2", "google_genai", "openai")
"""Clients that log every request at INFO: one line per call drowns the per-video lines
(``-v`` shows them again)."""


def _label_command(args: argparse.Namespace) -> int:
    from training.data.manifest import read_manifest
    from training.pseudo.label_job import run_labelling, select_rows
    from training.pseudo.sampling import open_person_core
    from training.pseudo.store import LabelStore

    config = load_config(args)
    _require(config, "manifest", "provider", "out")
    if not getattr(args, "verbose", False):
        for name in CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
    sampling = _sampling(config)
    select = config.ids if config.ids is not None else config.select
    rows = read_manifest(config.manifest)
    select_rows(rows, select)  # unknown ids: an error before any model or client loads
    engine_dir = config.engine_dir or Path("artifacts") / "engines" / config.profile

    def core_factory() -> PerceptionCore:
        return open_person_core(engine_dir, config.detector, profile=config.profile)

    redact = run_redactor(config)

    def say(line: str) -> None:
        print(redact(line), flush=True)

    with redacted_logs(redact), _redacted_errors(redact):
        labeler = _labeler(config, redact)
        try:
            with LabelStore.open(config.out, redact=redact) as store:
                say(f"labelling with {labeler.provider} {labeler.model}, prompts "
                    f"{labeler.prompt_version}, sampling {sampling.key()} into {config.out}")
                summary = run_labelling(rows, labeler, store, sampling, core_factory,
                                        select=select, say=say, force=config.force)
        finally:
            labeler.close()
        for skipped in summary.skipped:
            say(f"skipped: {skipped}")
        if summary.no_person_frames:
            say(f"no person found in {summary.no_person_frames} sampled frame(s); those "
                "were shown whole")
        say(summary.line())
    return summary.exit_code


@contextmanager
def redacted_logs(redact: Redactor) -> Iterator[None]:
    """Every handler of the root logger (where the clients' loggers end up) redacts what
    it writes while the run lasts; Python warnings are routed there too (a client warns
    with the server's text, e.g. an unknown enum value it was sent)."""
    handlers = list(logging.getLogger().handlers)
    scrub = redact.log_filter()
    for handler in handlers:
        handler.addFilter(scrub)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for handler in handlers:
            handler.removeFilter(scrub)


@contextmanager
def _redacted_errors(redact: Redactor) -> Iterator[None]:
    """An error that ends the run (a bad ``--base-url``, a store that cannot be written)
    is printed by ``hidemo`` or as a traceback: one whose message holds a secret is raised
    again with the message redacted and without the original (whose text holds it)."""
    try:
        yield
    except Exception as error:
        clean = redact(str(error))
        if clean == str(error):
            raise
        if isinstance(error, ValueError):
            raise ValueError(clean) from None
        raise RuntimeError(f"{type(error).__name__}: {clean}") from None


def _report_command(args: argparse.Namespace) -> int:

    from training.data.manifest import read_manifest
    from training.pseudo.redact import Redactor, run_secrets
    from training.pseudo.report import (
        report_from_store,
        write_per_video_csv,
        write_reliability_plot,
    )
    from training.pseudo.store import LabelStore

    if not args.store.is_file():
        raise FileNotFoundError(f"label store {args.store} does not exist; make one with "
                                "`hidemo label --out STORE`")
    rows = read_manifest(args.manifest) if args.manifest else []
    with LabelStore.open(args.store) as store:
        report = report_from_store(store, rows, provider=args.provider, model=args.model,
                                   prompt_version=args.prompts)
    # A store written by an older hidemo may hold an echoed key in its errors: the keys
    # this shell holds are blanked from what the report shows.
    redact = Redactor(run_secrets(os.environ, KEY_VARIABLES))
    report = report.model_copy(update={"videos": tuple(
        video.model_copy(update={"error": None if video.error is None
                                 else redact(video.error)})
        for video in report.videos)})
    print(redact(report.to_text(per_video=args.per_video)))
    if args.csv is not None:
        write_per_video_csv(report, args.csv)
        print(f"per-video list: {args.csv}")
    if args.plot is not None:
        write_reliability_plot(report, args.plot)
        print(f"reliability plot: {args.plot}")
    return 0
