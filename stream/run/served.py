"""Engines served by Triton, as the run reports them: events, summary and warnings.

A stage whose engines run on a Triton server carries their figures in its status report
(``extra["served"]``, from :mod:`engines.serving.health`). The supervisor turns a change of
state into an event (``served-away`` / ``served-back``: on the console and the web view),
the summary keeps the figures once per process (fused placement reports one worker under
two stage names), and an outage or a failed call becomes a warning at the end of the run.

Example:
    >>> served_warnings({})
    []
"""

from __future__ import annotations

from stream.strictjson import JsonDict
from stream.transport.status import StageStatus


def served_of(status: StageStatus | None) -> dict[str, JsonDict]:
    """The served engines' figures in one report, by model (empty when none)."""
    if status is None:
        return {}
    served = status.extra.get("served")
    if not isinstance(served, dict):
        return {}
    return {model: figures for model, figures in served.items() if isinstance(figures, dict)}


def transitions(before: StageStatus | None, after: StageStatus) -> list[tuple[str, JsonDict]]:
    """``(event, details)`` for each served engine whose state changed between reports."""
    old = served_of(before)
    changes = []
    for model, figures in served_of(after).items():
        state = figures.get("state")
        previous = old.get(model, {}).get("state", "up")
        if state != previous and state in ("away", "up"):
            kind = "served-away" if state == "away" else "served-back"
            changes.append((kind, {"model": model, "url": str(figures.get("url", "")),
                                   "last_error": str(figures.get("last_error", ""))[:200]}))
    return changes


def served_summary(statuses: dict[str, StageStatus]) -> dict[str, dict[str, JsonDict]]:
    """Per process (its first stage label), its served engines' last figures."""
    seen: set[int] = set()
    out: dict[str, dict[str, JsonDict]] = {}
    for label, status in sorted(statuses.items()):
        served = served_of(status)
        if served and status.pid not in seen:
            seen.add(status.pid)
            out[label] = served
    return out


def served_warnings(statuses: dict[str, StageStatus]) -> list[str]:
    """A sentence per served engine that was away or failed calls during the run."""
    warnings = []
    for label, served in served_summary(statuses).items():
        for model, figures in sorted(served.items()):
            errors = figures.get("errors") or {}
            failed = sum(v for v in errors.values() if isinstance(v, int)) \
                if isinstance(errors, dict) else 0
            outages = figures.get("outages") or 0
            if not failed and not outages:
                continue
            kinds = ", ".join(f"{k} {v}" for k, v in sorted(errors.items())) \
                if isinstance(errors, dict) else ""
            warnings.append(
                f"Triton at {figures.get('url')}: {model} ({label}) was away {outages} "
                f"time(s), {figures.get('away_s', 0)} s in all; {failed} call(s) failed "
                f"({kinds or 'none'}): their items were dropped and the run went on"
                + ("; it is still away" if figures.get("state") == "away" else ""))
    return warnings
