"""The supervisor: starts every stage as its own process, watches it, restarts it, stops it.

Placement (:mod:`stream.stages.placement`) decides the processes: ``split`` runs classify,
each features replica and detect as their own; ``fused`` runs classify and ``fused.workers``
``fused`` processes, each holding detect and features for its share of the streams and
reporting each one's status under its own name (``detect[i]``, ``features[i]``), so
everything below reads the same figures either way.

Order matters at both ends. Start: classify, features, detect (or the fused workers), and
only when they report ready, the captures (frames sent into a stage still loading its
engines would only be dropped). Watch: status reports arrive on a bound PULL socket; a stage
that exits unexpectedly is restarted after a backoff that doubles up to ``backoff_max_s``,
at most ``max_restarts`` times, after which the run fails. A stage that exits with
:data:`~stream.exitcodes.EX_CONFIG` refused its engines or configuration: it is not
restarted, the run fails at once and the console shows the stage's own message. A running
stage whose reports (its heartbeat) stop for ``hang_after_s`` is hung: it is killed and
restarted the same way (event ``hung``). A capture that exits 0 has finished its file. Stop
(Ctrl-C, SIGTERM, ``--duration``, or every source ended): stop the captures (each sends an
end-of-stream marker), let the pipeline drain until classify has seen every end or
``drain_s`` passes, then stop detect, features and classify in pipeline order, killing any
that ignore ``stop_timeout_s``. A summary of the run (:mod:`stream.run.summary`) goes to
``summary.json``, with ``failures`` (why the run exits non-zero: a stage gave up or
refused to start, no source gave a frame, a sink failed) and ``warnings`` (a file that
ended early).
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import zmq
from pydantic import JsonValue, ValidationError

from stream.config import RunConfig
from stream.exitcodes import EX_CONFIG, FATAL_MARKER
from stream.prediction import Prediction
from stream.run import served
from stream.run.resources import ResourceMeter
from stream.run.summary import Verdict, run_summary, verdict_of
from stream.run.view import View
from stream.stages.placement import detect_processes
from stream.strictjson import JsonDict
from stream.transport.curve import Gatekeeper, RefusalMonitor
from stream.transport.endpoints import Endpoints, open_endpoint
from stream.transport.status import Health, Rejections, StageStatus, StatusError, decode_status
from stream.transport.wire import refusal

log = logging.getLogger(__name__)

POLL_MS = 100
READ_BUDGET = 1000
"""Messages the supervisor reads from one socket per turn at most: a flood is read in
bounded bites, between which the watchdog and the clocks are checked."""
READ_BUDGET_S = 0.05
"""Seconds the supervisor spends reading one socket per turn at most (big messages)."""
MAX_SENDERS = 64
"""Distinct claimed senders of refused reports kept apart; the rest count as ``others``."""
STARTUP_TIMEOUT_S = 120.0
LOG_TAIL_BYTES = 64 * 1024
FATAL_MESSAGE_CHARS = 2000
LOG_RECORD = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) |^Traceback ", re.MULTILINE)


@dataclass
class Child:
    """One stage process and its restart history."""

    stage: str
    index: int
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    restart_at: float | None = None
    finished: bool = False
    hangs: int = 0
    exit_codes: list[int] = field(default_factory=list)
    reports_as: tuple[str, ...] = ()
    """The status labels this process reports under when not its own (fused worker ``i``:
    ``detect[i]``, ``features[i]``)."""

    @property
    def label(self) -> str:
        return f"{self.stage}[{self.index}]"

    @property
    def status_labels(self) -> tuple[str, ...]:
        return self.reports_as or (self.label,)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        """The running process's pid (None between a death and its restart)."""
        process = self.process
        return None if process is None else process.pid


def fatal_message(log_path: Path) -> str | None:
    """The message a stage logged before exiting with :data:`EX_CONFIG` (the last record
    that starts with :data:`FATAL_MARKER`, continuation lines such as ``fix:`` included)."""
    try:
        with log_path.open("rb") as handle:
            handle.seek(max(0, log_path.stat().st_size - LOG_TAIL_BYTES))
            text = handle.read().decode(errors="replace")
    except OSError:
        return None
    start = text.rfind(FATAL_MARKER)
    if start < 0:
        return None
    message = text[start + len(FATAL_MARKER):]
    end = LOG_RECORD.search(message)
    if end is not None:
        message = message[:end.start()]
    return message.strip()[:FATAL_MESSAGE_CHARS] or None


class StopRequest:
    """Ctrl-C / SIGTERM: the first asks for an ordered stop, the second for an immediate one.
    A caller may also ask, from another thread, with :meth:`request` and its reason."""

    def __init__(self) -> None:
        self.requested = False
        self.urgent = False
        self.reason = "interrupted"

    def request(self, reason: str) -> None:
        """An ordered stop, for ``reason`` (what the run summary will say)."""
        self.reason = reason
        self.requested = True

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            self.urgent = True
        self.requested = True


class Supervisor:
    """Runs one pipeline described by ``config`` until it is told to stop."""

    def __init__(self, config: RunConfig, endpoints: Endpoints, spec_path: Path,
                 log_dir: Path, view: View, stop: StopRequest) -> None:
        self.config = config
        self.endpoints = endpoints
        self.spec_path = spec_path
        self.log_dir = log_dir
        self.view = view
        self.stop = stop
        self.context = zmq.Context()
        self.status_socket = open_endpoint(self.context, endpoints, "status", "bind",
                                           config.endpoints)
        # classify's predictions for the view, on a private hop (never the public endpoint,
        # which another local process may have bound first)
        self.results = open_endpoint(self.context, endpoints, "results", "bind",
                                     config.endpoints)
        self.handshakes = (None if endpoints.keys is None
                           else RefusalMonitor(self.status_socket, "status", "supervisor"))
        """Counts the peers refused on the status socket's CURVE handshake (tcp transport)."""
        self.statuses: dict[str, StageStatus] = {}
        self.spawned: dict[str, set[int]] = {}
        """Every pid started for each stage label: only their reports are believed."""
        self.status_rejections = Rejections("status", "supervisor")
        """Reports refused on the status socket, by reason (malformed, or from a process
        this run did not start): counted, logged at a bounded rate, never fatal."""
        self.refused_senders: dict[str, int] = {}
        """Refused status reports per claimed sender (``stage[replica]``, or ``unreadable``),
        at most :data:`MAX_SENDERS` of them: who is writing to the socket, not obeyed."""
        self.result_rejections = Rejections("results", "supervisor")
        """Records refused on the results hop (not a valid prediction)."""
        self.heard: dict[str, float] = {}
        """When each stage's last status report arrived (monotonic): its heartbeat."""
        self.last_frame: dict[str, float] = {}
        """Per capture label, when its source last delivered a frame (monotonic; the
        capture's start until the first): what readiness (:mod:`stream.run.health`) reads."""
        self._frames_read: dict[str, tuple[int, int]] = {}
        """Per capture label, the (pid, frames read) of its last report."""
        self.phase = "starting"
        """``starting`` (stages loading), ``running`` (sources started), ``stopping``."""
        self.turned = time.monotonic()
        """When the loop last turned (read for liveness by :mod:`stream.run.health`)."""
        self.events: list[JsonDict] = []
        self.verdict = Verdict()
        self.exit_code = 0
        self.captures_started = False
        self.failed: str | None = None
        self.children = stage_children(config)
        self.captures = [Child("capture", i) for i in range(len(config.sources))]
        self.asrs = [Child("asr", i) for i in config.asr.streams]
        """ASR processes (:mod:`stream.stages.asr`): optional, their loss is a warning."""
        self.asr_warnings: list[str] = []
        self._logs: list[IO[bytes]] = []
        self.resources = ResourceMeter()
        self.watch_s = 0.0
        self.reason = "unknown"
        self.wall_s = 0.0

    # -- processes ----------------------------------------------------------------------

    def _spawn(self, child: Child) -> None:
        env = dict(os.environ)
        threads = str(child_threads(self.config, child.stage))
        env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads,
                   MKL_NUM_THREADS=threads, PYTHONUNBUFFERED="1")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = (self.log_dir / f"{child.stage}-{child.index}.log").open("ab")
        self._logs.append(log_file)
        child.process = subprocess.Popen(
            [sys.executable, "-m", "stream.stages.main", child.stage, str(child.index),
             str(self.spec_path)], stdout=log_file, stderr=subprocess.STDOUT, env=env)
        child.restart_at = None
        self.spawned.setdefault(child.label, set()).add(child.process.pid)
        if child.stage == "capture":  # its source has until hang_after_s from now
            self.last_frame[child.label] = time.monotonic()
        self._event("started", child, pid=child.process.pid)

    def _event(self, kind: str, child: Child, **details: JsonValue) -> None:
        event = {"time": time.monotonic(), "event": kind, "stage": child.stage,
                 "index": child.index, **details}
        self.events.append(event)
        log.info("%s %s %s", child.label, kind,
                 " ".join(f"{k}={v}" for k, v in details.items()))
        self.view.event(event)

    def _check(self, child: Child, now: float, *, restart: bool) -> None:
        """Notice an exit (or a hang); schedule or perform a restart with backoff."""
        if restart:
            self._watchdog(child, now)
        process = child.process
        if process is not None and process.poll() is not None:
            code = process.returncode
            child.exit_codes.append(code)
            child.process = None
            if child.stage in ("capture", "asr") and code == 0:
                child.finished = True
                self._event("finished", child, exit_code=code)
                return
            if code == EX_CONFIG:  # a restart would be refused the same way
                log_path = self.log_dir / f"{child.stage}-{child.index}.log"
                message = fatal_message(log_path) or f"exit code {code}, see {log_path}"
                if child.stage == "asr":  # the video goes on without its transcript
                    self.asr_warnings.append(f"{child.label} {FATAL_MARKER} {message}")
                else:
                    self.failed = f"{child.label} {FATAL_MARKER} {message}"
                self._event("refused", child, exit_code=code, message=message)
                return
            if not restart:
                self._event("exited", child, exit_code=code)
                return
            if child.restarts >= self.config.supervisor.max_restarts:
                gave_up = f"{child.label} exited ({code}) after {child.restarts} restarts"
                if child.stage == "asr":
                    self.asr_warnings.append(gave_up + "; the run went on without its text")
                else:
                    self.failed = gave_up
                self._event("gave-up", child, exit_code=code)
                return
            sup = self.config.supervisor
            backoff = min(sup.backoff_max_s, sup.backoff_s * 2 ** child.restarts)
            child.restart_at = now + backoff
            self._event("died", child, exit_code=code, restart_in_s=round(backoff, 2),
                        frames_lost_so_far=self.frames_lost())
        if child.process is None and child.restart_at is not None and now >= child.restart_at:
            child.restarts += 1
            self._spawn(child)
            self._event("restarted", child, restart=child.restarts,
                        limit=self.config.supervisor.max_restarts)

    def _watchdog(self, child: Child, now: float) -> None:
        """Kill a stage that reported ready and then fell silent for ``hang_after_s``: its
        main loop is stuck (a deadlock, a runaway computation, SIGSTOP). The exit is then
        seen by :meth:`_check` and restarted like any other death."""
        process = child.process
        if process is None:
            return
        labels = [label for label in child.status_labels
                  if (s := self.statuses.get(label)) is not None and s.pid == process.pid
                  and label in self.heard]
        if not labels or process.poll() is not None or any(
                self.statuses[label].state in (Health.STARTING, Health.STOPPING)
                for label in labels):
            return
        silent = now - max(self.heard[label] for label in labels)
        if silent <= self.config.supervisor.hang_after_s:
            return
        process.kill()
        process.wait()
        child.hangs += 1
        self._event("hung", child, pid=process.pid, silent_s=round(silent, 1))

    def frames_lost(self) -> int:
        streams = self.statuses.get("classify[0]")
        if streams is None:
            return 0
        return sum(s.get("lost", 0) for s in streams.extra.get("streams", {}).values())

    # -- status -------------------------------------------------------------------------

    def _pump(self, timeout_ms: int = POLL_MS) -> None:
        """Wait up to ``timeout_ms`` for status reports and predictions, then read at most
        :data:`READ_BUDGET` messages (or :data:`READ_BUDGET_S` seconds) from each socket:
        whatever arrives, the caller's timers (watchdog, duration, drain) get their turn."""
        self.turned = time.monotonic()
        poller = zmq.Poller()
        poller.register(self.status_socket, zmq.POLLIN)
        poller.register(self.results, zmq.POLLIN)
        if self.handshakes is not None:
            poller.register(self.handshakes.monitor, zmq.POLLIN)
        events = dict(poller.poll(timeout_ms))
        if self.status_socket in events:
            _read_some(self.status_socket, self._take_status)
        if self.results in events:
            _read_some(self.results, self._take_result)
        if self.handshakes is not None and self.handshakes.monitor in events:
            self.handshakes.poll()
        self.view.update(self.statuses, self._view_restarts())

    def _take_status(self, raw: bytes) -> None:
        """Believe a report only when it is valid and signed by a process this run runs."""
        try:
            status = decode_status(raw)
        except StatusError as error:
            self._refuse_status("schema", "unreadable", error)
            return
        label = f"{status.stage}[{status.replica}]"
        if not self._from_child(label, status.pid):
            self._refuse_status("unknown-pid", label, f"{label} pid {status.pid}")
            return
        child = next((c for c in self._everyone() if c.status_labels[:1] == (label,)), None)
        if child is not None:  # once per process: a fused worker reports two stage names
            for kind, details in served.transitions(self.statuses.get(label), status):
                self._event(kind, child, **details)
        self.statuses[label] = status
        self.heard[label] = time.monotonic()
        if status.stage == "capture":
            read = (status.pid, status.counters.received)
            if read[1] and read != self._frames_read.get(label):
                self.last_frame[label] = self.heard[label]
            self._frames_read[label] = read

    def _refuse_status(self, reason: str, sender: str, detail: object) -> None:
        self.status_rejections.add(reason, detail)
        if sender not in self.refused_senders and len(self.refused_senders) >= MAX_SENDERS:
            sender = "others"
        self.refused_senders[sender] = self.refused_senders.get(sender, 0) + 1

    def _take_result(self, raw: bytes) -> None:
        """A prediction for the view, validated with the schema classify builds it with."""
        try:
            prediction = Prediction.model_validate_json(raw)
        except ValidationError as error:
            self.result_rejections.add("schema", str(refusal(error, "prediction")))
            return
        self.view.prediction(prediction)

    def _everyone(self) -> list[Child]:
        return [*self.children, *self.captures, *self.asrs]

    def _view_restarts(self) -> dict[str, int]:
        """Restarts by status label (a fused worker's restarts show on each of its stages)."""
        return {label: c.restarts for c in self._everyone() for label in c.status_labels}

    def _ready(self, children: list[Child]) -> bool:
        return all(
            (s := self.statuses.get(label)) is not None and s.pid == c.process.pid
            and s.state is not Health.STARTING
            for c in children if c.process is not None for label in c.status_labels)

    # -- the run ------------------------------------------------------------------------

    def run(self) -> int:
        """Start, watch until stopped, stop in order; return the exit code."""
        started = time.monotonic()
        reason = "stopped"
        try:
            for child in self.children:
                self._spawn(child)
            while not self._ready(self.children):
                self._pump()
                for child in self.children:
                    self._check(child, time.monotonic(), restart=True)
                if self.failed or self.stop.requested:
                    break
                if time.monotonic() - started > STARTUP_TIMEOUT_S:
                    self.failed = "stages did not become ready in time (see the stage logs)"
                    break
            if not self.failed and not self.stop.requested:
                self._start_asr()
            if not self.failed and not self.stop.requested:
                for child in self.captures:
                    self._spawn(child)
                self.captures_started = True
                self.phase = "running"
                reason = self._watch()
        finally:
            code = self._shutdown()
        if self.failed:
            reason = f"failed: {self.failed}"
        self.reason = reason
        self.wall_s = time.monotonic() - started
        self.verdict = verdict_of(self)
        self.exit_code = 1 if self.verdict.failures else code
        return self.exit_code

    def _start_asr(self) -> None:
        """Start the ASR processes before the captures and wait until each is ready (its
        model loaded; a file's first ``asr.lead_s`` seconds published) or done: the first
        windows then already have their words. One that does not get ready in time is a
        warning; the video starts anyway."""
        for child in self.asrs:
            self._spawn(child)
        started = time.monotonic()
        while not self._ready(self.asrs):
            self._pump()
            self.resources.sample(self._pids())
            for child in self.asrs:
                self._check(child, time.monotonic(), restart=True)
            if self.failed or self.stop.requested:
                return
            if time.monotonic() - started > STARTUP_TIMEOUT_S:
                self.asr_warnings.append("an ASR process was not ready in time; the video "
                                         "started without waiting for its first lines")
                return

    def _watch(self) -> str:
        ready_at = time.monotonic()
        try:
            return self._watch_until_stop(ready_at)
        finally:
            self.watch_s = time.monotonic() - ready_at

    def _from_child(self, label: str, pid: int) -> bool:
        """Whether a report signed ``label``/``pid`` is from the process running as that
        stage now, or (its last words) from one that ran as it and has since exited."""
        child = next((c for c in self._everyone() if label in c.status_labels), None)
        if child is None:
            return False
        if child.process is not None:
            return pid == child.process.pid
        return pid in self.spawned.get(child.label, ())

    def _pids(self) -> dict[str, int]:
        return {c.label: c.process.pid for c in self._everyone() if c.process is not None}

    def _watch_until_stop(self, ready_at: float) -> str:
        duration = self.config.duration
        while True:
            self._pump()
            self.resources.sample(self._pids())
            now = time.monotonic()
            for child in self._everyone():
                self._check(child, now, restart=True)
            if self.failed:
                return "failed"
            if self.stop.requested:
                return self.stop.reason
            if duration is not None and now - ready_at >= duration:
                return "duration reached"
            if self.captures and all(c.finished for c in self.captures):
                return "all sources ended"

    def _shutdown(self) -> int:
        self.phase = "stopping"
        sup = self.config.supervisor
        self.resources.sample(self._pids(), force=True)
        self._stop_children([*self.captures, *self.asrs], sup.stop_timeout_s)
        deadline = time.monotonic() + sup.drain_s
        while time.monotonic() < deadline and not self.stop.urgent and not self._drained():
            self._pump()
        code = 0
        for child in reversed(self.children):  # detect, features (or the workers), classify
            code = max(code, self._stop_children([child], sup.stop_timeout_s))
        self._pump(0)
        while _read_some(self.results, self._take_result):  # classify's last predictions
            pass
        self.view.close()
        if self.handshakes is not None:
            self.handshakes.close()
        self.status_socket.close(linger=0)
        self.results.close(linger=0)
        Gatekeeper.stop_for(self.context)
        self.context.term()
        for log_file in self._logs:
            log_file.close()
        return code

    def _drained(self) -> bool:
        status = self.statuses.get("classify[0]")
        if status is None or not self.captures or not self.captures_started:
            return True  # nothing was sent that could still be on its way
        streams = status.extra.get("streams", {})
        ids = self.config.stream_ids()
        return all(streams.get(s, {}).get("ended", False) for s in ids)

    def _stop_children(self, children: list[Child], timeout_s: float) -> int:
        """SIGTERM, wait (reading status), SIGKILL what is left; 0 if all stopped cleanly."""
        running = [c for c in children if c.alive]
        for child in running:
            assert child.process is not None
            child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + (0.0 if self.stop.urgent else timeout_s)
        while any(c.alive for c in running) and time.monotonic() < deadline:
            self._pump(50)
        code = 0
        for child in running:
            assert child.process is not None
            if child.process.poll() is None:
                child.process.kill()
                child.process.wait()
                self._event("killed", child)
                code = 1
            else:
                self._event("stopped", child, exit_code=child.process.returncode)
                code = max(code, 1 if child.process.returncode else 0)
            child.exit_codes.append(child.process.returncode)
        return code

    def summary(self) -> JsonDict:
        """What the run did (:func:`stream.run.summary.run_summary`)."""
        return run_summary(self)


def _read_some(socket: zmq.Socket, take: Callable[[bytes], None]) -> int:
    """Hand ``take`` the messages waiting on ``socket``, at most :data:`READ_BUDGET` of
    them or for :data:`READ_BUDGET_S` seconds; return how many were read."""
    deadline = time.monotonic() + READ_BUDGET_S
    count = 0
    while count < READ_BUDGET:
        try:
            raw = socket.recv(flags=zmq.NOBLOCK)
        except zmq.Again:
            break
        count += 1
        take(raw)
        if time.monotonic() >= deadline:
            break
    return count


def stage_children(config: RunConfig) -> list[Child]:
    """The stage processes of ``config``'s placement, in start order (stopped in reverse):
    split, classify, the features replicas, detect; fused, classify and the workers (each
    of detect and features, for its share of the streams)."""
    if config.placement == "fused":
        return [Child("classify", 0),
                *(Child("fused", i, reports_as=(f"detect[{i}]", f"features[{i}]"))
                  for i in range(detect_processes(config)))]
    if config.placement != "split":
        raise ValueError(f"placement {config.placement!r} is not resolved: call "
                         "stream.stages.placement.resolve_placement before starting the stages")
    return [Child("classify", 0),
            *(Child("features", i) for i in range(config.features.replicas)),
            Child("detect", 0)]


def child_threads(config: RunConfig, stage: str) -> int:
    """Math-library threads (OMP/BLAS) of a stage process: its stage's ``threads``, the most
    of its stages' for a fused worker, 1 for a capture."""
    if stage == "capture":
        return 1
    if stage == "fused":
        return max(1, config.detect.threads, config.features.threads)
    return max(1, getattr(config, stage).threads)


