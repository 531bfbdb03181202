"""What the person running ``hidemo run`` sees: a live terminal view, log lines, or nothing.

:class:`RichView` redraws two tables a few times a second: the stages (health, counters,
drops, restarts, time per item) and the streams (last prediction, end-to-end latency,
achieved analysis rates, dropped and lost frames). :class:`LogView` prints one line per
prediction and per supervisor event, for logs and pipes; :class:`NullView` shows nothing.

Example:
    >>> view = make_view("none")
    >>> view.close()
"""

from __future__ import annotations

import sys
import time
from typing import Protocol

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from stream.prediction import Prediction
from stream.strictjson import JsonDict
from stream.transport.status import StageStatus

REFRESH_S = 0.5


class View(Protocol):
    def prediction(self, record: Prediction) -> None: ...

    def event(self, event: JsonDict) -> None: ...

    def update(self, statuses: dict[str, StageStatus], restarts: dict[str, int]) -> None: ...

    def close(self) -> None: ...


class NullView:
    def prediction(self, record: Prediction) -> None:
        pass

    def event(self, event: JsonDict) -> None:
        pass

    def update(self, statuses: dict[str, StageStatus], restarts: dict[str, int]) -> None:
        pass

    def close(self) -> None:
        pass


class LogView(NullView):
    """One line per prediction and per supervisor event, on stderr (never wrapped: a line
    is a record). That random-weight engines made the predictions is said once, not on
    every line."""

    def __init__(self) -> None:
        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.said_random = False

    def prediction(self, record: Prediction) -> None:
        if record.random_weights and not self.said_random:
            self.said_random = True
            engines = ", ".join(record.random_engines) or "some engines"
            self.console.print(f"[yellow]warning: {escape(engines)} have random weights: the "
                               "predictions below mean nothing (latency is real)")
        probs = " ".join(f"{k}={v:.2f}" for k, v in record.probs.items())
        probs = escape(f"[{probs}]")
        self.console.print(
            f"{record.stream} #{record.seq} person {record.person}: "
            f"{record.label} {probs} {'+'.join(record.modalities)} "
            f"latency {record.latency_ms.get('total', 0.0):.0f} ms")

    def event(self, event: JsonDict) -> None:
        if event["event"] not in ("started", "stopped"):
            details = {k: v for k, v in event.items()
                       if k not in ("time", "event", "stage", "index")}
            self.console.print(f"[yellow]{event['stage']}[{event['index']}] {event['event']} "
                               f"{details}")


class RichView(NullView):
    """Live tables of stages and streams in the terminal."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=4, transient=False)
        self.live.start()
        self.last: dict[tuple[str, int], Prediction] = {}
        self.events: list[str] = []
        self._next = 0.0

    def prediction(self, record: Prediction) -> None:
        self.last[(record.stream, record.person)] = record

    def event(self, event: JsonDict) -> None:
        if event["event"] not in ("started", "stopped"):
            self.events = [*self.events[-4:], f"{event['stage']}[{event['index']}] "
                                              f"{event['event']}"]

    def update(self, statuses: dict[str, StageStatus], restarts: dict[str, int]) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + REFRESH_S
        parts: list[RenderableType] = [stage_table(statuses, restarts), self._streams(statuses)]
        if self.events:
            parts.append("\n".join(self.events))
        self.live.update(Group(*parts))

    def _streams(self, statuses: dict[str, StageStatus]) -> Table:
        classify = statuses.get("classify[0]")
        streams = {} if classify is None else classify.extra.get("streams", {})
        table = Table(title="streams")
        for column in ("stream", "person", "label", "p(positive)", "modalities", "e2e p50/p95 ms",
                       "rates fps (frames/img/kp)", "dropped", "lost"):
            table.add_column(column)
        for (stream, person), record in sorted(self.last.items()):
            info = streams.get(stream, {})
            latency = info.get("latency_ms", {})
            rates = info.get("rates", {})
            label = record.label + (" [yellow](random)" if record.random_weights else "")
            table.add_row(stream, str(person), label, f"{record.probs.get('positive', 0):.2f}",
                          "+".join(record.modalities),
                          f"{latency.get('p50', 0):.0f}/{latency.get('p95', 0):.0f}",
                          f"{rates.get('frames', 0):.1f}/{rates.get('image', 0):.1f}/"
                          f"{rates.get('keypoints', 0):.1f}",
                          str(info.get("dropped", 0)), str(info.get("lost", 0)))
        return table

    def close(self) -> None:
        self.live.stop()


def stage_table(statuses: dict[str, StageStatus], restarts: dict[str, int]) -> Table:
    """One row per stage process: health, counters, ms per item, restarts."""
    table = Table(title="stages")
    for column in ("stage", "pid", "state", "in", "out", "dropped in/out", "malformed",
                   "ms/item", "restarts"):
        table.add_column(column)
    for name, status in sorted(statuses.items()):
        c = status.counters
        per_item = 1000.0 * c.busy_s / c.processed if c.processed else 0.0
        table.add_row(name, str(status.pid), str(status.state), str(c.received), str(c.sent),
                      f"{c.dropped_in}/{c.dropped_out}", str(c.malformed), f"{per_item:.1f}",
                      str(restarts.get(name, 0)))
    return table


class TeeView:
    """Several views fed the same calls (the terminal view and the web view's monitor
    topic); one view's error in ``close`` does not keep the others open."""

    def __init__(self, *views: View) -> None:
        self.views = views

    def prediction(self, record: Prediction) -> None:
        for view in self.views:
            view.prediction(record)

    def event(self, event: JsonDict) -> None:
        for view in self.views:
            view.event(event)

    def update(self, statuses: dict[str, StageStatus], restarts: dict[str, int]) -> None:
        for view in self.views:
            view.update(statuses, restarts)

    def close(self) -> None:
        errors = []
        for view in self.views:
            try:
                view.close()
            except Exception as error:  # noqa: BLE001 - close the others, then raise
                errors.append(error)
        if errors:
            raise errors[0]


def make_view(kind: str) -> View:
    """``auto``: the live tables on a terminal, log lines otherwise."""
    if kind == "auto":
        kind = "rich" if sys.stderr.isatty() else "log"
    if kind == "rich":
        return RichView()
    if kind == "log":
        return LogView()
    return NullView()
