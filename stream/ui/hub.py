"""The web server's state and fan-out: what the pipeline published, kept for the page.

:class:`Hub` takes each message from the view's subscriptions (previews, predictions,
transcript lines, monitor snapshots), validates it (a refused one is counted per topic and
reason, never raised), keeps the newest state (the last frame per stream, each person's
latest prediction and probability over the last ``history_s``, recent transcript lines,
the last snapshot) and hands a message for the page to every connected :class:`Client`.

Handing on never waits: each client has its own bounded queue (the newest frame per stream,
latest-wins; at most ``max_data`` data messages, oldest dropped first) and its own sender
task. Frames are paced by the browser: the page acknowledges each frame once it has drawn
it, and a client gets a new frame only while fewer than ``MAX_FRAMES_IN_FLIGHT`` are
unacknowledged (socket buffers alone would take megabytes of frames a frozen tab never
shows). A browser that stops reading or drawing holds at most that many frames; its queue
then drops, and counts, what it could not take (``dropped_frames``, ``dropped_data``), and
nobody else notices, least of all the pipeline.

Times: the pipeline stamps ``time.monotonic()`` (system-wide on Linux); the page gets wall
times (``*_wall``, epoch seconds) so a browser on this machine can tell a frame's age. A
transcript line is held until the stream's newest preview has reached it and goes out on
the video's clock (:mod:`stream.ui.lines`): media time for a file (``media_streams``), wall
time for a live source.

Example:
    >>> hub = Hub(["demo0"], history_s=60.0)
    >>> hub.stats()["clients"]
    0
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from stream.prediction import Prediction
from stream.strictjson import JsonDict
from stream.transport.status import Rejections
from stream.transport.text_topic import TextLine
from stream.transport.wire import WireError, refusal
from stream.ui.lines import HeldLines, VideoClock
from stream.ui.records import Preview, decode_monitor, decode_preview, monitor_dict

KEEP_LINES = 50
MAX_DATA = 256
MAX_FRAMES_IN_FLIGHT = 2
"""Frames sent to one browser and not yet acknowledged as drawn: two keep a frame coming
while the page draws the last one."""
TOPICS = ("preview", "predictions", "transcript", "monitor")


def wall_clock() -> Callable[[float], float]:
    """A converter from ``time.monotonic()`` seconds to epoch seconds (offset taken now)."""
    offset = time.time() - time.monotonic()
    return lambda t: t + offset


class Client:
    """One browser connection's queue: the newest frame per stream and recent data."""

    def __init__(self, name: str, max_data: int = MAX_DATA,
                 max_in_flight: int = MAX_FRAMES_IN_FLIGHT) -> None:
        self.name = name
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.frames: dict[str, bytes] = {}
        self.data: deque[str] = deque()
        self.max_data = max_data
        self.ready = asyncio.Event()
        self.sent_frames = 0
        self.sent_data = 0
        self.dropped_frames = 0
        self.dropped_data = 0
        self.acked = 0

    def put_frame(self, stream: str, payload: bytes) -> None:
        if stream in self.frames:
            self.dropped_frames += 1  # the page never took the previous one: the newest wins
        self.frames[stream] = payload
        self.ready.set()

    def put_data(self, text: str) -> None:
        if len(self.data) >= self.max_data:
            self.data.popleft()
            self.dropped_data += 1
        self.data.append(text)
        self.ready.set()

    def ack(self) -> None:
        """The page drew a frame: one more may go."""
        self.in_flight = max(0, self.in_flight - 1)
        self.acked += 1
        if self.frames:
            self.ready.set()

    def ready_items(self) -> list[str | bytes]:
        """What may be sent now: every data message, then frames while the page has room."""
        items: list[str | bytes] = list(self.data)
        self.data.clear()
        for stream in list(self.frames):
            if self.in_flight >= self.max_in_flight:
                break
            items.append(self.frames.pop(stream))
            self.in_flight += 1
        return items

    async def take(self) -> list[str | bytes]:
        """What may be sent, once there is something."""
        while True:
            await self.ready.wait()
            self.ready.clear()
            items = self.ready_items()
            if items:
                return items

    def sent(self, item: str | bytes) -> None:
        if isinstance(item, bytes):
            self.sent_frames += 1
        else:
            self.sent_data += 1

    def stats(self) -> JsonDict:
        return {"name": self.name, "sent_frames": self.sent_frames,
                "sent_data": self.sent_data, "dropped_frames": self.dropped_frames,
                "dropped_data": self.dropped_data, "acked": self.acked,
                "in_flight": self.in_flight,
                "waiting": len(self.data) + len(self.frames)}


class Hub:
    """Validated state of one run's outputs, fanned out to the connected clients."""

    def __init__(self, streams: Sequence[str], history_s: float, max_clients: int = 8, *,
                 media_streams: Sequence[str] = (), person_timeout_s: float = 3.0) -> None:
        self.streams = list(streams)
        self.history_s = history_s
        self.max_clients = max_clients
        self.person_timeout_s = person_timeout_s
        self.held = {s: HeldLines(media=s in media_streams) for s in self.streams}
        self.clocks: dict[str, VideoClock] = {}
        self.to_wall = wall_clock()
        self.clients: list[Client] = []
        self.frames: dict[str, bytes] = {}
        self.latest: dict[tuple[str, int], JsonDict] = {}
        self.history: dict[str, deque[list[float | int | str]]] = {s: deque() for s in self.streams}
        self.lines: dict[str, deque[JsonDict]] = {
            s: deque(maxlen=KEEP_LINES) for s in self.streams}
        self.monitor: JsonDict | None = None
        self.received = dict.fromkeys(TOPICS, 0)
        self.rejections = {topic: Rejections(topic, "ui") for topic in TOPICS}
        self.departed: list[JsonDict] = []

    # -- clients ---------------------------------------------------------------------

    def join(self, name: str) -> Client | None:
        """A new client with the current state queued, or None when ``max_clients`` are on."""
        if len(self.clients) >= self.max_clients:
            return None
        client = Client(name)
        client.put_data(json.dumps({"type": "hello", **self.state()}))
        for stream, payload in self.frames.items():
            client.put_frame(stream, payload)
        self.clients.append(client)
        return client

    def leave(self, client: Client) -> None:
        if client in self.clients:
            self.clients.remove(client)
            self.departed = [*self.departed[-15:], client.stats()]

    def _data(self, message: JsonDict) -> None:
        text = json.dumps(message, separators=(",", ":"), allow_nan=False)
        for client in self.clients:
            client.put_data(text)

    # -- topics ----------------------------------------------------------------------

    def receive(self, topic: str, parts: Sequence[bytes]) -> None:
        """One message of ``topic``; a refused one is counted, never raised."""
        self.received[topic] += 1
        try:
            {"preview": self._preview, "predictions": self._prediction,
             "transcript": self._transcript, "monitor": self._monitor}[topic](parts)
        except WireError as error:
            self.rejections[topic].add(error.reason, error)

    def _preview(self, parts: Sequence[bytes]) -> None:
        preview = decode_preview(parts, self.streams)
        payload = frame_message(preview, self.to_wall)
        stream = preview.header.stream
        self.frames[stream] = payload
        self.clocks[stream] = VideoClock(preview.header.capture_time, preview.header.media_time)
        self._release(stream)  # before the frame: the page holds what its frame has not reached
        for client in self.clients:
            client.put_frame(stream, payload)

    def _prediction(self, parts: Sequence[bytes]) -> None:
        if len(parts) != 2:
            raise WireError(f"{len(parts)} parts; expected [stream, JSON]", "parts")
        try:
            record = Prediction.model_validate_json(parts[1])
        except ValidationError as error:
            raise refusal(error, "prediction") from None
        if record.stream not in self.history or parts[0] != record.stream.encode():
            raise WireError(f"stream {record.stream[:32]!r} is not one of this run's",
                            "unknown-stream")
        data = record.model_dump(mode="json", by_alias=True)
        data["emit_wall"] = self.to_wall(record.emit_time)
        data["capture_wall"] = self.to_wall(record.capture_time)
        key = (record.stream, record.person)
        self.latest.pop(key, None)  # the least recently predicted first
        self.latest[key] = data
        point = [round(data["emit_wall"], 3), record.person,
                 round(record.probs.get("positive", 0.0), 4), record.label,
                 round(record.window.end, 3)]  # a file's timeline is drawn on media time
        history = self.history[record.stream]
        history.append(point)
        cut = point[0] - self.history_s
        while history and history[0][0] < cut:
            history.popleft()
        while self.latest:  # persons not predicted for history_s are gone from the page
            oldest = next(iter(self.latest))
            if self.latest[oldest]["emit_wall"] >= cut:
                break
            del self.latest[oldest]
        self._data({"type": "prediction", "record": data})

    def _transcript(self, parts: Sequence[bytes]) -> None:
        if len(parts) != 2:
            raise WireError(f"{len(parts)} parts; expected [stream, JSON]", "parts")
        stream = parts[0].decode(errors="replace")
        if stream not in self.lines:
            raise WireError(f"stream {stream[:32]!r} is not one of this run's", "unknown-stream")
        try:
            line = TextLine.model_validate_json(parts[1])
        except ValidationError as error:
            raise refusal(error, "transcript line") from None
        self.held[stream].add(line)
        self._release(stream)

    def _release(self, stream: str) -> None:
        """Send the held lines of ``stream`` its video has reached."""
        clock = self.clocks.get(stream)
        if clock is None or not self.held[stream]:
            return
        for entry in self.held[stream].release(clock, self.to_wall):
            entry = {"stream": stream, **entry}
            self.lines[stream].append(entry)
            self._data({"type": "transcript", "line": entry})

    def _monitor(self, parts: Sequence[bytes]) -> None:
        snapshot = monitor_dict(decode_monitor(parts))
        self.monitor = snapshot
        self._data({"type": "monitor", "monitor": snapshot})

    # -- reading -----------------------------------------------------------------------

    def state(self) -> JsonDict:
        """Everything a page needs to draw itself now (also ``/api/state``)."""
        return {"streams": self.streams, "history_s": self.history_s,
                "person_timeout_s": self.person_timeout_s,
                "clocks": {s: "media" if h.media else "wall" for s, h in self.held.items()},
                "predictions": list(self.latest.values()),
                "history": {s: list(h) for s, h in self.history.items()},
                "transcript": {s: list(lines) for s, lines in self.lines.items()},
                "monitor": self.monitor, "now_wall": time.time()}

    def stats(self) -> JsonDict:
        """The view's own counters (``/api/stats``): messages per topic, refusals, and per
        client what it was sent and what its queue dropped."""
        return {"received": dict(self.received),
                "rejected": {t: dict(r.counts) for t, r in self.rejections.items() if r.counts},
                "clients": len(self.clients),
                "per_client": [c.stats() for c in self.clients],
                "held_lines": {s: len(h) for s, h in self.held.items()},
                "dropped_lines": {s: h.dropped for s, h in self.held.items() if h.dropped},
                "departed": list(self.departed)}


def frame_message(preview: Preview, to_wall: Callable[[float], float]) -> bytes:
    """A preview as one binary WebSocket message for the page: a 4-byte big-endian length,
    the JSON header (persons, keypoints as lists, wall-clock times), then the JPEG."""
    header = preview.header
    keypoints = preview.keypoints
    persons = []
    for person in header.persons:
        points = None
        if keypoints is not None and person.keypoints >= 0:
            points = [round(float(v), 1) for v in keypoints[person.keypoints].reshape(-1)]
        persons.append({"track_id": person.track_id, "score": round(person.score, 3),
                        "box": list(person.box), "keypoints": points})
    meta = {"type": "frame", "stream": header.stream, "seq": header.seq,
            "generation": header.generation, "media_time": round(header.media_time, 3),
            "size_hw": list(header.size_hw), "frame_hw": list(header.frame_hw),
            "detector": header.detector, "persons": persons,
            "capture_wall": to_wall(header.capture_time),
            "analysed_wall": to_wall(header.analysed_time), "sent_wall": time.time()}
    body = json.dumps(meta, separators=(",", ":"), allow_nan=False).encode()
    return len(body).to_bytes(4, "big") + body + preview.jpeg
