"""Entry point of one stage process: ``python -m stream.stages.main STAGE INDEX SPEC``.

The supervisor writes the resolved run (configuration, endpoints, output folder) to the
``SPEC`` JSON file and starts each stage with it; this module opens the engines the stage
needs, its sockets, and runs its loop until SIGTERM. Engines are verified on load
(:func:`engines.runtime.load_engine`): a stale or missing engine stops the stage with a
message naming the command that fixes it.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from pydantic import ValidationError

from engines.engine import Engine
from engines.manifest import EngineManifest, EngineRefused, read_manifest
from engines.runtime import load_engine
from stream.config import RunConfig, StageConfig
from stream.credits import CreditPublisher
from stream.endpoints import Endpoints, open_socket
from stream.exitcodes import EX_CONFIG, FATAL_MARKER
from stream.sinks import JsonlSink, PubSink, Sinks
from stream.stage import BatchStage, StageIO, StopFlag, run_batch_stage
from stream.status import StatusReporter
from stream.wire import WireRules

log = logging.getLogger(__name__)

STAGES = ("capture", "detect", "features", "classify")
EXIT_LINGER_MS = 500


def open_engine(config: RunConfig, name: str,
                threads: int) -> tuple[Engine, EngineManifest]:
    engine_dir = config.resolved_engine_dir()
    manifest = read_manifest(engine_dir, name)
    return load_engine(engine_dir, name, engine_backend(config.backend, manifest),
                       threads=threads, manifest=manifest), manifest


def engine_backend(backend: str, manifest: EngineManifest) -> str:
    """The run's backend for this engine. ``torch`` (perception models on torch, e.g. CUDA
    without onnxruntime-gpu) cannot rebuild the window classifier, whose module lives in
    training/; that small engine stays on onnxruntime."""
    from engines.sources.base import ROLES

    if backend == "torch" and manifest.role not in ROLES:
        log.info("%s: backend torch covers the perception engines; this one runs on "
                 "onnxruntime", manifest.name)
        return "onnxruntime"
    return backend


def build_detect(config: RunConfig) -> tuple[BatchStage, StageConfig]:
    from stream.stages.detect import DetectStage, PerStreamFinder, make_finder

    finder = make_finder(config.detect, config.resolved_engine_dir(), config.backend,
                         config.detect.threads)
    if isinstance(finder, PerStreamFinder):
        size = max(((s.height, s.width) for s in config.sources), default=(480, 640))
        finder.warm_up(config.stream_ids(), size)
    stage_config = config.detect.for_device(finder.device)
    return DetectStage(finder, config.detect, config.capture_fps()), stage_config


def build_features(config: RunConfig) -> tuple[BatchStage, StageConfig]:
    from engines.adapters.image_embedder import ImageEmbedder
    from stream.stages.features import FeaturesStage, keypoints_factory

    engine, manifest = open_engine(config, "image_embedder", config.features.threads)
    stage_config = config.features.for_device(engine.device)
    # up to detect.max_persons crops per frame: a batch of frames is a bigger batch of crops
    embedder = ImageEmbedder(engine, manifest,
                             max_batch=stage_config.batch * config.detect.max_persons)
    stage = FeaturesStage(embedder, keypoints_factory, image_rate=config.image_rate(),
                          keypoint_rate=config.keypoint_rate())
    stage.warm_up()
    return stage, stage_config


def build_classify(config: RunConfig, endpoints: Endpoints, out: Path | None,
                   context: zmq.Context) -> tuple[BatchStage, StageConfig]:
    from engines.adapters.classifier import CLASSIFIER_NAME, WindowClassifier
    from stream.endpoints import open_endpoint, start_curve
    from stream.stages.classify import ClassifyStage
    from stream.text_topic import TextTopic

    engine, manifest = open_engine(config, CLASSIFIER_NAME, config.classify.threads)
    stage_config = config.classify.for_device(engine.device)
    classifier = WindowClassifier(engine, manifest, max_batch=stage_config.batch * 8)
    # classify binds the outside endpoints (predictions PUB, text SUB): with CURVE, its
    # authenticator runs before they bind and stops, with the sinks, before the context goes
    curve = start_curve(context, endpoints, config.endpoints)
    try:
        pub = open_endpoint(context, endpoints, "predictions", "bind", config.endpoints,
                            curve=curve)
        credits = CreditPublisher(open_endpoint(context, endpoints, "credits", "bind",
                                                config.endpoints))
        text_socket = open_endpoint(context, endpoints, "text", "bind", config.endpoints,
                                    curve=curve)
        sinks: list[Any] = [PubSink(pub)]
        trace = None
        if out is not None:
            sinks.append(JsonlSink(out / "predictions.jsonl"))
            trace = JsonlSink(out / "frames.jsonl", name="frames")
    except BaseException:
        if curve is not None:
            curve.stop()
        raise
    text_socket.setsockopt(zmq.SUBSCRIBE, b"")
    if curve is not None:
        sinks.append(curve)  # closed after the PUB sink, when the stage closes

    def text_embedder() -> Any:
        from tokenizers import Tokenizer

        from engines.adapters.text_embedder import TextEmbedder, tokenizer_path

        engine, manifest = open_engine(config, "text_embedder", config.classify.threads)
        tokenizer = Tokenizer.from_file(str(tokenizer_path(config.resolved_engine_dir(),
                                                           manifest)))
        embedder = TextEmbedder(engine, manifest, tokenizer)

        def embed(texts: list[str]) -> np.ndarray:
            return embedder.embed(texts).vectors

        return embed

    stage = ClassifyStage(classifier, Sinks(sinks), config.classify,
                          text=TextTopic(text_socket, text_embedder,
                                         streams=config.stream_ids()), trace=trace,
                          credits=credits)
    return stage, stage_config


BUILD_ERRORS: tuple[type[BaseException], ...] = (
    EngineRefused, FileNotFoundError, ValidationError, ValueError, zmq.ZMQError)
"""Errors that end a stage while it is being built (engines, configuration, a bind such as
EADDRINUSE): the same start would fail again, so the stage exits with
:data:`~stream.exitcodes.EX_CONFIG` and the supervisor does not restart it."""


def build_stage(stage_name: str, index: int, config: RunConfig, endpoints: Endpoints,
                out: Path | None, context: zmq.Context) -> tuple[BatchStage, StageConfig, StageIO]:
    """An inference stage with its engines loaded and its sockets bound or connected."""
    # outputs hold a whole batch: a stage's own results are never dropped by its own
    # queue; the receiver's latest-wins drain bounds latency whatever waits in buffers
    hwm = config.endpoints.high_water_mark
    status = open_socket(context, zmq.PUSH, endpoints.status, bind=False, hwm=10)
    if stage_name == "detect":
        stage, stage_config = build_detect(config)
        inbound = open_socket(context, zmq.PULL, endpoints.detect_in, bind=True, hwm=hwm)
        outbound = open_socket(context, zmq.PUSH, endpoints.detect_out, bind=True,
                               hwm=max(hwm, stage_config.batch))
    elif stage_name == "features":
        stage, stage_config = build_features(config)
        inbound = open_socket(context, zmq.PULL, endpoints.detect_out, bind=False, hwm=hwm)
        outbound = open_socket(context, zmq.PUSH, endpoints.classify_in, bind=False,
                               hwm=max(hwm, stage_config.batch))
    else:
        stage, stage_config = build_classify(config, endpoints, out, context)
        inbound = open_socket(context, zmq.PULL, endpoints.classify_in, bind=True, hwm=hwm)
        outbound = None
    reporter = StatusReporter(status, stage_name, index,
                              interval_s=config.supervisor.status_interval_s,
                              stall_after_s=config.supervisor.stall_after_s)
    inputs = {"detect": "detect_in", "features": "detect_out", "classify": "classify_in"}
    rules = WireRules(streams=frozenset(config.stream_ids()))
    return stage, stage_config, StageIO(inbound, outbound, reporter, rules=rules,
                                        endpoint=inputs[stage_name])


def run_stage(stage_name: str, index: int, spec: dict[str, Any]) -> int:
    """Build the stage and run it until SIGTERM; the process exit code. A build error
    (engine refused, bad configuration, address in use) is logged with its fix and ends
    the stage with :data:`EX_CONFIG`, which the supervisor never restarts."""
    stop = StopFlag().install()
    context = zmq.Context()
    try:
        try:
            config = RunConfig.model_validate(spec["config"])
            endpoints = Endpoints(**spec["endpoints"])
            out = Path(spec["out"]) if spec.get("out") else None
            if stage_name != "capture":
                stage, stage_config, io = build_stage(stage_name, index, config, endpoints,
                                                      out, context)
        except BUILD_ERRORS as error:
            log.error("%s %s", FATAL_MARKER, error)
            return EX_CONFIG
        if stage_name == "capture":
            from stream.stages.capture import run_capture

            return run_capture(config, index, endpoints, stop, context)
        try:
            run_batch_stage(stage, io, stage_config, stop)
        finally:
            stage.close()
        return 0
    finally:
        # a short linger lets the last messages out: an end of stream, the final status
        context.destroy(linger=EXIT_LINGER_MS)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3 or args[0] not in STAGES:
        print(f"usage: python -m stream.stages.main {{{','.join(STAGES)}}} INDEX SPEC_JSON",
              file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO,
                        format=f"%(levelname)s {args[0]}[{args[1]}] %(name)s: %(message)s")
    spec = json.loads(Path(args[2]).read_text())
    return run_stage(args[0], int(args[1]), spec)


if __name__ == "__main__":
    sys.exit(main())
