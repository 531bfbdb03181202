"""The end of a run: its verdict (failures and warnings, as sentences) and its summary.

Both are read off what the supervisor (:mod:`stream.run.supervisor`) kept while it ran:
the stages' last status reports, each process's restarts and hangs, its events and the
reports it refused. The supervisor runs the processes; this module only reads what they
left, so the verdict's rules can be read, and tested, apart from the process lifecycle.

Example:
    >>> verdict_of(supervisor).failures  # doctest: +SKIP
    ['no source produced a frame: demo0 (demo)']
    >>> run_summary(supervisor)["exit_code"]  # doctest: +SKIP
    1
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from stream.config import RunConfig
from stream.run.health import ChildRecord
from stream.run.resources import ResourceMeter
from stream.run.served import served_summary, served_warnings
from stream.strictjson import JsonDict
from stream.transport.curve import RefusalMonitor
from stream.transport.status import Rejections, StageStatus


@dataclass(frozen=True)
class Verdict:
    """Why a run ends non-zero (``failures``) and what a user should know anyway
    (``warnings``), as readable sentences for the console and ``summary.json``."""

    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class RunRecord(Protocol):
    """What a run kept (the supervisor's state) that its verdict and summary read."""

    config: RunConfig
    log_dir: Path
    statuses: dict[str, StageStatus]
    children: Sequence[ChildRecord]
    captures: Sequence[ChildRecord]
    asrs: Sequence[ChildRecord]
    events: list[JsonDict]
    failed: str | None
    captures_started: bool
    asr_warnings: list[str]
    handshakes: RefusalMonitor | None
    status_rejections: Rejections
    result_rejections: Rejections
    refused_senders: dict[str, int]
    resources: ResourceMeter
    watch_s: float
    reason: str
    """Why the run ended (``unknown`` before it has)."""
    wall_s: float
    exit_code: int
    verdict: Verdict


def verdict_of(run: RunRecord) -> Verdict:
    """The run's failures (it exits 1 with any) and warnings."""
    failures = [run.failed] if run.failed else []
    warnings: list[str] = []
    frames = frames_by_stream(run)
    specs = dict(zip(run.config.stream_ids(), (s.spec for s in run.config.sources),
                     strict=True))
    if run.captures_started and frames and not any(frames.values()):
        failures.append("no source produced a frame: " + ", ".join(
            f"{stream} ({specs[stream]})" for stream in frames))
    elif run.captures_started:
        warnings += [f"source {specs[stream]} ({stream}) produced no frame"
                     for stream, count in frames.items() if not count]
    failures += sink_failures(run)
    warnings += early_ends(run)
    warnings += refusals(run)
    warnings += run.asr_warnings + asr_problems(run)
    warnings += served_warnings(run.statuses)
    return Verdict(failures, warnings)


def refusals(run: RunRecord) -> list[str]:
    """A flood or a forgery on the supervisor's own sockets: counted and said, never
    obeyed."""
    out = []
    handshakes = run.handshakes.rejections.total if run.handshakes is not None else 0
    for what, count, reasons in (
            ("status report(s)", run.status_rejections.total, run.status_rejections.counts),
            ("prediction record(s) on the results hop", run.result_rejections.total,
             run.result_rejections.counts),
            ("connection attempt(s) without the run's keys", handshakes,
             {} if run.handshakes is None else run.handshakes.rejections.counts)):
        if count:
            reasons_text = ", ".join(f"{k} {v}" for k, v in sorted(reasons.items()))
            out.append(f"the supervisor refused {count} {what} ({reasons_text}): "
                       "another process on this machine wrote to it")
    return out


def asr_problems(run: RunRecord) -> list[str]:
    """What the ASR processes reported they could not do (audio that does not decode)."""
    out = []
    for child in run.asrs:
        status = run.statuses.get(child.label)
        problem = None if status is None else status.extra.get("problem")
        if isinstance(problem, str):
            out.append(f"{child.label} ({run.config.sources[child.index].spec}): "
                       f"{problem}; no transcript past that point")
    return out


def frames_by_stream(run: RunRecord) -> dict[str, int]:
    """Frames each source gave: what its capture sent or classify received, the more."""
    classified = classify_streams(run)
    out = {}
    for index, stream in enumerate(run.config.stream_ids()):
        capture = run.statuses.get(f"capture[{index}]")
        sent = capture.counters.processed if capture is not None else 0
        out[stream] = max(sent, classified.get(stream, {}).get("frames", 0))
    return out


def classify_streams(run: RunRecord) -> JsonDict:
    """Classify's per-stream figures (their types are checked on arrival:
    :class:`stream.transport.status.StreamFigures`)."""
    status = run.statuses.get("classify[0]")
    return {} if status is None else status.extra.get("streams", {})


def sink_failures(run: RunRecord) -> list[str]:
    """Each sink that failed, with its error (a full disk may also have kept it out of
    classify's log, so the verdict carries it)."""
    status = run.statuses.get("classify[0]")
    errors = {} if status is None else status.extra.get("sink_errors", {})
    problems = {} if status is None else status.extra.get("sink_problems", {})
    if not isinstance(errors, dict):
        return []
    if not isinstance(problems, dict):
        problems = {}
    return [f"sink {name} failed: {count} record(s) not written ("
            + (f"{problem[:200]}; " if isinstance(problem := problems.get(name), str)
               else "")
            + f"predictions still went out on the PUB socket; classify's log: "
            f"{log_of(run, 'classify[0]')})"
            for name, count in sorted(errors.items()) if isinstance(count, int) and count]


def log_of(run: RunRecord, label: str) -> Path:
    """The log of the process that reports as ``label`` (detect's and features' are a
    fused worker's log when placement fused them)."""
    child = next(c for c in run.children if label in c.status_labels)
    return run.log_dir / f"{child.stage}-{child.index}.log"


def early_ends(run: RunRecord) -> list[str]:
    """Each file source that ended before its expected frame count."""
    out = []
    for index, source in enumerate(run.config.sources):
        status = run.statuses.get(f"capture[{index}]")
        early = None if status is None else status.extra.get("ended_early")
        if isinstance(early, dict):
            out.append(f"source {source.spec} ended early: {early.get('read')} of "
                       f"{early.get('expected')} frames (truncated or corrupt file?); "
                       "the predictions made up to there are kept")
    return out


def run_summary(run: RunRecord) -> JsonDict:
    """What the run did: per stage its last status and restarts, per stream the
    classifier's accounting (frames, dropped, lost, predictions, latency, rates)."""
    classify = run.statuses.get("classify[0]")
    everyone = [*run.children, *run.captures, *run.asrs]
    return {
        "reason": run.reason,
        "exit_code": run.exit_code,
        "failures": run.verdict.failures,
        "warnings": run.verdict.warnings,
        "hangs": {c.label: c.hangs for c in everyone},
        "wall_s": round(run.wall_s, 2),
        "running_s": round(run.watch_s, 2),
        "resources": run.resources.report(),
        "restarts": {c.label: c.restarts for c in everyone},
        "events": run.events,
        "stages": {name: {"state": str(s.state), "pid": s.pid,
                          "counters": s.counters.__dict__, "extra": s.extra}
                   for name, s in sorted(run.statuses.items())},
        "streams": {} if classify is None else classify.extra.get("streams", {}),
        "placement": {"placement": run.config.placement,
                      "reason": run.config.reasons.placement,
                      "processes": [c.label for c in run.children]},
        "processed_then_dropped": processed_then_dropped(run.statuses),
        "served": served_summary(run.statuses),
        "rejected": {"status": dict(run.status_rejections.counts),
                     "status_senders": dict(run.refused_senders),
                     "status_handshakes": ({} if run.handshakes is None
                                           else dict(run.handshakes.rejections.counts)),
                     "results": dict(run.result_rejections.counts)},
    }


NEXT_STAGE = {"capture": "detect", "detect": "features", "features": "classify"}
"""Who takes each stage's output: a frame a stage finished and the next dropped unworked
is work thrown away."""


def processed_then_dropped(statuses: dict[str, StageStatus]) -> dict[str, int]:
    """Per stage, frames it finished that were then dropped before the next stage worked on
    them: those it could not send (``dropped_out``) plus those the next stage's latest-wins
    inbox replaced (the next stage's ``dropped_in``). For a capture "finished" means read.
    In fused placement detect hands on to features in memory: 0 by construction, computed
    all the same from the same counters."""
    totals: dict[str, dict[str, int]] = {}
    for status in statuses.values():
        figures = totals.setdefault(status.stage, {"in": 0, "out": 0})
        figures["in"] += status.counters.dropped_in
        figures["out"] += status.counters.dropped_out
    return {stage: totals[stage]["out"] + totals.get(after, {}).get("in", 0)
            for stage, after in NEXT_STAGE.items() if stage in totals}
