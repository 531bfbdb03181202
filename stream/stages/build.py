"""Building a stage: its engines opened and verified, its sockets bound or connected.

Each builder makes one stage object as its process runs it (:mod:`stream.stages.main` is
the process entry point); fused placement builds detect and features with the same
builders into one worker process for a share of the streams (:mod:`stream.stages.fused`).
Engines are verified on load (:func:`engines.runtime.open_engine`): a stale or missing
engine is refused with a message naming the command that fixes it, one of
:data:`BUILD_ERRORS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import zmq
from pydantic import ValidationError

from engines.manifest import EngineRefused
from engines.runtime import open_engine
from stream.config import RunConfig, StageConfig
from stream.stages.loop import BatchStage, StageIO
from stream.stages.sinks import JsonlSink, PubSink, ResultsSink, Sink, Sinks
from stream.transport.credits import CreditPublisher
from stream.transport.endpoints import Endpoints, Side, open_endpoint
from stream.transport.status import StatusReporter
from stream.transport.subscriptions import watch
from stream.transport.wire import WireRules

if TYPE_CHECKING:
    from stream.stages.fused import FusedChain, FusedIO

log = logging.getLogger(__name__)

STATE_FILE = "classify-state.json"


def build_detect(config: RunConfig, context: zmq.Context | None = None,
                 endpoints: Endpoints | None = None) -> tuple[BatchStage, StageConfig]:
    """Detect on the run's perception core (``keypoints`` resolved before the stages
    start; resolved here only when a caller skipped that), warmed up for the run's streams.
    With ``ui.enabled`` (and sockets to bind) it publishes the web view's preview topic;
    with ``record.path``, the recorder's topic."""
    from stream.stages.detect import DetectStage
    from stream.stages.perception import open_run_core

    preview = None
    if config.ui.enabled and context is not None and endpoints is not None:
        from stream.ui.preview import PreviewPublisher

        preview = PreviewPublisher(
            open_endpoint(context, endpoints, "preview", "bind", config.endpoints),
            fps=config.ui.preview_fps, width=config.ui.preview_width,
            quality=config.ui.jpeg_quality)
    record = None
    if config.record.path is not None and context is not None and endpoints is not None:
        from stream.record.publisher import RecordPublisher

        record = RecordPublisher(
            open_endpoint(context, endpoints, "record", "bind", config.endpoints),
            fps=config.record.fps, width=config.record.width)
    core = open_run_core(config)
    size = max(((s.height, s.width) for s in config.sources), default=(480, 640))
    core.warm_up(config.stream_ids(), size)
    return DetectStage(core, preview, record), config.detect.for_device(core.device)


def build_features(config: RunConfig) -> tuple[BatchStage, StageConfig]:
    """Features with the keypoint strategy that pairs with detect's core: MediaPipe on each
    crop, or the keypoints detect ships with it."""
    from engines.adapters.image_embedder import ImageEmbedder
    from engines.adapters.perception import crop_keypoints_for
    from stream.stages.features import FeaturesStage
    from stream.stages.perception import keypoint_source

    engine, manifest = open_engine(config.resolved_engine_dir(), "image_embedder",
                                   config.engine_backend(), threads=config.features.threads)
    stage_config = config.features.for_device(engine.device)
    # up to detect.max_persons crops per frame: a batch of frames is a bigger batch of crops
    embedder = ImageEmbedder(engine, manifest,
                             max_batch=stage_config.batch * config.detect.max_persons)
    stage = FeaturesStage(embedder, crop_keypoints_for(keypoint_source(config)),
                          image_rate=config.image_rate(), keypoint_rate=config.keypoint_rate())
    stage.warm_up()
    return stage, stage_config


def build_classify(config: RunConfig, endpoints: Endpoints, out: Path | None,
                   context: zmq.Context,
                   state_dir: Path | None = None) -> tuple[BatchStage, StageConfig]:
    """Classify with its sinks; ``state_dir`` (the run's private folder) keeps what must
    outlive a restart of this stage: each stream's next prediction ``seq`` and accounting.
    In split placement it acknowledges each frame on the credits PUB it binds; in fused
    the workers grant the credits (:mod:`stream.stages.grants`), and classify binds none."""
    from engines.adapters.classifier import CLASSIFIER_NAME, WindowClassifier
    from stream.stages.classify import ClassifyMemory, ClassifyStage
    from stream.transport.endpoints import start_curve
    from stream.transport.text_topic import TextTopic

    engine, manifest = open_engine(config.resolved_engine_dir(), CLASSIFIER_NAME,
                                   config.engine_backend(), threads=config.classify.threads)
    stage_config = config.classify.for_device(engine.device)
    classifier = WindowClassifier(engine, manifest, max_batch=stage_config.batch * 8)
    # classify binds the outside endpoints (predictions PUB, text SUB): with CURVE, its
    # authenticator runs before they bind and stops, with the sinks, before the context goes
    curve = start_curve(context, endpoints, config.endpoints)
    try:
        pub = open_endpoint(context, endpoints, "predictions", "bind", config.endpoints,
                            curve=curve)
        credits = None if config.placement == "fused" else CreditPublisher(
            open_endpoint(context, endpoints, "credits", "bind", config.endpoints))
        text_socket = open_endpoint(context, endpoints, "text", "bind", config.endpoints,
                                    curve=curve)
        echo = None
        if config.echoes_transcripts:  # the transcript topic (web view, MQTT)
            from stream.ui.transcript import TranscriptEcho

            echo = TranscriptEcho(open_endpoint(context, endpoints, "transcript", "bind",
                                                config.endpoints))
        results = open_endpoint(context, endpoints, "results", "connect", config.endpoints)
        sinks: list[Sink] = [PubSink(pub), ResultsSink(results)]
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

    def text_embedder() -> Callable[[list[str]], np.ndarray]:
        from tokenizers import Tokenizer

        from engines.adapters.text_embedder import TextEmbedder, tokenizer_path

        engine, manifest = open_engine(config.resolved_engine_dir(), "text_embedder",
                                       config.engine_backend(), threads=config.classify.threads)
        tokenizer = Tokenizer.from_file(str(tokenizer_path(config.resolved_engine_dir(),
                                                           manifest)))
        embedder = TextEmbedder(engine, manifest, tokenizer)

        def embed(texts: list[str]) -> np.ndarray:
            return embedder.embed(texts).vectors

        return embed

    memory = None if state_dir is None else ClassifyMemory(state_dir / STATE_FILE)
    topic = TextTopic(text_socket, text_embedder, streams=config.stream_ids(),
                      on_line=None if echo is None else echo.publish)
    stage = ClassifyStage(classifier, Sinks(sinks), config.classify,
                          text=topic, trace=trace,
                          credits=credits,
                          memory=memory,
                          watched=[*([] if curve is None else curve.monitors),
                                   *watch([pub, credits and credits.socket,
                                           echo and echo.socket])])
    topic.clock = stage.clock_offset  # media-timed lines land in the windows' span
    return stage, stage_config


BUILD_ERRORS: tuple[type[BaseException], ...] = (
    EngineRefused, FileNotFoundError, ValidationError, ValueError, zmq.ZMQError)
"""Errors that end a stage while it is being built (engines, configuration, a bind such as
EADDRINUSE): the same start would fail again, so the stage exits with
:data:`~stream.exitcodes.EX_CONFIG` and the supervisor does not restart it."""


def build_stage(stage_name: str, index: int, config: RunConfig, endpoints: Endpoints,
                out: Path | None, context: zmq.Context,
                state_dir: Path | None = None) -> tuple[BatchStage, StageConfig, StageIO]:
    """An inference stage with its engines loaded and its sockets bound or connected, each
    as :data:`stream.transport.endpoints.LAYOUT` declares it (type, queue, message size bound)."""

    def endpoint(name: str, side: Side, hwm: int | None = None) -> zmq.Socket:
        return open_endpoint(context, endpoints, name, side, config.endpoints, hwm=hwm)

    status = endpoint("status", "connect")
    if stage_name == "detect":
        stage, stage_config = build_detect(config, context, endpoints)
        inbound = endpoint("detect_in", "bind")
        # outputs hold a whole batch: a stage's own results are never dropped by its own
        # queue; the receiver's latest-wins drain bounds latency whatever waits in buffers
        outbound = endpoint("detect_out", "bind", _batch_hwm(config, stage_config))
    elif stage_name == "features":
        stage, stage_config = build_features(config)
        inbound = endpoint("detect_out", "connect")
        outbound = endpoint("classify_in", "connect", _batch_hwm(config, stage_config))
    else:
        stage, stage_config = build_classify(config, endpoints, out, context, state_dir)
        inbound = endpoint("classify_in", "bind")
        outbound = None
    reporter = StatusReporter(status, stage_name, index,
                              interval_s=config.supervisor.status_interval_s,
                              stall_after_s=config.supervisor.stall_after_s)
    inputs = {"detect": "detect_in", "features": "detect_out", "classify": "classify_in"}
    rules = WireRules(streams=frozenset(config.stream_ids()),
                      max_bytes=config.endpoints.max_frame_bytes)
    return stage, stage_config, StageIO(inbound, outbound, reporter, rules=rules,
                                        endpoint=inputs[stage_name],
                                        offline=offline_in_flight(config))


def offline_in_flight(config: RunConfig) -> dict[str, int]:
    """Each offline stream (``realtime: false``) and its ``in_flight``: what a stage's
    inbox keeps of it (:class:`stream.transport.inbox.LatestInbox`)."""
    return {stream: source.in_flight
            for stream, source in zip(config.stream_ids(), config.sources, strict=True)
            if not source.realtime}


def build_fused(index: int, config: RunConfig, endpoints: Endpoints, context: zmq.Context,
                ) -> tuple[FusedChain, FusedIO]:
    """Fused worker ``index`` (:mod:`stream.stages.fused`): detect and features built as
    their own processes would build them, for this worker's streams only, one status
    reporter each (``detect[INDEX]``, ``features[INDEX]``); its own input and credits
    endpoints, bound (:meth:`Endpoints.for_worker`: its captures connect there), and
    classify's input, connected."""
    from stream.stages.fused import FusedChain, FusedIO, Link
    from stream.stages.grants import TurnGrants
    from stream.stages.placement import FUSED_CLASSIFY_DEPTH, FUSED_STAGES, worker_streams

    streams = worker_streams(config, index)
    own = set(streams)
    # the engines warm up, and detect's tracker keeps state, for this worker's streams only
    config = config.model_copy(update={"sources": [
        source for stream, source in zip(config.stream_ids(), config.sources, strict=True)
        if stream in own]})
    worker = endpoints.for_worker(index, config.endpoints)
    builders: dict[str, Callable[[], tuple[BatchStage, StageConfig]]] = {
        "detect": lambda: build_detect(config, context, worker),
        "features": lambda: build_features(config),
    }
    status = open_endpoint(context, endpoints, "status", "connect", config.endpoints)
    links: list[Link] = []
    try:
        for name in FUSED_STAGES:
            stage, stage_config = builders[name]()
            reporter = StatusReporter(status, name, index,
                                      interval_s=config.supervisor.status_interval_s,
                                      stall_after_s=config.supervisor.stall_after_s)
            links.append(Link(stage, stage_config, reporter))
        inbound = open_endpoint(context, worker, "detect_in", "bind", config.endpoints)
        credits = CreditPublisher(open_endpoint(context, worker, "credits", "bind",
                                                config.endpoints))
        # finished work waits for classify rather than being dropped (FUSED_CLASSIFY_DEPTH)
        outbound = open_endpoint(context, endpoints, "classify_in", "connect",
                                 config.endpoints, hwm=max(FUSED_CLASSIFY_DEPTH,
                                                           _batch_hwm(config, links[-1].config)))
    except BaseException:
        for link in reversed(links):
            link.stage.close()
        raise
    rules = WireRules(streams=frozenset(streams), max_bytes=config.endpoints.max_frame_bytes)
    offline = offline_in_flight(config)
    # the worker grants its captures' credits at each stream's turn instead of classify
    # acknowledging each frame as it finishes (stream.stages.grants)
    return FusedChain(links, outbound), FusedIO(inbound, rules, "detect_in", offline,
                                                TurnGrants(credits))


def _batch_hwm(config: RunConfig, stage_config: StageConfig) -> int:
    return max(config.endpoints.high_water_mark, stage_config.batch)
