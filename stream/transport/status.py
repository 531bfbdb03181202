"""Stage health and counters, reported to the supervisor as typed status events.

Every stage process sends a :class:`StageStatus` every ``status_interval_s`` on a PUSH
socket to the supervisor's bound PULL: its health (running, stalled: no input for a while,
blocked: no room downstream), its counters (in, out, dropped per reason, rejected messages
per endpoint and reason, items that failed) and stage-specific figures (a capture's frame
rate, the classifier's per-stream accounting). The supervisor shows them live, keeps the
last one of each stage for the run summary, and reads their arrival as the stage's
heartbeat. A report is untrusted like any message: :func:`decode_status` validates
it (strict types, bounds, finite numbers, bounded nesting) or raises :class:`StatusError`.

Example:
    >>> encode_status(StageStatus(stage="detect", replica=0, pid=1, state=Health.RUNNING))[:9]
    b'{"stage":'
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import os
import time
from dataclasses import asdict, field
from typing import Annotated, Literal

import zmq
from pydantic import ConfigDict, Field, JsonValue, TypeAdapter, ValidationError, field_validator
from pydantic.dataclasses import dataclass
from typing_extensions import TypedDict  # pydantic needs it on Python < 3.12

from engines.serving.health import served_status
from stream.strictjson import JsonDict
from stream.transport.wire import MAX_COUNT, MAX_SECONDS, Name, refusal, saturated

log = logging.getLogger(__name__)

STATUS_CONFIG = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Seconds = Annotated[float, Field(ge=0.0, le=MAX_SECONDS)]
Reasons = Annotated[dict[Name, Count], Field(max_length=64)]

STAGE_NAMES = ("capture", "detect", "features", "classify", "asr")


class StreamFigures(TypedDict, total=False):
    """Classify's accounting of one stream (``extra["streams"][id]``): the supervisor reads
    it to decide when the pipeline has drained and what was lost, so it is typed."""

    __pydantic_config__ = ConfigDict(extra="forbid")  # type: ignore[misc]

    frames: Count
    dropped: Count
    lost: Count
    generations: Count
    predictions: Count
    windows_without_evidence: Count
    rates: dict[Name, float]
    ended: bool
    latency_ms: dict[Name, float]
    age_frames: dict[Name, float]


_STREAMS = TypeAdapter(Annotated[dict[Name, StreamFigures], Field(max_length=256)])


class StatusError(ValueError):
    """A status report that is not one; the supervisor counts and drops it."""


class Health(enum.StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    STALLED = "stalled"
    BLOCKED = "blocked"
    STOPPING = "stopping"


@dataclass(config=STATUS_CONFIG)
class Counters:
    """What passed through a stage. ``dropped_in``: pushed out of the latest-wins inbox;
    ``dropped_out``: not sent because downstream was full or gone; ``malformed``: messages
    refused at a socket, in total, and in ``rejected`` per endpoint and reason;
    ``failed``: items whose processing raised, per exception type (dropped, stage went on).
    """

    received: Count = 0
    processed: Count = 0
    sent: Count = 0
    dropped_in: Count = 0
    dropped_out: Count = 0
    malformed: Count = 0
    batches: Count = 0
    busy_s: Seconds = 0.0
    rejected: Annotated[dict[Name, Reasons], Field(max_length=16)] = field(default_factory=dict)
    failed: Reasons = field(default_factory=dict)


@dataclass(config=STATUS_CONFIG)
class StageStatus:
    stage: Literal["capture", "detect", "features", "classify", "asr"]
    replica: Annotated[int, Field(ge=0, le=1024)]
    pid: Annotated[int, Field(ge=1, le=2**32)]
    state: Health
    time: Seconds = 0.0
    started: Seconds = 0.0
    counters: Counters = field(default_factory=Counters)
    extra: dict[Name, JsonValue] = field(default_factory=dict)

    @field_validator("extra")
    @classmethod
    def _finite(cls, extra: JsonDict) -> JsonDict:
        if not _all_finite(extra):
            raise ValueError("a figure is NaN or infinite")
        if "streams" in extra:
            _STREAMS.validate_python(extra["streams"], strict=True)
        return extra


_STATUS = TypeAdapter(StageStatus)


def encode_status(status: StageStatus) -> bytes:
    """The report as sent: every count saturated at the bound the supervisor checks
    (:func:`stream.transport.wire.saturated`), whichever stage or figure holds it; a figure
    of an odd type reads as text."""
    return json.dumps(saturated(asdict(status)), separators=(",", ":"), allow_nan=False,
                      default=str).encode()


def decode_status(raw: bytes) -> StageStatus:
    """A report from the wire, validated (strict types, bounds, finite numbers, bounded
    nesting); :class:`StatusError` when it is not one."""
    try:
        return _STATUS.validate_json(raw)
    except ValidationError as error:
        raise StatusError(str(refusal(error, "status report"))) from None


def _all_finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    return True


class Rejections:
    """Counts the messages one endpoint refused, by reason (``counts``).

    The log says what was wrong, at most once per reason every ``log_every_s`` (a flood of
    bad messages must not become a flood of log lines), and never echoes more than a short
    prefix of the message text. :meth:`report_to` copies the counts into a stage's
    :class:`Counters` (``rejected[endpoint]`` and the ``malformed`` total).
    """

    def __init__(self, endpoint: str, stage: str, log_every_s: float = 10.0) -> None:
        self.endpoint = endpoint
        self.stage = stage
        self.log_every_s = log_every_s
        self.counts: dict[str, int] = {}
        self._logged: dict[str, float] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, reason: str, detail: object) -> None:
        count = self.counts[reason] = self.counts.get(reason, 0) + 1
        now = time.monotonic()
        if now - self._logged.get(reason, -math.inf) >= self.log_every_s:
            self._logged[reason] = now
            log.warning("%s: dropped a message on %s (%s, %d so far): %.120s", self.stage,
                        self.endpoint, reason, count, str(detail))

    @staticmethod
    def report_to(counters: Counters, rejections: list[Rejections]) -> None:
        for one in rejections:
            if one.counts:
                counters.rejected[one.endpoint] = dict(one.counts)
        counters.malformed = sum(one.total for one in rejections)


class FailedItems:
    """Counts items whose processing raised, per exception type, logging each type once."""

    def __init__(self, counters: Counters, stage: str) -> None:
        self.counters = counters
        self.stage = stage

    def add(self, error: BaseException) -> None:
        kind = type(error).__name__[:64]
        count = self.counters.failed[kind] = self.counters.failed.get(kind, 0) + 1
        if count == 1:
            log.warning("%s: an item failed and was dropped (%s: %.200s); further %s "
                        "failures are counted, not logged", self.stage, kind, error, kind,
                        exc_info=error)


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
        self._warned = False

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

    def maybe_send(self, extra: JsonDict | None = None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.interval_s
        self.status.time = now
        self.status.state = self.health(now)
        if extra is not None:
            self.status.extra = extra
        served = served_status()
        if served:  # the stage's engines on a Triton server: how they are doing
            self.status.extra = {**self.status.extra, "served": served}
        if self.socket is not None:
            # the supervisor is busy: the next report supersedes this one
            with contextlib.suppress(zmq.Again):
                self.socket.send(self._checked_report(), flags=zmq.NOBLOCK)

    def _checked_report(self) -> bytes:
        """The report as the supervisor will validate it. Reports are the heartbeat: one
        the supervisor would refuse (a figure out of bounds) must not read as a hang, so
        it goes out without its stage figures instead (and the problem is logged once)."""
        raw = encode_status(self.status)
        try:
            decode_status(raw)
        except StatusError as error:
            if not self._warned:
                self._warned = True
                log.error("%s: status figures refused (%s); reporting without them",
                          self.status.stage, error)
            self.status.extra = {}
            raw = encode_status(self.status)
        return raw

    def stopping(self, extra: JsonDict | None = None) -> None:
        self.status.state = Health.STOPPING
        self.maybe_send(extra, force=True)
