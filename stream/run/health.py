"""Liveness and readiness of a run, for a process manager or an orchestrator.

- Alive (``/healthz``): the supervisor's loop turns (it reads status reports, restarts
  stages, keeps the clocks). A loop that has not turned for ``supervisor.hang_after_s`` is
  stuck: restart ``hidemo run``.
- Ready (``/readyz``): the stages run (each reported ready and was heard from within
  ``hang_after_s``) and every source that has not ended delivered a frame within
  ``hang_after_s``. A camera that goes away makes the run unready, and ready again when
  its frames come back; no restart of hidemo is needed for that, so only liveness should
  restart it.

Both are read from the supervisor's own bookkeeping (:class:`HealthRecord`) by another
thread (the HTTP server's): each reads a field once and copies what it iterates.

Example:
    >>> readiness(supervisor, time.monotonic()).ok  # doctest: +SKIP
    True
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from stream.config import RunConfig
from stream.strictjson import JsonDict
from stream.transport.status import Health, StageStatus


class ChildRecord(Protocol):
    """One stage process as the run's health, metrics and summary read it
    (:class:`stream.run.supervisor.Child`)."""

    stage: str
    index: int
    restarts: int
    hangs: int
    finished: bool

    @property
    def label(self) -> str: ...

    @property
    def status_labels(self) -> tuple[str, ...]: ...

    @property
    def pid(self) -> int | None: ...


class HealthRecord(Protocol):
    """What the supervisor keeps that health reads."""

    config: RunConfig
    phase: str
    """``starting`` (stages loading), ``running`` (the sources started), ``stopping``."""
    turned: float
    """When the supervisor's loop last turned (``time.monotonic()``)."""
    statuses: dict[str, StageStatus]
    heard: dict[str, float]
    last_frame: dict[str, float]
    """Per capture label, when its source last delivered a frame (or the capture started)."""
    children: Sequence[ChildRecord]
    captures: Sequence[ChildRecord]


@dataclass(frozen=True)
class Verdict:
    """Alive or ready, and if not, why (one sentence per reason)."""

    ok: bool
    reasons: list[str] = field(default_factory=list)

    def body(self, key: str) -> JsonDict:
        """The JSON an endpoint answers: ``{key: true}`` or ``{key: false, "reasons": [...]}``."""
        return {key: True} if self.ok else {key: False, "reasons": list(self.reasons)}


def liveness(run: HealthRecord, now: float | None = None) -> Verdict:
    """Whether the supervisor's loop turned within ``hang_after_s``."""
    now = time.monotonic() if now is None else now
    limit = run.config.supervisor.hang_after_s
    idle = now - run.turned
    if idle > limit:
        return Verdict(False, [f"the supervisor's loop has not turned for {idle:.1f} s "
                               f"(supervisor.hang_after_s {limit:g} s)"])
    return Verdict(True)


def readiness(run: HealthRecord, now: float | None = None) -> Verdict:
    """Whether every stage runs and every source that has not ended delivers frames."""
    now = time.monotonic() if now is None else now
    phase = run.phase
    if phase != "running":
        return Verdict(False, [f"the run is {phase}"])
    limit = run.config.supervisor.hang_after_s
    statuses, heard, last_frame = dict(run.statuses), dict(run.heard), dict(run.last_frame)
    reasons = []
    for child in run.children:
        pid = child.pid
        if pid is None:
            reasons.append(f"{child.label} is not running (restarting or given up)")
            continue
        for label in child.status_labels:
            status = statuses.get(label)
            if status is None or status.pid != pid or status.state is Health.STARTING:
                reasons.append(f"{label} is starting")
            elif now - heard.get(label, now) > limit:
                reasons.append(f"{label} silent for {now - heard[label]:.1f} s")
    ids = run.config.stream_ids()
    for capture in run.captures:
        if capture.finished:
            continue  # a file that ended: nothing more to deliver
        stream = ids[capture.index]
        spec = run.config.sources[capture.index].spec
        if capture.pid is None:
            reasons.append(f"source {stream} ({spec}): its capture is restarting")
            continue
        since = now - last_frame.get(capture.label, now)
        if since > limit:
            reasons.append(f"source {stream} ({spec}) delivered no frame for {since:.1f} s "
                           f"(supervisor.hang_after_s {limit:g} s)")
    return Verdict(not reasons, reasons)
