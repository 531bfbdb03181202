"""The run's figures in Prometheus' exposition format, served at ``/metrics``.

The supervisor already receives every stage's status report and every prediction; this
module turns what it keeps into metrics, at scrape time (a custom collector, as an
exporter does), so a run without a scraper pays nothing and a scrape reads the newest
report. Two figures need every observation and are kept as they arrive: the end-to-end
latency and the per-stage compute time of each prediction's newest frame (histograms, fed
by :meth:`RunMetrics.prediction`, a :class:`~stream.run.view.View` call).

Stage counters are per process; a restarted stage starts its own from zero. Here each is
added up over the processes that reported under its label (:class:`ProcessTotals`), so a
``_total`` only ever grows, restarts included.

Names (prefix ``hidemo_``), labels in braces:

- per stream: ``frames_total``, ``frames_dropped_total`` (on purpose, by latest-wins
  hops), ``frames_lost_total``, ``predictions_total``, ``e2e_latency_seconds``
  (histogram), ``capture_dropped_total{cause}`` (``no_credit``: a live capture replaced a
  frame the pipeline had no room for; ``blocked``: its output was full),
  ``source_reconnects_total``, ``source_frame_age_seconds``;
- per stage (``stage``, ``replica``): ``stage_up``, ``stage_state{state}``,
  ``stage_restarts_total``, ``stage_hangs_total``, ``stage_received_total``,
  ``stage_processed_total``, ``stage_sent_total``, ``stage_dropped_total{cause}``
  (``inbox``, ``downstream``), ``stage_failed_items_total{error}``,
  ``stage_batches_total``, ``stage_busy_seconds_total``, ``stage_compute_seconds``
  (histogram, per stage), ``rejected_messages_total{endpoint,reason}``,
  ``stage_cpu_seconds_total`` and ``stage_resident_memory_bytes`` (per process);
- the run: ``run_info{profile,placement,keypoints,backend,detector}``,
  ``engine_info{engine,model,precision,onnx_sha256,source_sha256,random_weights}``,
  ``random_weights``, ``run_start_time_seconds``, ``ready``, and with MQTT
  ``mqtt_connected``, ``mqtt_published_total``, ``mqtt_dropped_total``,
  ``mqtt_queued_messages``, ``mqtt_connects_total``.

Example:
    >>> metrics = RunMetrics(supervisor)  # doctest: +SKIP
    >>> generate_latest(metrics.registry)  # doctest: +SKIP
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from stream.config import RunConfig
from stream.prediction import Prediction
from stream.run.health import ChildRecord, HealthRecord, readiness
from stream.run.resources import ResourceMeter
from stream.run.served import served_summary
from stream.strictjson import JsonDict
from stream.transport.curve import RefusalMonitor
from stream.transport.status import Counters, Health, Rejections, StageStatus

LATENCY_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0)
"""End-to-end latency: capture to prediction, from tens of milliseconds (a GPU) to
seconds (a slow CPU, a window's frames queued)."""
COMPUTE_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""One stage's work on one frame (its batch's time)."""
LABEL = re.compile(r"^(?P<stage>[a-z_]+)\[(?P<replica>\d+)\]$")
COUNTED = ("received", "processed", "sent", "dropped_in", "dropped_out", "batches", "busy_s")
"""The :class:`Counters` fields that only grow within one process."""
CAPTURE_COUNTED = ("reconnects",)
"""A capture's figures in ``extra`` that only grow within one process."""


def split_label(label: str) -> tuple[str, str]:
    """``detect[0]`` -> (``detect``, ``0``)."""
    match = LABEL.match(label)
    return (match["stage"], match["replica"]) if match else (label, "0")


class MetricsRecord(HealthRecord, Protocol):
    """What the supervisor keeps that the metrics read."""

    asrs: Sequence[ChildRecord]
    resources: ResourceMeter
    status_rejections: Rejections
    result_rejections: Rejections
    handshakes: RefusalMonitor | None


@dataclass
class _Totals:
    pid: int = 0
    base: dict[str, float] = field(default_factory=dict)
    """What the label's earlier processes counted, added up."""
    last: dict[str, float] = field(default_factory=dict)
    """What the current process counted, as last reported."""

    def value(self, key: str) -> float:
        return self.base.get(key, 0.0) + self.last.get(key, 0.0)


class ProcessTotals:
    """Per status label, each counter added up over the processes that reported under it
    (a restart starts a process's counters at zero; the label's total goes on).

    Fed by the supervisor's thread (:meth:`update`), read by the HTTP server's (a copy of
    the mapping; each label's figures are replaced whole, never edited in place)."""

    def __init__(self) -> None:
        self._totals: dict[str, _Totals] = {}

    def update(self, statuses: dict[str, StageStatus]) -> None:
        for label, status in statuses.items():
            totals = self._totals.get(label)
            figures = flatten(status)
            if totals is None:
                self._totals[label] = _Totals(status.pid, {}, figures)
                continue
            if status.pid == totals.pid:
                if figures != totals.last:
                    self._totals[label] = _Totals(totals.pid, totals.base, figures)
                continue
            base = dict(totals.base)
            for key, value in totals.last.items():
                base[key] = base.get(key, 0.0) + value
            self._totals[label] = _Totals(status.pid, base, figures)

    def snapshot(self) -> dict[str, _Totals]:
        return dict(self._totals)


def flatten(status: StageStatus) -> dict[str, float]:
    """A report's growing counters as flat keys: ``received``, ``rejected/ENDPOINT/REASON``,
    ``failed/ERROR``, and a capture's ``reconnects``."""
    counters: Counters = status.counters
    out = {key: float(getattr(counters, key)) for key in COUNTED}
    for endpoint, reasons in counters.rejected.items():
        for reason, count in reasons.items():
            out[f"rejected/{endpoint}/{reason}"] = float(count)
    for error, count in counters.failed.items():
        out[f"failed/{error}"] = float(count)
    if status.stage == "capture":
        for key in CAPTURE_COUNTED:
            value = status.extra.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = float(value)
    return out


class RunMetrics:
    """The registry ``/metrics`` serves, for the run ``run`` (the supervisor), plus a
    :class:`~stream.run.view.View` the supervisor feeds (predictions, status updates).
    ``engines`` are the identities of the engines the run loads (:func:`engine_identities`);
    ``mqtt`` the MQTT publisher's figures (None: no MQTT)."""

    def __init__(self, run: MetricsRecord, engines: Sequence[dict[str, str]] = (),
                 mqtt: Callable[[], JsonDict] | None = None) -> None:
        self.run = run
        self.engines = list(engines)
        self.mqtt = mqtt
        self.started = time.time()
        self.totals = ProcessTotals()
        self.random_weights = any(e.get("random_weights") == "true" for e in self.engines)
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(namespace="hidemo_supervisor", registry=self.registry)
        self.latency = Histogram("hidemo_e2e_latency_seconds",
                                 "Capture to prediction, for each prediction's newest frame",
                                 ["stream"], buckets=LATENCY_BUCKETS_S,
                                 registry=self.registry)
        self.compute = Histogram("hidemo_stage_compute_seconds",
                                 "One stage's work on each prediction's newest frame",
                                 ["stage"], buckets=COMPUTE_BUCKETS_S, registry=self.registry)
        self._lock = threading.Lock()
        self.registry.register(_RunCollector(self))

    # -- the View the supervisor feeds ---------------------------------------------------------

    def prediction(self, record: Prediction) -> None:
        total = record.latency_ms.get("total")
        if total is not None:
            self.latency.labels(record.stream).observe(max(0.0, total) / 1000.0)
        for stage, ms in record.latency_ms.items():
            if stage not in ("total", "queues", "capture"):  # a capture's stamp holds no work
                self.compute.labels(stage).observe(max(0.0, ms) / 1000.0)
        if record.random_weights:
            self.random_weights = True

    def event(self, event: JsonDict) -> None:
        pass

    def update(self, statuses: dict[str, StageStatus], restarts: dict[str, int]) -> None:
        self.totals.update(statuses)

    def close(self) -> None:
        pass


class _RunCollector(Collector):
    """Reads the supervisor's state at each scrape."""

    def __init__(self, metrics: RunMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # generated per scrape: nothing to check for clashes up front

    def collect(self) -> Iterator[Metric]:
        metrics, run = self.metrics, self.metrics.run
        yield from self._run_info(metrics, run)
        yield from self._streams(run)
        yield from self._stages(metrics, run)
        yield from self._rejections(metrics, run)
        yield from self._resources(run)
        yield from _served(dict(run.statuses))
        if metrics.mqtt is not None:
            yield from _mqtt(metrics.mqtt())

    @staticmethod
    def _run_info(metrics: RunMetrics, run: MetricsRecord) -> Iterator[Metric]:
        config = run.config
        info = GaugeMetricFamily("hidemo_run_info", "The run's resolved choices",
                                 labels=["profile", "placement", "keypoints", "backend",
                                         "detector"])
        info.add_metric([config.profile, config.placement, config.keypoints, config.backend,
                         config.detect.detector], 1)
        yield info
        engines = GaugeMetricFamily("hidemo_engine_info", "Identity of each engine loaded",
                                    labels=["engine", "model", "precision", "onnx_sha256",
                                            "source_sha256", "random_weights"])
        for engine in metrics.engines:
            engines.add_metric([engine.get(k, "") for k in (
                "engine", "model", "precision", "onnx_sha256", "source_sha256",
                "random_weights")], 1)
        yield engines
        yield GaugeMetricFamily("hidemo_random_weights",
                                "1 when an engine has random weights: the predictions mean "
                                "nothing (latency is real)",
                                value=int(metrics.random_weights))
        yield GaugeMetricFamily("hidemo_run_start_time_seconds",
                                "When the run started, seconds since the Unix epoch",
                                value=metrics.started)
        yield GaugeMetricFamily("hidemo_ready", "1 when /readyz answers 200",
                                value=int(readiness(run).ok))

    @staticmethod
    def _streams(run: MetricsRecord) -> Iterator[Metric]:
        statuses = dict(run.statuses)
        classify = statuses.get("classify[0]")
        streams = {} if classify is None else classify.extra.get("streams", {})
        if not isinstance(streams, dict):
            streams = {}
        families = {
            "frames": CounterMetricFamily("hidemo_frames", "Frames that reached the "
                                          "classifier", labels=["stream"]),
            "dropped": CounterMetricFamily("hidemo_frames_dropped", "Frames dropped on "
                                           "purpose by latest-wins hops", labels=["stream"]),
            "lost": CounterMetricFamily("hidemo_frames_lost", "Frames lost (a crash, a dead "
                                        "peer)", labels=["stream"]),
            "predictions": CounterMetricFamily("hidemo_predictions", "Predictions made",
                                               labels=["stream"]),
        }
        for stream in run.config.stream_ids():
            figures = streams.get(stream, {})
            for key, family in families.items():
                value = figures.get(key, 0) if isinstance(figures, dict) else 0
                family.add_metric([stream], value if isinstance(value, int | float) else 0)
        yield from families.values()

    @staticmethod
    def _stages(metrics: RunMetrics, run: MetricsRecord) -> Iterator[Metric]:
        statuses, totals = dict(run.statuses), metrics.totals.snapshot()
        ids, now = run.config.stream_ids(), time.monotonic()
        labels = ["stage", "replica"]
        up = GaugeMetricFamily("hidemo_stage_up", "1 when the stage's process runs and has "
                               "reported ready", labels=labels)
        state = GaugeMetricFamily("hidemo_stage_state", "The stage's last reported health "
                                  "(1 for the current state)", labels=[*labels, "state"])
        restarts = CounterMetricFamily("hidemo_stage_restarts", "Restarts of the stage's "
                                       "process", labels=labels)
        hangs = CounterMetricFamily("hidemo_stage_hangs", "Times the stage fell silent and "
                                    "was killed", labels=labels)
        counts = {key: CounterMetricFamily(f"hidemo_stage_{key}", f"Items {key} by the "
                                           "stage", labels=labels)
                  for key in ("received", "processed", "sent")}
        dropped = CounterMetricFamily("hidemo_stage_dropped", "Items the stage dropped: "
                                      "pushed out of its latest-wins inbox, or no room "
                                      "downstream", labels=[*labels, "cause"])
        failed = CounterMetricFamily("hidemo_stage_failed_items", "Items whose processing "
                                     "raised (dropped; the stage went on)",
                                     labels=[*labels, "error"])
        batches = CounterMetricFamily("hidemo_stage_batches", "Batches run", labels=labels)
        busy = CounterMetricFamily("hidemo_stage_busy_seconds", "Time spent in batches",
                                   labels=labels)
        capture_dropped = CounterMetricFamily(
            "hidemo_capture_dropped", "Frames a capture did not send: no_credit (a live "
            "source's frame replaced while the pipeline was busy), blocked (its output was "
            "full)", labels=["stream", "cause"])
        reconnects = CounterMetricFamily("hidemo_source_reconnects", "Times a live source "
                                         "was reopened", labels=["stream"])
        age = GaugeMetricFamily("hidemo_source_frame_age_seconds", "Seconds since the "
                                "source last delivered a frame", labels=["stream"])
        last_frame = dict(run.last_frame)
        for child in [*run.children, *run.captures, *run.asrs]:
            pid = child.pid
            for label in child.status_labels:
                stage, replica = split_label(label)
                status = statuses.get(label)
                current = status is not None and pid is not None and status.pid == pid
                up.add_metric([stage, replica], int(
                    current and status is not None and status.state is not Health.STARTING))
                for health in Health:
                    state.add_metric([stage, replica, health.value],
                                     int(current and status is not None
                                         and status.state is health))
                restarts.add_metric([stage, replica], child.restarts)
                hangs.add_metric([stage, replica], child.hangs)
                figures = totals.get(label)
                if figures is None:
                    continue
                for key, family in counts.items():
                    family.add_metric([stage, replica], figures.value(key))
                dropped.add_metric([stage, replica, "inbox"], figures.value("dropped_in"))
                dropped.add_metric([stage, replica, "downstream"], figures.value("dropped_out"))
                batches.add_metric([stage, replica], figures.value("batches"))
                busy.add_metric([stage, replica], figures.value("busy_s"))
                for key in {*figures.base, *figures.last}:
                    if key.startswith("failed/"):
                        failed.add_metric([stage, replica, key[7:]], figures.value(key))
                if stage == "capture" and child.index < len(ids):
                    stream = ids[child.index]
                    capture_dropped.add_metric([stream, "no_credit"], figures.value("dropped_in"))
                    capture_dropped.add_metric([stream, "blocked"], figures.value("dropped_out"))
                    reconnects.add_metric([stream], figures.value("reconnects"))
            if child.stage == "capture" and child.index < len(ids) \
                    and child.label in last_frame:
                age.add_metric([ids[child.index]], max(0.0, now - last_frame[child.label]))
        yield from (up, state, restarts, hangs, *counts.values(), dropped, failed, batches,
                    busy, capture_dropped, reconnects, age)

    @staticmethod
    def _rejections(metrics: RunMetrics, run: MetricsRecord) -> Iterator[Metric]:
        family = CounterMetricFamily("hidemo_rejected_messages", "Messages refused at a "
                                     "socket, by the stage that refused them",
                                     labels=["stage", "replica", "endpoint", "reason"])
        for label, figures in metrics.totals.snapshot().items():
            stage, replica = split_label(label)
            for key in {*figures.base, *figures.last}:
                if key.startswith("rejected/"):
                    _, endpoint, reason = key.split("/", 2)
                    family.add_metric([stage, replica, endpoint, reason], figures.value(key))
        own = [run.status_rejections, run.result_rejections]
        if run.handshakes is not None:
            own.append(run.handshakes.rejections)
        for rejections in own:
            for reason, count in dict(rejections.counts).items():
                family.add_metric(["supervisor", "0", rejections.endpoint, reason], count)
        yield family

    @staticmethod
    def _resources(run: MetricsRecord) -> Iterator[Metric]:
        cpu = CounterMetricFamily("hidemo_stage_cpu_seconds", "CPU time of each stage "
                                  "process (user and system, restarts added up)",
                                  labels=["stage", "replica"])
        rss = GaugeMetricFamily("hidemo_stage_resident_memory_bytes", "Resident memory of "
                                "each stage process at the last sample",
                                labels=["stage", "replica"])
        for label, (cpu_s, rss_bytes) in sorted(run.resources.usage().items()):
            stage, replica = split_label(label)
            cpu.add_metric([stage, replica], cpu_s)
            rss.add_metric([stage, replica], rss_bytes)
        yield cpu
        yield rss


def _served(statuses: dict[str, StageStatus]) -> Iterator[Metric]:
    """Engines on a Triton server, per process that uses them (``backend: triton``)."""
    labels = ["stage", "replica", "model", "url"]
    up = GaugeMetricFamily("hidemo_served_engine_up", "1 while the Triton server answers "
                           "this engine's calls", labels=labels)
    calls = CounterMetricFamily("hidemo_served_engine_calls", "Inference requests sent to "
                                "Triton", labels=labels)
    failed = CounterMetricFamily("hidemo_served_engine_failed_calls", "Requests that failed "
                                 "(their items were dropped)", labels=[*labels, "kind"])
    outages = CounterMetricFamily("hidemo_served_engine_outages", "Times the server went "
                                  "away", labels=labels)
    away = CounterMetricFamily("hidemo_served_engine_away_seconds", "Seconds the server was "
                               "away", labels=labels)
    for label, engines in served_summary(statuses).items():
        stage, replica = split_label(label)
        for model, figures in engines.items():
            key = [stage, replica, model, str(figures.get("url", ""))]
            up.add_metric(key, int(figures.get("state") == "up"))
            calls.add_metric(key, _number(figures.get("calls")))
            errors = figures.get("errors")
            for kind, count in (errors.items() if isinstance(errors, dict) else []):
                failed.add_metric([*key, str(kind)], _number(count))
            outages.add_metric(key, _number(figures.get("outages")))
            away.add_metric(key, _number(figures.get("away_s")))
    yield from (up, calls, failed, outages, away)


def _mqtt(report: JsonDict) -> Iterator[Metric]:
    yield GaugeMetricFamily("hidemo_mqtt_connected", "1 while connected to the broker",
                            value=int(bool(report.get("connected"))))
    yield CounterMetricFamily("hidemo_mqtt_published", "Messages the broker acknowledged",
                              value=_number(report.get("published")))
    yield CounterMetricFamily("hidemo_mqtt_dropped", "Messages the full queue dropped "
                              "(sinks.mqtt.queue_policy)", value=_number(report.get("dropped")))
    yield GaugeMetricFamily("hidemo_mqtt_queued_messages", "Messages waiting for the broker",
                            value=_number(report.get("queued")))
    yield CounterMetricFamily("hidemo_mqtt_connects", "Connections made to the broker",
                              value=_number(report.get("connects")))


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else 0.0


def engine_identities(config: RunConfig, names: Sequence[str]) -> list[dict[str, str]]:
    """The manifest identity of each engine in ``names`` (those the run loads), as labels;
    one that cannot be read is left out (preflight has already refused a broken one)."""
    from engines.manifest import EngineRefused, read_manifest

    out = []
    for name in names:
        try:
            manifest = read_manifest(config.resolved_engine_dir(), name,
                                     profile_hint=config.profile)
        except (EngineRefused, OSError, ValueError):
            continue
        out.append({"engine": name, "model": manifest.model, "precision": manifest.precision,
                    "onnx_sha256": manifest.onnx_sha256, "source_sha256": manifest.source.sha256,
                    "random_weights": str(manifest.random_weights).lower()})
    return out
