"""The monitor topic: the supervisor's view of the run (stage health, counters, restarts,
events), published for the web view a few times a second.

Stage statuses travel on a PUSH/PULL socket to the supervisor alone; :class:`MonitorView` is
a :class:`~stream.run.view.View` the supervisor already feeds (beside the terminal view, through
:class:`~stream.run.view.TeeView`), so the supervisor itself is unchanged. Each snapshot
supersedes the last: the PUB keeps at most two and never waits.

Example:
    >>> view = MonitorView(socket, interval_s=0.5)  # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import deque

import zmq

from stream.config import EndpointConfig
from stream.prediction import Prediction
from stream.strictjson import JsonDict
from stream.transport.curve import Gatekeeper
from stream.transport.endpoints import Endpoints, open_endpoint
from stream.transport.status import StageStatus
from stream.ui.records import MonitorEvent, MonitorSnapshot, encode_monitor, event_detail

KEEP_EVENTS = 20


class MonitorView:
    """Publishes a :class:`MonitorSnapshot` at most every ``interval_s`` on ``socket``."""

    def __init__(self, socket: zmq.Socket, interval_s: float = 0.5) -> None:
        self.socket = socket
        self.interval_s = interval_s
        self.events: deque[MonitorEvent] = deque(maxlen=KEEP_EVENTS)
        self.published = 0
        self.unsent = 0
        self._next = 0.0

    def prediction(self, record: Prediction) -> None:
        pass  # the web view subscribes to the predictions itself

    def event(self, event: JsonDict) -> None:
        details = {k: v for k, v in event.items()
                   if k not in ("time", "event", "stage", "index")}
        self.events.append(MonitorEvent(time=max(0.0, float(event["time"])),
                                        event=str(event["event"])[:64],
                                        stage=str(event["stage"])[:64],
                                        index=int(event["index"]),
                                        detail=event_detail(details)))

    def update(self, statuses: dict[str, StageStatus], restarts: dict[str, int]) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.interval_s
        snapshot = MonitorSnapshot(time=now, stages=dict(statuses), restarts=dict(restarts),
                                   events=tuple(self.events))
        try:
            self.socket.send(encode_monitor(snapshot), flags=zmq.NOBLOCK)
            self.published += 1
        except zmq.Again:
            self.unsent += 1

    def close(self) -> None:
        self.socket.close(linger=0)


class OwnedMonitorView(MonitorView):
    """A :class:`MonitorView` with its own ZeroMQ context, closed with it."""

    def __init__(self, context: zmq.Context, socket: zmq.Socket) -> None:
        super().__init__(socket)
        self.context = context

    def close(self) -> None:
        super().close()
        Gatekeeper.stop_for(self.context)  # its ZAP handler, when the run has keys
        self.context.term()


def open_monitor(endpoints: Endpoints, config: EndpointConfig) -> MonitorView:
    """The supervisor's side of the monitor topic, bound as
    :data:`~stream.transport.endpoints.LAYOUT` declares."""
    context = zmq.Context()
    try:
        socket = open_endpoint(context, endpoints, "monitor", "bind", config)
    except zmq.ZMQError:
        Gatekeeper.stop_for(context)
        context.term()
        raise
    return OwnedMonitorView(context, socket)
