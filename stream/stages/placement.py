"""Placement: how the logical stage graph maps onto processes, and the rule of ``auto``.

The graph is always capture -> detect -> features -> classify. ``split`` runs one process
per stage (``features.replicas`` of features): stages overlap, which pays when each has a
core (or the engines a GPU) of its own. ``fused`` runs detect and features together in
worker processes (:mod:`stream.stages.fused`), each frame handed from one to the next in
memory, and classify (cheap) in one process for all; captures stay separate (a camera must
be read on time whatever the models do). On a small CPU the split processes only take turns
on the same cores and pay for every hand-off (serialising, copying, polling) and for frames
one stage finished and the next then dropped; fused pays for none of that, and work starts
only on a frame the whole chain will finish.

**Workers** (``fused.workers``, 0: auto, :func:`fused_workers`): the streams are shared
out, stream ``i`` to worker ``i mod workers``, and a worker serves its streams in turn.
Auto takes one worker per usable core, at most one per stream, and each worker's engines
then take ``cores // workers`` threads. Two frames on two cores, one thread each, go
faster than one frame after another on two threads: an engine's threads wait for each
other at every operator, and detect's TFLite graphs run on one thread anyway. The price is
latency: a frame's embedder then runs on one core. With one stream there is one worker, on
every core.

``auto`` is an explicit rule, applied once before the stages start (:func:`choose`):

1. ``features.replicas`` above 1 -> split (replicas are processes side by side);
2. the image embedder (the heaviest engine) on a GPU -> split (the GPU overlaps with the
   CPU stages, and features batches across streams);
3. otherwise (the engines on the CPU) -> fused, whatever the number of cores: the workers
   take every core (one per core, at most one per stream, each on its share), where split
   stages run their engines on one thread each (``threads: 1``), so on a large CPU they
   leave most cores idle.

The choice is printed as one line naming its rule (:attr:`Placed.rule`); the full reason
and the workers are saved in ``config.json`` (``placement``, ``fused.workers`` and
``reasons.placement``).

Fused changes two defaults. Its engines take the worker's share of the cores (``threads``,
unless a stage sets its own: :func:`fused_stage`): within a worker they run one after
another, so each has those cores to itself. And an offline source (``realtime: false``)
whose ``in_flight`` is not set keeps 1 frame in flight instead of 2
(:data:`FUSED_IN_FLIGHT`). In split, the second frame waits at the slowest stage while the
first is in the stages after it; fused has no stage after it, so the second frame would
only wait a whole chain's time. With several streams the others' frames keep the chain
busy.

A live source (``realtime: true``: a camera, a URL, the demo, a file in real time) is
paced by the same credits (:class:`stream.transport.credits.LiveWindow`): its capture drops before
sending, so no stage works on a frame a later one drops, provided no stage ever holds more
of a stream's frames than its inbox keeps (detect and features: one waiting, beside the
one being worked on). Unless the source sets ``in_flight`` (:func:`live_in_flight`):

- fused: :data:`FUSED_IN_FLIGHT` (1): the one inbox keeps 1 per stream;
- split, one stream: :data:`SPLIT_LIVE_IN_FLIGHT` (2): the slowest stage works on one frame
  while the next waits in its inbox, so the bottleneck never idles; a third frame would
  wait there too and push one out (the faster stages cannot hold it: they pass it on);
- split, several streams: 1 each: a stage busy with another stream's frame would otherwise
  receive both of this stream's frames and push the older out (the stages serve the
  streams in turn); the other streams' frames keep the slowest stage busy instead.

In fused placement the credits come from each worker, not from classify: it asks one of its
streams at a time for its next frame, as the current frame's chain ends
(:mod:`stream.stages.grants`), so a frame never waits in the inbox behind the other streams' frames.

Each window starts with one frame until it was acknowledged (slow start): frames sent
before the stages are connected would reach detect together.

The measurements behind these rules are dated pages under ``docs/measurements/``.

Example:
    >>> choose("auto", replicas=1, cores=2, device=lambda: "cpu").placement
    'fused'
    >>> choose("auto", replicas=1, cores=16, device=lambda: "cpu").placement
    'fused'
    >>> choose("auto", replicas=1, cores=16, device=lambda: "cuda:0").placement
    'split'
    >>> fused_workers(0, cores=2, streams=4), fused_workers(0, cores=2, streams=1)
    (2, 1)
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from stream.config import ClassifyConfig, RunConfig, SourceConfig, StageConfig

log = logging.getLogger(__name__)

Layout = Literal["split", "fused"]

FUSED_STAGES = ("detect", "features")
"""The logical stages a fused worker runs, in order (classify is one process for all)."""

FUSED_IN_FLIGHT = 1
"""``in_flight`` of a source under fused placement, unless the source sets it."""

FUSED_CLASSIFY_DEPTH = 64
"""Frames classify keeps per stream in fused placement (:func:`fused_classify`), and what
a worker's output to classify may queue: classify catches up instead of dropping."""

SPLIT_LIVE_IN_FLIGHT = 2
"""``in_flight`` of a live source under split placement when it is the only stream."""

CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class Placed:
    """A resolved placement and why it was taken: ``rule``, short, is printed on the
    console; ``reason``, complete, is kept with the run (``reasons.placement``)."""

    placement: Layout
    reason: str
    rule: str = ""

    @property
    def summary(self) -> str:
        """The one-line form: the rule when there is one, else the reason."""
        return self.rule or self.reason


def usable_cores(cgroup_cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup (v2) CPU quota
    when one is set (a container given 2 CPUs on a 64-core host has 2)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cores)


def choose(asked: str, *, replicas: int, cores: int, device: Callable[[], str]) -> Placed:
    """``split`` and ``fused`` as given; ``auto`` by the rule of the module docstring.
    ``device`` says where the image embedder runs (called only when the rule needs it:
    it loads the engine)."""
    if asked in ("split", "fused"):
        return Placed(asked, f"placement: {asked} was asked for", "asked for")
    if asked != "auto":
        raise ValueError(f"placement is {asked!r}; choose auto, split or fused")
    if replicas > 1:
        return Placed("split", f"auto: features.replicas is {replicas}, and replicas run as "
                               "processes side by side", f"auto: features.replicas {replicas}")
    where = device()
    if not where.startswith("cpu"):
        return Placed("split", f"auto: the image embedder runs on {where}, which overlaps "
                               "with the CPU stages", f"auto: image embedder on {where}")
    plural = "s" if cores != 1 else ""
    return Placed("fused", f"auto: the engines on the CPU ({cores} usable core{plural}): "
                           "fused workers use every core (split stages run one engine thread "
                           "each), hand frames from detect to features in memory and drop "
                           "none they have worked on",
                  f"auto: engines on the CPU, {cores} core{plural}")


def resolve_placement(config: RunConfig, cores: int | None = None) -> tuple[RunConfig, Placed]:
    """``config`` with ``placement`` resolved and its reason in ``reasons.placement``."""

    def device() -> str:
        return image_embedder_device(config)

    cores = usable_cores() if cores is None else cores
    placed = choose(config.placement, replicas=config.features.replicas, cores=cores,
                    device=device)
    sources = config.sources
    update: dict[str, object] = {}
    if placed.placement == "fused":
        workers = fused_workers(config.fused.workers, cores=cores, streams=len(sources))
        share = max(1, cores // workers)
        why = workers_reason(config.fused.workers, workers, cores, share)
        plural = "s" if workers != 1 else ""
        threads = f"{share} thread{'s' if share != 1 else ''}"
        placed = Placed("fused", f"{placed.reason}; {why}",
                        f"{placed.rule}; {workers} worker{plural}, {threads} each")
        sources = [fused_source(source) for source in sources]
        update = {name: fused_stage(getattr(config, name), share) for name in FUSED_STAGES}
        update["classify"] = fused_classify(config.classify)
        update["fused"] = config.fused.model_copy(update={"workers": workers})
    if config.placement == "auto" or placed.placement == "fused":
        log.debug("placement: %s (%s)", placed.placement, placed.reason)
    reasons = config.reasons.model_copy(update={"placement": placed.reason})
    sources = [live_source(source, placed.placement, len(sources)) for source in sources]
    return config.model_copy(update={"placement": placed.placement, "reasons": reasons,
                                     "sources": sources, **update}), placed


def fused_workers(asked: int, *, cores: int, streams: int) -> int:
    """How many fused workers share ``streams`` streams: ``asked`` when set (0: one per
    usable core), never more than the streams (a worker without a stream would idle)."""
    return max(1, min(asked or cores, max(1, streams)))


def workers_reason(asked: int, workers: int, cores: int, share: int) -> str:
    """Why ``workers`` fused workers, for ``reasons.placement``."""
    why = ("fused.workers was asked for" if asked
           else f"one per usable core ({cores}), at most one per stream")
    plural = "s" if share != 1 else ""
    return (f"{workers} worker{'s' if workers != 1 else ''} ({why}), the streams shared out, "
            f"engines on {share} thread{plural} each")


def detect_processes(config: RunConfig) -> int:
    """How many processes run detect (and publish previews, bind inputs and credits): the
    fused workers of a resolved ``config`` (at least 1), or split's one detect."""
    return max(1, config.fused.workers) if config.placement == "fused" else 1


def worker_of(index: int, workers: int) -> int:
    """The fused worker that serves the source at ``index``."""
    return index % max(1, workers)


def worker_streams(config: RunConfig, worker: int) -> list[str]:
    """The stream ids fused worker ``worker`` serves (resolved ``fused.workers``)."""
    return [stream for index, stream in enumerate(config.stream_ids())
            if worker_of(index, config.fused.workers) == worker]


def fused_stage(stage: StageConfig, share: int) -> StageConfig:
    """``stage`` as a fused worker runs it: its engines take the worker's ``share`` of the
    usable cores (``threads``) unless it sets its own. A worker's stages run one after
    another, so each engine has those cores to itself while it runs; with one thread each,
    the other cores would idle while a frame went through."""
    if "threads" in stage.model_fields_set:
        return stage
    return stage.model_copy(update={"threads": share})


def fused_classify(classify: ClassifyConfig) -> ClassifyConfig:
    """Classify as fused placement runs it (each setting unless set):

    - it takes what has arrived without waiting ``max_delay_ms`` for more. Its frames come
      from the workers one at a time per stream, and a window is cheap: waiting to batch
      only adds the wait to every prediction;
    - it keeps :data:`FUSED_CLASSIFY_DEPTH` frames per stream. The workers' grants do not
      wait for classify, so a classify starved of the CPU for a moment finds several of a
      stream's frames at once; a latest-wins depth of 4 could drop one a worker had
      finished. They are small (embeddings and keypoints) and cheap
      to catch up on."""
    update: dict[str, float | int] = {}
    if "max_delay_ms" not in classify.model_fields_set:
        update["max_delay_ms"] = 0.0
    if "queue_depth" not in classify.model_fields_set:
        update["queue_depth"] = FUSED_CLASSIFY_DEPTH
    return classify.model_copy(update=update)


def fused_source(source: SourceConfig) -> SourceConfig:
    """``source`` as fused placement runs it: an offline source without its own
    ``in_flight`` keeps :data:`FUSED_IN_FLIGHT` frames in flight (see the module doc)."""
    if source.realtime or "in_flight" in source.model_fields_set:
        return source
    return source.model_copy(update={"in_flight": FUSED_IN_FLIGHT})


def live_in_flight(placement: Layout, streams: int) -> int:
    """Frames a live source keeps unacknowledged by default (see the module doc): the most
    that no stage of ``placement`` has to push out of a depth-1 inbox."""
    if placement == "fused" or streams > 1:
        return FUSED_IN_FLIGHT
    return SPLIT_LIVE_IN_FLIGHT


def live_source(source: SourceConfig, placement: Layout, streams: int) -> SourceConfig:
    """``source`` with its live ``in_flight`` default for ``placement`` and ``streams``
    sources; an offline source or one that sets ``in_flight`` is kept as it is."""
    live = source.realtime or source.kind in ("camera", "url")  # these pace themselves
    if not live or "in_flight" in source.model_fields_set:
        return source
    return source.model_copy(update={"in_flight": live_in_flight(placement, streams)})


def image_embedder_device(config: RunConfig) -> str:
    """Where the run's backend puts the image embedder (``cpu``, ``cuda:0``...): ``cpu``
    at once on a machine where no runtime sees a GPU; otherwise the engine is loaded once,
    as the features stage would, then closed (a GPU may still be refused by the engine's
    backend, so only loading it tells)."""
    from engines.runtime import open_engine

    if not gpu_visible():
        return "cpu"

    engine, _ = open_engine(config.resolved_engine_dir(), "image_embedder", config.engine_backend(),
                            threads=config.features.threads)
    try:
        return engine.device
    finally:
        engine.close()


def gpu_visible() -> bool:
    """Whether onnxruntime offers a GPU provider or torch sees a CUDA device: without
    either, every backend runs on the CPU and no engine need be loaded to know it."""
    import onnxruntime

    gpu_providers = {"CUDAExecutionProvider", "TensorrtExecutionProvider"}
    if gpu_providers & set(onnxruntime.get_available_providers()):
        return True
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
