"""``hidemo run``: parse the command line into one :class:`RunConfig` and supervise the run.

Example::

    hidemo run --source demo --profile tiny --duration 20 --out runs/demo
    hidemo run --source 0 --source talk.mp4 --profile edge --config run.yaml \\
        --set classify.stride_s=0.5
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream.config import EndpointConfig, RunConfig
    from stream.record.launcher import RecorderProcess
    from stream.run.mqtt import MqttPublisher, MqttView
    from stream.run.service import Service
    from stream.run.supervisor import StopRequest, Supervisor
    from stream.run.view import View
    from stream.strictjson import JsonDict
    from stream.transport.curve import RunKeys
    from stream.transport.endpoints import Endpoints
    from stream.ui.launcher import UiProcess

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

log = logging.getLogger(__name__)

LINE_WIDTH = 120
"""Longest console line of a decision: the full reason goes to ``config.json`` (and, with
``hidemo -v``, to the debug log)."""


def one_line(text: str, width: int = LINE_WIDTH) -> str:
    """``text`` on one line of at most ``width`` characters: its first line, cut at a word
    with an ellipsis when still too long."""
    first = text.strip().splitlines()[0] if text.strip() else ""
    if len(first) <= width:
        return first
    return first[:width - 1].rsplit(" ", 1)[0].rstrip(" ,;:(") + "…"


def say(message: str) -> None:
    """One ``hidemo run:`` line on stderr, at most :data:`LINE_WIDTH` characters."""
    print(one_line(f"hidemo run: {message}"), file=sys.stderr)


def add_run_parser(jobs: SubParsers) -> argparse.ArgumentParser:
    """Add the ``run`` subcommand to ``hidemo``'s subparsers."""
    run = jobs.add_parser("run", help="run the live pipeline on cameras, files, URLs or the demo")
    run.add_argument("--source", action="append", metavar="0|PATH|URL|demo",
                     help="a camera index, a video file, an RTSP/HTTP URL or 'demo' (the "
                          "built-in clip); repeat for several streams")
    run.add_argument("--profile", default=None, help="engine set: paper, edge or tiny "
                                                     "(default: edge, or the config file's)")
    run.add_argument("--config", type=Path, default=None, help="YAML or JSON run configuration")
    run.add_argument("--engine-dir", dest="run_engine_dir", type=Path, default=None,
                     help="engines folder (default: artifacts/engines/PROFILE)")
    run.add_argument("--duration", type=float, default=None, metavar="S",
                     help="stop after S seconds of running (default: until Ctrl-C or the end "
                          "of every file)")
    run.add_argument("--out", type=Path, default=None, metavar="DIR",
                     help="keep predictions.jsonl, frames.jsonl, config.json, summary.json "
                          "and stage logs here")
    run.add_argument("--view", choices=("auto", "rich", "log", "none"), default=None,
                     help="terminal output (default auto: live tables on a terminal)")
    run.add_argument("--keypoints", choices=("mediapipe", "engines", "auto"), default=None,
                     help="keypoints from MediaPipe on each person crop, from the keypoint "
                          "engines (batched; built by `hidemo engines build`), or auto: "
                          "the engines when built, else MediaPipe (default: auto, or the config "
                          "file's)")
    run.add_argument("--placement", choices=("auto", "split", "fused"), default=None,
                     help="processes: split (one per stage, features replicas), fused "
                          "(detect and features in worker processes, one per core, that "
                          "share the streams out and hand frames on in memory; classify "
                          "apart; `--set fused.workers=N`) or auto (fused with the engines on "
                          "the CPU; split with features replicas or the image embedder on a "
                          "GPU) (default: the config file's, else auto)")
    run.add_argument("--asr", choices=("auto", "on", "off"), default=None,
                     help="live transcripts from each source's own audio on the text topic: "
                          "auto (sources with audio, when the speech model is installed), on "
                          "(the same; a missing model is an error) or off (none; a stream "
                          "whose text you publish yourself drops its ASR lines anyway) "
                          "(default: the config file's, else auto)")
    run.add_argument("--fast", action="store_true",
                     help="read files as fast as the pipeline takes them (not real time)")
    run.add_argument("--ui", action="store_true",
                     help="serve a live web view of the run (frames with persons, labels, "
                          "timelines, transcript, stage health) on --ui-bind")
    run.add_argument("--ui-bind", default=None, metavar="HOST:PORT",
                     help="where the web view listens (implies --ui; default 127.0.0.1:8080); "
                          "a host other than loopback needs a token: HIDEMO_UI_TOKEN or "
                          "--ui-token-file")
    run.add_argument("--ui-token-file", type=Path, default=None, metavar="FILE",
                     help="a file holding the web view's token (the page is then opened as "
                          "/?token=...); or set HIDEMO_UI_TOKEN")
    run.add_argument("--record", type=Path, default=None, metavar="FILE.mp4",
                     help="write the annotated video (boxes, ids, skeletons, labels, "
                          "probabilities, the transcript as subtitles) of the analysed frames "
                          "to FILE.mp4 while the run goes (several streams: FILE.STREAM.mp4); "
                          "short for --set record.path=FILE.mp4")
    run.add_argument("--metrics-bind", default=None, metavar="HOST:PORT",
                     help="serve /metrics (Prometheus), /healthz and /readyz here (a port "
                          "alone: 127.0.0.1:PORT); a host other than loopback needs a token: "
                          "HIDEMO_METRICS_TOKEN or --metrics-token-file")
    run.add_argument("--metrics-token-file", type=Path, default=None, metavar="FILE",
                     help="a file holding the metrics endpoints' bearer token; or set "
                          "HIDEMO_METRICS_TOKEN")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override any config field, e.g. classify.stride_s=0.5 (repeatable)")
    return run


def config_from_args(args: argparse.Namespace) -> RunConfig:
    from stream.config import load_config

    overrides: dict[str, object] = {
        "profile": args.profile, "engine_dir": args.run_engine_dir, "duration": args.duration,
        "out": args.out, "view": args.view, "keypoints": args.keypoints,
        "placement": args.placement,
    }
    if args.source:
        overrides["sources"] = [{"spec": spec, "realtime": not args.fast}
                                for spec in args.source]
    dotted = [*args.set, *([f"asr.mode={args.asr}"] if getattr(args, "asr", None) else [])]
    metrics = getattr(args, "metrics_bind", None)
    dotted += [*([f"metrics.bind={metrics}"] if metrics else []),
               *([f"metrics.token_file={args.metrics_token_file}"]
                 if getattr(args, "metrics_token_file", None) is not None else []),
               *([f"record.path={args.record}"]
                 if getattr(args, "record", None) is not None else [])]
    config = load_config(args.config, overrides, dotted)
    config = with_ui_args(config, args)
    check_metrics(config)
    if not config.sources:
        raise ValueError("no source: pass --source 0|PATH|URL|demo (or list sources in --config)")
    for source in config.sources:
        if source.kind == "file" and not Path(source.spec).is_file():
            raise FileNotFoundError(f"--source {source.spec}: no such file")
    return config


def with_ui_args(config: RunConfig, args: argparse.Namespace) -> RunConfig:
    """``--ui``, ``--ui-bind`` (implies ``--ui``) and ``--ui-token-file`` over the
    configuration's ``ui`` section, validated; a bad bind or a missing token is an error
    (exit 2) before anything starts."""
    from stream.config import UiConfig
    from stream.ui.access import parse_bind, resolve_token

    ui = config.ui.model_dump()
    if getattr(args, "ui", False) or getattr(args, "ui_bind", None):
        ui["enabled"] = True
    if getattr(args, "ui_bind", None):
        ui["bind"] = args.ui_bind
    if getattr(args, "ui_token_file", None) is not None:
        ui["token_file"] = args.ui_token_file
    resolved = UiConfig.model_validate(ui)
    if resolved.enabled:
        parse_bind(resolved.bind)
        resolve_token(resolved.bind, resolved.token_file)
    return config.model_copy(update={"ui": resolved})


def check_metrics(config: RunConfig) -> str | None:
    """The metrics endpoints' token (None: none needed), or ValueError (exit 2) for a bad
    bind or a network-facing one without a token, before anything starts."""
    from stream.run.service import METRICS_TOKEN
    from stream.ui.access import parse_bind, resolve_token

    bind = config.metrics.bind
    if bind is None:
        return None
    parse_bind(bind, METRICS_TOKEN.bind_option, METRICS_TOKEN.example_port)
    return resolve_token(bind, config.metrics.token_file, rule=METRICS_TOKEN)


def run_command(args: argparse.Namespace) -> int:
    from stream.run.supervisor import StopRequest
    from stream.run.view import NullView, make_view

    config = config_from_args(args)
    stop = StopRequest()
    stop.install()
    view = make_view(config.view)
    if type(view) is not NullView and not getattr(args, "verbose", False):
        # the view shows the supervisor's events; its log lines would say each one twice
        logging.getLogger("stream.run.supervisor").setLevel(logging.WARNING)
    code, summary = run_pipeline(config, view, stop)
    log_dir = config.out / "logs" if config.out is not None else Path("(scratch, removed)")
    _print_summary(summary, log_dir)
    return code


def run_pipeline(config: RunConfig, view: View, stop: StopRequest) -> tuple[int, JsonDict]:
    """Supervise one run of ``config`` to its end; the exit code and the run summary (also
    written to ``config.out/summary.json``). ``hidemo bench`` drives the pipeline through
    this too, so what it measures is exactly what ``hidemo run`` runs.

    Before any stage starts, ``keypoints: auto`` is resolved (by its rule, said on one
    line), :func:`stream.run.preflight.preflight` checks the engines, the sources and the
    endpoints, and raises :class:`~stream.run.preflight.PreflightError` (a ``ValueError``:
    ``hidemo`` prints it and exits 2) with every problem and its fix, and ``placement: auto``
    is resolved (:mod:`stream.stages.placement`, said on one line). The full reasons are saved in
    ``config.json`` (``reasons``)."""
    from stream import strictjson
    from stream.run.preflight import PreflightError, preflight, write_problem
    from stream.run.supervisor import Supervisor
    from stream.run.view import TeeView
    from stream.stages.perception import resolve_keypoints
    from stream.stages.placement import resolve_placement
    from stream.stages.spec import StageSpec
    from stream.transport.endpoints import Endpoints

    if config.ui.enabled:
        from stream.ui.access import parse_bind
        from stream.ui.launcher import check_port

        problem = check_port(*parse_bind(config.ui.bind))
        if problem is not None:
            raise ValueError(problem)
    if config.record.path is not None:
        from stream.record.launcher import check_record

        check_record(config.record.path, config.record.codec)
    try:
        scratch = tempfile.TemporaryDirectory(prefix="hidemo-run-")
    except OSError as error:
        raise PreflightError([write_problem(Path(tempfile.gettempdir()) / "hidemo-run-*",
                                            error, private=True)]) from None
    with contextlib.ExitStack() as services, scratch as scratch_path:
        service = None
        if config.metrics.bind is not None:  # listening now: a port in use stops the run here
            from stream.run.service import Service

            service = Service.bind(config.metrics.bind, check_metrics(config))
            services.callback(service.close)
        run_dir = Path(scratch_path)
        endpoints = Endpoints.for_config(config.endpoints, run_dir, config.stream_ids(),
                                         keys=run_keys(config.endpoints))
        asked = config.keypoints
        config, resolved = resolve_keypoints(config)
        if asked == "auto":
            say(f"keypoints {resolved.source.value} ({resolved.reason})")
        config = config.model_copy(update={"reasons": config.reasons.model_copy(
            update={"keypoints": resolved.reason})})
        preflight(config, endpoints)
        config = _resolve_asr(config)
        asked = config.placement
        config, placed = resolve_placement(config)
        if asked == "auto":
            say(f"placement {placed.placement} ({placed.summary})")
        out = config.out
        if out is not None:
            write_before_start(out / "config.json",
                               strictjson.dumps(config.model_dump(mode="json"), indent=2))
        spec_path = run_dir / "spec.json"
        spec = StageSpec(config=config, endpoints=endpoints,
                         out=None if out is None else out.resolve(), state_dir=run_dir)
        write_before_start(spec_path, spec.text(), private=True)
        log_dir = (out or run_dir) / "logs"
        say(f"{len(config.sources)} source(s) {', '.join(config.stream_ids())}, profile "
            f"{config.profile}; predictions on {endpoints.predictions}, text topic "
            f"{endpoints.text}")
        mqtt = None
        if config.sinks.mqtt is not None:
            from stream.run.mqtt import open_mqtt

            mqtt = open_mqtt(config.sinks.mqtt, endpoints, config.endpoints)
            view = TeeView(view, mqtt)
            say(f"predictions on MQTT {config.sinks.mqtt.url} under "
                f"{config.sinks.mqtt.topic}/")
        ui = None
        if config.ui.enabled:
            from stream.ui.monitor import open_monitor

            ui = start_ui(config, endpoints, run_dir, log_dir)
            view = TeeView(view, open_monitor(endpoints, config.endpoints))
        recorder = None
        if config.record.path is not None:
            recorder = start_recorder(config, endpoints, run_dir, log_dir)
        supervisor = Supervisor(config, endpoints, spec_path, log_dir, view, stop)
        if service is not None:
            serve_metrics(service, supervisor, None if mqtt is None else mqtt.publisher)
        try:
            code = supervisor.run()
        finally:
            if ui is not None:
                ui.stop()
            if recorder is not None:  # after the drain: the last predictions are drawn
                recorder.stop()
        summary = supervisor.summary()
        summary["engines"] = run_engines(config)
        if ui is not None:
            summary["ui"] = ui_summary(config, ui, run_dir)
        if recorder is not None:
            summary["record"] = record_summary(recorder, summary)
            summary["warnings"] = [*summary.get("warnings", []),
                                   *summary["record"]["warnings"]]
        if service is not None:
            summary["metrics"] = {"bind": service.address}
        if mqtt is not None:
            summary["mqtt"] = mqtt.publisher.report()
            summary["warnings"] = [*summary.get("warnings", []), *mqtt_warnings(mqtt, summary)]
        if out is not None:
            code = max(code, write_summary(out / "summary.json", summary))
    return code, summary


def serve_metrics(service: Service, supervisor: Supervisor,
                  publisher: MqttPublisher | None) -> None:
    """Answer ``/metrics``, ``/healthz`` and ``/readyz`` for ``supervisor``'s run, from now
    on; the metrics also take each prediction (latency histograms) as a view."""
    from stream.run.health import liveness, readiness
    from stream.run.metrics import RunMetrics, engine_identities
    from stream.run.preflight import engines_to_verify
    from stream.run.view import TeeView

    config = supervisor.config
    metrics = RunMetrics(supervisor, engine_identities(config, engines_to_verify(config)),
                         None if publisher is None else publisher.report)
    supervisor.view = TeeView(supervisor.view, metrics)  # fed as the terminal view is
    service.serve(metrics.registry, lambda: liveness(supervisor),
                  lambda: readiness(supervisor))
    say(f"metrics on http://{service.address}/metrics, health on /healthz and /readyz")


def mqtt_warnings(mqtt: MqttView, summary: JsonDict) -> list[str]:
    """The MQTT publisher's warnings, and predictions classify could not hand to the
    supervisor (so they never reached the broker)."""
    warnings = mqtt.publisher.warnings()
    classify = summary.get("stages", {}).get("classify[0]", {}).get("extra", {})
    unsent = classify.get("results_unsent", 0) if isinstance(classify, dict) else 0
    if isinstance(unsent, int) and unsent:
        warnings.append(f"{unsent} prediction(s) did not reach the supervisor (its results "
                        f"hop was full), nor the MQTT broker; predictions.jsonl has them")
    return warnings


def run_keys(config: EndpointConfig) -> RunKeys | None:
    """The run's internal CURVE keys wherever another local user or host could reach an
    internal socket: tcp transport (any local user can connect to loopback) or an
    ``ipc_dir`` the user chose (its permissions are not ours to vouch for). None with ipc
    in the run's own private folder (mode 0700), which is then the boundary."""
    from stream.transport.curve import RunKeys

    if config.transport == "tcp" or config.ipc_dir is not None:
        return RunKeys.generate()
    return None


def write_before_start(path: Path, text: str, *, private: bool = False) -> None:
    """Write a file the run needs before any stage starts, whole (:mod:`stream.files`), or
    refuse the run (:class:`~stream.run.preflight.PreflightError`, exit 2) naming the folder,
    the room it needs and the fix: the disk may fill between the preflight and here.
    A ``private`` file (in the run's private folder) is readable by its owner only: it may
    hold the run's keys."""
    from stream.files import write_document
    from stream.run.preflight import PreflightError, write_problem

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_document(path, text, durable=not private, mode=0o600 if private else 0o644)
    except OSError as error:
        raise PreflightError([write_problem(path, error, private=private)]) from None


def write_summary(path: Path, summary: JsonDict) -> int:
    """Write ``summary.json`` whole (:func:`stream.files.write_document`), or leave it
    absent and make the failure part of the verdict: ``summary`` (what the console then
    prints) gains the failure and exit code 1. Returns the exit code this write calls for
    (0 written, 1 not)."""
    from stream import strictjson
    from stream.files import write_document
    from stream.transport.wire import saturated

    try:
        write_document(path, strictjson.dumps(saturated(summary), indent=2))
    except OSError as error:
        stale = ""
        with contextlib.suppress(OSError):  # an earlier run's summary must not pass for this
            path.unlink()
            stale = " (an earlier run's summary.json there was removed)"
        summary["failures"] = [*summary.get("failures", []),
                               f"{path} could not be written ({error.strerror or error}){stale}; "
                               "the verdict on this console is the run's only summary"]
        summary["exit_code"] = 1
        return 1
    return 0


def start_ui(config: RunConfig, endpoints: Endpoints, run_dir: Path,
             log_dir: Path) -> UiProcess:
    """Start the web view's process (:mod:`stream.ui.launcher`) and say where it is."""
    from stream.stages.placement import detect_processes
    from stream.ui.access import parse_bind, resolve_token
    from stream.ui.launcher import UiProcess, UiSpec

    host, port = parse_bind(config.ui.bind)
    token = resolve_token(config.ui.bind, config.ui.token_file)
    files = [stream for stream, source in zip(config.stream_ids(), config.sources, strict=True)
             if source.kind == "file"]
    spec = UiSpec(host=host, port=port, streams=config.stream_ids(),
                  history_s=config.ui.history_s, max_clients=config.ui.max_clients,
                  endpoints=endpoints, endpoint_config=config.endpoints,
                  stats_path=run_dir / "ui-stats.json",
                  preview_publishers=detect_processes(config), media_streams=files,
                  person_timeout_s=config.classify.person_timeout_s)
    spec_path = run_dir / "ui-spec.json"
    write_before_start(spec_path, spec.model_dump_json(), private=True)
    ui = UiProcess(spec_path, log_dir / "ui.log", token, max_restarts=config.ui.max_restarts)
    ui.start()
    for line in ui_message(host, port, token is not None, config.ui.token_file):
        say(line)
    return ui


def ui_message(host: str, port: int, token: bool, token_file: Path | None,
               interfaces: dict[str, list[str]] | None = None) -> list[str]:
    """Where to open the page, as console lines: its address, or for a wildcard bind each
    of this host's addresses another machine can use; with the token parameter as a shell
    fills it in (never the token itself: the console may be logged)."""
    from stream.ui.access import TOKEN_ENV, browser_urls

    query = "" if not token else (f"?token=$(cat {token_file})" if token_file is not None
                                  else f"?token=${TOKEN_ENV}")
    urls = browser_urls(host, port, query, interfaces)
    shown = f"[{host}]" if ":" in host else host
    if urls == [f"http://{shown}:{port}/{query}"]:
        return [f"web view on {urls[0]}"]
    if not urls:
        return [f"web view on {shown}:{port} (every interface), but this host has no "
                f"address other than loopback: http://127.0.0.1:{port}/{query} here only"]
    return [f"web view on {shown}:{port} (every interface); from another machine open:",
            *(f"  {url}" for url in urls)]


def start_recorder(config: RunConfig, endpoints: Endpoints, run_dir: Path,
                   log_dir: Path) -> RecorderProcess:
    """Start the recorder's process (:mod:`stream.record.launcher`) and say where it writes
    (its folder and codec were checked before anything started:
    :func:`stream.record.launcher.check_record`)."""
    from stream.record.launcher import RecorderProcess, RecorderSpec, record_paths
    from stream.record.writer import choose_codec
    from stream.stages.placement import detect_processes

    assert config.record.path is not None
    codec = choose_codec(config.record.codec)
    path = config.record.path.resolve()
    spec = RecorderSpec(path=path, streams=config.stream_ids(),
                        fps=config.record.fps or config.capture_fps(), codec=codec,
                        delay_s=config.record.delay_s, endpoints=endpoints,
                        endpoint_config=config.endpoints, stats_dir=run_dir,
                        publishers=detect_processes(config))
    spec_path = run_dir / "record-spec.json"
    write_before_start(spec_path, spec.model_dump_json(), private=True)
    recorder = RecorderProcess(spec_path, spec, log_dir / "recorder.log",
                               max_restarts=config.record.max_restarts)
    recorder.start()
    files = ", ".join(str(p) for p in record_paths(path, spec.streams).values())
    say(f"recording {codec} at {spec.fps:g} fps to {files}")
    return recorder


def record_summary(recorder: RecorderProcess, summary: JsonDict) -> JsonDict:
    """The recorder's part of ``summary.json`` (:meth:`RecorderProcess.report`), with what
    detect's record publishers said (frames published, skipped by ``record.fps``, unsent)."""
    report = recorder.report()
    published: JsonDict = {}
    for label, status in summary.get("stages", {}).items():
        extra = status.get("extra") if isinstance(status, dict) else None
        if label.startswith("detect[") and isinstance(extra, dict) and "record" in extra:
            published[label] = extra["record"]
    report["publishers"] = published
    return report


def run_engines(config: RunConfig) -> list[dict[str, str]]:
    """The identity of each engine the run loaded (:func:`stream.run.metrics.
    engine_identities`), kept in ``summary.json`` so a report can say what made the
    predictions, and whether an engine had random weights."""
    from engines.sources.mediapipe import KEYPOINT_ENGINES
    from stream.run.metrics import engine_identities
    from stream.run.preflight import engines_to_verify

    names = engines_to_verify(config)
    if config.keypoints == "engines":
        names += list(KEYPOINT_ENGINES)
    return engine_identities(config, names)


def ui_summary(config: RunConfig, ui: UiProcess, run_dir: Path) -> JsonDict:
    """The web view's part of ``summary.json``: where it was, its restarts, its counters."""
    import json

    stats_path = run_dir / "ui-stats.json"
    try:
        stats = json.loads(stats_path.read_text())
    except (OSError, ValueError):
        stats = None
    return {"bind": config.ui.bind, **ui.report(), "stats": stats}


def _resolve_asr(config: RunConfig) -> RunConfig:
    """``asr`` resolved per source (:mod:`stream.run.asr_plan`), each choice said with why."""
    from stream.run.asr_plan import resolve_asr

    config, plan = resolve_asr(config)
    if plan.warning is not None:
        say(f"warning: {plan.warning}")
    if config.asr.mode != "off":
        for choice in plan.choices:
            say(f"asr {choice}")
    return config


def _print_summary(summary: JsonDict, log_dir: Path) -> None:
    """The run's verdict (why it ended, its failures and warnings) first, then its figures.
    Every figure is optional here: a summary missing one (a stage that never reported)
    still prints, so the verdict always reaches the console."""
    reason = str(summary.get("reason", "ended"))
    wall_s = summary.get("wall_s", 0.0)
    if "\n" in reason:  # a stage's own message, with its fix on the next lines
        print(f"hidemo run: after {wall_s:.1f} s, {reason}", file=sys.stderr)
    else:
        print(f"hidemo run: {reason} after {wall_s:.1f} s", file=sys.stderr)
    for failure in summary.get("failures", []):
        if failure not in reason:  # the reason already says it
            print(f"  FAILED: {failure}", file=sys.stderr)
    for warning in summary.get("warnings", []):
        print(f"  warning: {warning}", file=sys.stderr)
    for stream, info in summary.get("streams", {}).items():
        latency = info.get("latency_ms", {})
        rates = " ".join(f"{name} {rate:g}" for name, rate in (info.get("rates") or {}).items())
        print(f"  {stream}: {info.get('predictions', 0)} predictions, {info.get('frames', 0)} "
              f"frames, {info.get('dropped', 0)} dropped, {info.get('lost', 0)} lost, e2e "
              f"p50/p95 {latency.get('p50', 0):.0f}/{latency.get('p95', 0):.0f} ms, per s: "
              f"{rates}", file=sys.stderr)
    placement = summary.get("placement", {})
    wasted = summary.get("processed_then_dropped", {})
    # the placement's reason was said when it was decided (and is in config.json)
    print(f"  placement {placement.get('placement')}; frames processed then dropped: "
          + ", ".join(f"{k} {v}" for k, v in wasted.items()), file=sys.stderr)
    restarted = {k: v for k, v in summary.get("restarts", {}).items() if v}
    if restarted:
        print(f"  restarts: {restarted} (stage logs in {log_dir})", file=sys.stderr)
