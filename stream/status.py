"""Stage health and counters, reported to the supervisor as typed status events.

Every stage process sends a :class:`StageStatus` every ``status_interval_s`` on a PUSH
socket to the supervisor's bound PULL: its health (running, stalled: no input for a while,
blocked: no room downstream), its counters (in, out, dropped per reason, malformed) and
stage-specific figures (a capture's frame rate, the classifier's latencies). The
supervisor shows them live and keeps the last one of each stage for the run summary.

Example:
    >>> StageStatus(stage="detect", replica=0, pid=1, state=Health.RUNNING).to_json()[:9]
    b'{"stage":'
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import zmq


class Health(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STALLED = "stalled"
    BLOCKED = "blocked"
    STOPPING = "stopping"


@dataclass
class Counters:
    """What passed through a stage. ``dropped_in``: pushed out of the latest-wins inbox;
    ``dropped_out``: not sent because downstream was full or gone."""

    received: int = 0
    processed: int = 0
    sent: int = 0
    dropped_in: int = 0
    dropped_out: int = 0
    malformed: int = 0
    batches: int = 0
    busy_s: float = 0.0


@dataclass
class StageStatus:
    stage: str
    replica: int
    pid: int
    state: Health
    time: float = 0.0
    started: float = 0.0
    counters: Counters = field(default_factory=Counters)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> bytes:
        body = asdict(self)
        body["state"] = str(self.state)
        return json.dumps(body, separators=(",", ":"), default=str).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> StageStatus:
        body = json.loads(raw)
        return cls(stage=str(body["stage"]), replica=int(body["replica"]), pid=int(body["pid"]),
                   state=Health(body["state"]), time=float(body["time"]),
                   started=float(body.get("started", 0.0)),
                   counters=Counters(**body["counters"]), extra=dict(body.get("extra", {})))


class StatusReporter:
    """Keeps one stage's counters and health, and sends them out at a fixed interval."""

    def __init__(self, socket: zmq.Socket | None, stage: str, replica: int, *,
                 interval_s: float = 0.5, stall_after_s: float = 3.0) -> None:
        self.socket = socket
        self.interval_s = interval_s
        self.stall_after_s = stall_after_s
        now = time.monotonic()
        self.status = StageStatus(stage, replica, os.getpid(), Health.STARTING, now, now)
        self.counters = self.status.counters
        self.last_input = now
        self.last_blocked = 0.0
        self._next = 0.0

    def ready(self) -> None:
        self.status.state = Health.RUNNING
        self.last_input = time.monotonic()
        self.maybe_send(force=True)

    def saw_input(self, now: float) -> None:
        self.last_input = now

    def health(self, now: float) -> Health:
        state = self.status.state
        if state in (Health.STARTING, Health.STOPPING):
            return state
        if now - self.last_blocked < self.stall_after_s:
            return Health.BLOCKED
        if now - self.last_input > self.stall_after_s:
            return Health.STALLED
        return Health.RUNNING

    def maybe_send(self, extra: dict[str, Any] | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.interval_s
        self.status.time = now
        self.status.state = self.health(now)
        if extra is not None:
            self.status.extra = extra
        if self.socket is not None:
            # the supervisor is busy: the next report supersedes this one
            with contextlib.suppress(zmq.Again):
                self.socket.send(self.status.to_json(), flags=zmq.NOBLOCK)

    def stopping(self, extra: dict[str, Any] | None = None) -> None:
        self.status.state = Health.STOPPING
        self.maybe_send(extra, force=True)
