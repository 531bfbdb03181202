"""How the served engines of this process are doing, for the stage's status report.

Every :class:`~engines.backends.triton.TritonEngine` registers its :class:`ServedHealth`
here when it opens; a stage's status loop reads :func:`served_status` without importing the
Triton client (a light module), so a process with no served engine reports nothing extra.

Example:
    >>> health = ServedHealth(model="image_embedder", url="127.0.0.1:8001")
    >>> register(health); served_status()["image_embedder"]["state"]
    'up'
    >>> unregister(health)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

_OPEN: list[ServedHealth] = []


@dataclass
class ServedHealth:
    """One served engine's counters: calls, failures by kind, outages and their length.

    ``state`` is ``up`` or ``away`` (the server did not answer; calls fail fast until the
    next reconnection attempt). An outage starts at the first failed call and ends at the
    first call that succeeds again.
    """

    model: str
    url: str
    state: str = "up"
    calls: int = 0
    items: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    outages: int = 0
    reconnects: int = 0
    away_s: float = 0.0
    away_since: float | None = None
    last_error: str = ""

    def failed(self, kind: str, message: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.last_error = message[:300]

    def went_away(self, now: float | None = None) -> None:
        if self.away_since is None:
            self.away_since = time.monotonic() if now is None else now
            self.outages += 1
            self.state = "away"

    def came_back(self, now: float | None = None) -> None:
        if self.away_since is not None:
            now = time.monotonic() if now is None else now
            self.away_s += max(0.0, now - self.away_since)
            self.away_since = None
            self.reconnects += 1
        self.state = "up"

    def report(self, now: float | None = None) -> dict[str, object]:
        """The JSON figures of the status report (``extra["served"][model]``)."""
        now = time.monotonic() if now is None else now
        ongoing = 0.0 if self.away_since is None else max(0.0, now - self.away_since)
        return {"url": self.url, "state": self.state, "calls": self.calls,
                "items": self.items, "errors": dict(self.errors), "outages": self.outages,
                "reconnects": self.reconnects, "away_s": round(self.away_s + ongoing, 3),
                "last_error": self.last_error}


def register(health: ServedHealth) -> None:
    _OPEN.append(health)


def unregister(health: ServedHealth) -> None:
    if health in _OPEN:
        _OPEN.remove(health)


def served_status() -> dict[str, dict[str, object]]:
    """Every open served engine's figures, by model name (empty when none is open)."""
    now = time.monotonic()
    return {health.model: health.report(now) for health in _OPEN}
