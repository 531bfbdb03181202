"""Classify: per (stream, person) windows of features, classified every stride, batched.

Features arrive per frame; each person's ring keeps the last ``window_seconds``. When a
stream's media time passes its next stride, a window ending at that frame is built for each
person seen recently (:func:`engines.adapters.windows.build_window`, as in training), and
the due windows of all streams go through the classifier in one call. A window with
neither an image embedding nor a keypoint frame of its person makes no prediction (see
:func:`has_evidence`; counted as ``windows_without_evidence``). Each prediction is a
JSON record (``hidemo.prediction/2``, its JSON Schema in ``docs/prediction.schema.json``)
sent to the sinks. Sequence numbers are accounted here: a gap the in-band drop count does
not explain is reported as lost frames. A prediction's own ``seq`` is contiguous per stream
for the whole run: with a :class:`ClassifyMemory` it survives a restart of this stage.

State is bounded whatever arrives: streams are the run's (the wire rules refuse others),
each keeps at most :data:`MAX_PERSONS_PER_STREAM` person rings, an end of stream releases
them, and a stride is found by arithmetic, never by a loop over an absurd time.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Protocol

import numpy as np
import zmq

from engines.adapters.classifier import CLASS_NAMES, WindowPredictions
from engines.adapters.windows import WindowBatch
from stream.config import ClassifyConfig
from stream.files import write_document
from stream.prediction import FrameCounts, FrameTrace, Prediction, Slots, Window
from stream.stages.loop import BatchStage
from stream.stages.sinks import JsonlSink, Sinks, json_line, problem_text, stage_latency_ms
from stream.stages.windows import PersonRing, StreamBook
from stream.strictjson import JsonDict
from stream.transport.credits import CreditPublisher
from stream.transport.status import Rejections
from stream.transport.text_topic import TextTopic
from stream.transport.wire import Header, Message, WireError

log = logging.getLogger(__name__)

LATENCY_KEEP = 512
MAX_PERSONS_PER_STREAM = 16
"""Person rings one stream may hold; beyond it the least recently seen is forgotten."""


class ClassifyMemory:
    """What a restarted classify must not forget, per stream: the next prediction ``seq``
    and the sequence accounting (:class:`StreamBook`). Kept in a small JSON file in the
    run's private folder, replaced atomically after every batch and before each prediction
    goes out (tens of microseconds), so a restarted classify numbers predictions on from
    where the dead one stopped, and counts as lost only the frames that died with it,
    not every frame sent before it started. An unreadable file starts afresh (logged): a
    repeated seq is better than no predictions."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.unsaved = 0
        """Saves that failed (a full disk): the file then holds the last one that did."""
        self.streams: dict[str, tuple[int, StreamBook]] = {}
        try:
            loaded = json.loads(path.read_text())
            for name, saved in loaded.items():
                book = StreamBook(**saved["book"])
                if book.stream != name or int(saved["predictions"]) < 0:
                    raise ValueError(f"stream {name!r} does not match its record")
                self.streams[name] = (int(saved["predictions"]), book)
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
            self.streams = {}
            log.warning("classify state %s unreadable (%s); starting afresh", path, error)

    def save(self, streams: dict[str, _Stream]) -> None:
        body = {name: {"predictions": state.predictions, "book": asdict(state.book)}
                for name, state in streams.items()}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_document(self.path, json.dumps(body, separators=(",", ":")), durable=False)
        except OSError as error:  # a full disk: the old state stays whole; counted
            self.unsaved += 1
            if self.unsaved == 1:
                log.warning("classify state %s not saved (%s); a restart would number "
                            "predictions from the last saved state", self.path, error)


class Watched(Protocol):
    """A socket event source whose refusals count as rejections (CURVE handshakes)."""

    monitor: zmq.Socket
    rejections: Rejections

    def poll(self) -> None: ...


class Classifier(Protocol):
    """What this stage needs of :class:`engines.adapters.classifier.WindowClassifier`."""

    window_seconds: float
    image_rate: float
    keypoint_rate: float
    image_dim: int
    text_dim: int
    random_weights: bool

    def classify(self, batch: WindowBatch) -> WindowPredictions: ...


class _Stream:
    """What classify keeps per stream: accounting, timing, analysis rates, latencies."""

    def __init__(self, stream: str) -> None:
        self.book = StreamBook(stream)
        self.next_due: float | None = None
        self.predictions = 0
        self.clock_offset = 0.0
        self.first_media: float | None = None
        self.last_media = 0.0
        self.images = 0
        self.keypoint_frames = 0
        self.latency_ms: deque[float] = deque(maxlen=LATENCY_KEEP)
        self.age_frames: deque[float] = deque(maxlen=LATENCY_KEEP)
        self.without_evidence = 0
        """Due windows with neither an image nor a keypoint frame: no prediction."""
        self.ended = False
        self.end: tuple[int, int] | None = None
        """(generation, frames sent) of the last end of stream: a later frame that the end
        says was never sent contradicts it (a false end), and the stream goes on."""

    def rates(self) -> dict[str, float]:
        span = self.last_media - (self.first_media or 0.0)
        if span <= 0:
            return {"frames": 0.0, "image": 0.0, "keypoints": 0.0}
        return {"frames": round(self.book.frames / span, 2),
                "image": round(self.images / span, 2),
                "keypoints": round(self.keypoint_frames / span, 2)}

    def summary(self) -> JsonDict:
        latency = np.asarray(self.latency_ms, np.float64)
        age = np.asarray(self.age_frames, np.float64)
        book = self.book
        return {  # counts saturate where the report is sent (StageStatus.to_json)
            "frames": book.frames, "dropped": book.dropped, "lost": book.lost,
            "generations": book.generations, "predictions": self.predictions,
            "windows_without_evidence": self.without_evidence,
            "rates": self.rates(), "ended": self.ended,
            "latency_ms": _percentiles(latency), "age_frames": _percentiles(age),
        }


def _percentiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    p50, p95, top = np.percentile(values, [50, 95, 100])
    return {"p50": round(float(p50), 2), "p95": round(float(p95), 2), "max": round(float(top), 2)}


class ClassifyStage(BatchStage):
    name = "classify"

    def __init__(self, classifier: Classifier, sinks: Sinks, config: ClassifyConfig, *,
                 text: TextTopic | None = None, trace: JsonlSink | None = None,
                 credits: CreditPublisher | None = None,
                 memory: ClassifyMemory | None = None,
                 watched: Sequence[Watched] = ()) -> None:
        self.classifier = classifier
        self.credits = credits
        self.sinks = sinks
        self.config = config
        self.text = text
        self.trace = trace
        self.memory = memory
        self.watched = list(watched)
        self._streams: dict[str, _Stream] = {}
        self._rings: dict[tuple[str, int, int], PersonRing] = {}
        self.non_finite = 0
        self.without_evidence = 0

    def _stream(self, name: str) -> _Stream:
        if name not in self._streams:
            state = self._streams[name] = _Stream(name)
            if self.memory is not None and name in self.memory.streams:
                state.predictions, state.book = self.memory.streams[name]
        return self._streams[name]

    def clock_offset(self, stream: str) -> float | None:
        """``capture_time - media_time`` of ``stream`` as last seen (None: no frame yet): the
        offset a window's media span is converted with, which media-timed text lines (the
        ASR of a file, :mod:`stream.transport.text_topic`) need to land in the same windows."""
        state = self._streams.get(stream)
        return None if state is None else state.clock_offset

    def admit(self, message: Message) -> None:
        """Only ``image`` (N x image_dim) and ``keypoints`` (M x 137 x 3) float32 arrays,
        and every person's row index inside them."""
        arrays = message.arrays
        if not set(arrays) <= {"image", "keypoints"}:
            raise WireError("unexpected arrays for classify", "arrays")
        shapes = {"image": (self.classifier.image_dim,), "keypoints": (137, 3)}
        rows = {}
        for name, tail in shapes.items():
            array = arrays.get(name)
            if array is None:
                rows[name] = 0
                continue
            if array.dtype != np.float32 or array.ndim != 1 + len(tail) or array.shape[1:] != tail:
                raise WireError(f"{name} is {array.dtype} {array.shape}", "arrays")
            rows[name] = array.shape[0]
        for person in message.header.meta.persons:
            if person.image >= rows["image"] or person.keypoints >= rows["keypoints"]:
                raise WireError("a person's row is outside its array", "arrays")

    def process(self, batch: list[Message]) -> list[Message]:
        t_in = time.monotonic()
        due: list[tuple[Header, int, PersonRing]] = []
        for message in batch:
            header = message.header
            state = self._stream(header.stream)
            if header.generation != state.book.generation:
                self._forget_stream(header.stream)
                state.next_due, state.first_media = None, None
            if state.ended and _contradicts(state.end, header):
                log.warning("stream %s: frame %d came after an end of stream that said "
                            "%d frames were sent; the end is ignored", header.stream,
                            header.seq, state.end[1] if state.end else 0)
                state.ended, state.end = False, None
            lost = state.book.account(header.generation, header.seq, header.dropped)
            if lost:
                log.warning("stream %s: %d frame(s) lost before seq %d", header.stream, lost,
                            header.seq)
            if self.credits is not None:
                self.credits.ack(header.stream, header.generation, header.seq)
            self._add_features(message, state)
            self._trace(header, t_in, lost, message.arrived)
            if self._stride_due(state, header.media_time):
                due.extend(self._due_persons(header))
        if self.credits is not None:
            self.credits.flush()
        if due:
            self._classify(due, t_in)
        if self.memory is not None:
            self.memory.save(self._streams)
        return []

    def _stride_due(self, state: _Stream, media_time: float) -> bool:
        """Whether a stride boundary passed at ``media_time``; moves ``next_due`` past it.

        Arithmetic, not a loop: a frame far in the future (a jump, a hostile peer) costs
        the same as the next one. A time far before the boundary (the clock went back)
        restarts the strides from there, so one absurd frame cannot silence a stream."""
        stride = self.config.stride_s
        if state.next_due is None or state.next_due - media_time > 2 * stride:
            state.next_due = media_time + stride
            return False
        if media_time + 1e-9 < state.next_due:
            return False
        passed = math.floor((media_time + 1e-9 - state.next_due) / stride) + 1
        state.next_due += passed * stride
        return True

    def _add_features(self, message: Message, state: _Stream) -> None:
        header = message.header
        state.clock_offset = header.capture_time - header.media_time
        if state.first_media is None:
            state.first_media = header.media_time
        state.last_media = header.media_time
        image = message.arrays.get("image")
        keypoints = message.arrays.get("keypoints")
        for person in header.meta.persons:
            key = (header.stream, header.generation, person.track_id)
            ring = self._rings.get(key)
            if ring is None:
                self._make_room(header.stream)
                ring = self._rings[key] = PersonRing(self.classifier.window_seconds)
            row_image = None if image is None or person.image < 0 else image[person.image]
            row_kp = (None if keypoints is None or person.keypoints < 0
                      else keypoints[person.keypoints])
            state.images += row_image is not None
            state.keypoint_frames += row_kp is not None
            ring.add(header.media_time, row_image, row_kp)

    def _make_room(self, stream: str) -> None:
        """Forget the least recently seen rings of ``stream`` beyond the bound."""
        mine = sorted((k for k in self._rings if k[0] == stream),
                      key=lambda k: self._rings[k].last_seen)
        for key in mine[:max(0, len(mine) - MAX_PERSONS_PER_STREAM + 1)]:
            del self._rings[key]

    def _due_persons(self, header: Header) -> list[tuple[Header, int, PersonRing]]:
        """Persons of this stream seen within ``person_timeout_s``; forgets long-gone ones."""
        out = []
        forget_after = self.config.person_timeout_s + self.classifier.window_seconds
        for key, ring in list(self._rings.items()):
            stream, generation, track = key
            if stream != header.stream or generation != header.generation:
                continue
            idle = header.media_time - ring.last_seen
            if idle <= self.config.person_timeout_s:
                out.append((header, track, ring))
            elif idle > forget_after:
                del self._rings[key]
        return out

    def _classify(self, due: list[tuple[Header, int, PersonRing]], t_in: float) -> None:
        windows, kept = [], []
        c = self.classifier
        for header, track, ring in due:
            end = header.media_time
            text = None
            if self.text is not None:
                offset = self._streams[header.stream].clock_offset
                text = self.text.vector(header.stream, end - c.window_seconds + offset,
                                        end + offset)
            window = ring.window(end, image_rate=c.image_rate, keypoint_rate=c.keypoint_rate,
                                 image_dim=c.image_dim, text_dim=c.text_dim, text=text)
            if has_evidence(window):
                windows.append(window)
                kept.append((header, track, ring))
            else:
                self._streams[header.stream].without_evidence += 1
                self.without_evidence += 1
        if not windows:
            return
        batch = WindowBatch.stack(windows)
        probs = c.classify(batch).probs
        done = time.monotonic()
        modalities = batch.modalities_present
        for i, (header, track, ring) in enumerate(kept):
            p = np.asarray(probs[i], np.float64)
            if not np.isfinite(p).all():  # never a NaN in a record: counted instead
                self.non_finite += 1
                continue
            if self.config.smoothing and ring.smoothed is not None:
                p = self.config.smoothing * ring.smoothed + (1 - self.config.smoothing) * p
            ring.smoothed = p
            self._emit(header, track, p, modalities[i], batch, i, t_in, done)

    def _emit(self, header: Header, track: int, probs: np.ndarray, modalities: list[str],
              batch: WindowBatch, index: int, t_in: float, done: float) -> None:
        state = self._streams[header.stream]
        random_engines = sorted({*header.meta.random_weights,
                                 *(["classifier"] if self.classifier.random_weights else [])})
        latency = stage_latency_ms(header, t_in, done, self.name)
        state.latency_ms.append(latency["total"])
        # the one model that publishes the schema builds the record: never one it refuses
        prediction = Prediction.model_validate({
            "stream": header.stream, "seq": state.predictions,
            "person": track, "generation": header.generation, "frame_seq": header.seq,
            "label": CLASS_NAMES[int(np.argmax(probs))],
            "probs": {name: round(float(v), 5) for name, v in zip(CLASS_NAMES, probs,
                                                                  strict=True)},
            "window": Window(start=round(header.media_time - self.classifier.window_seconds, 3),
                             end=round(header.media_time, 3),
                             seconds=self.classifier.window_seconds),
            "modalities": modalities,
            "slots": Slots(image=int(batch.image_mask[index].sum()),
                           keypoints=int(batch.keypoints_mask[index].sum()),
                           text=int(batch.text_mask[index].sum())),
            "smoothing": self.config.smoothing,
            "capture_time": round(header.capture_time, 6), "emit_time": round(done, 6),
            "latency_ms": latency,
            "frames": FrameCounts(received=state.book.frames, dropped=state.book.dropped,
                                  lost=state.book.lost),
            "detector": header.meta.detector, "keypoints": header.meta.keypoints,
            "random_weights": bool(random_engines), "random_engines": random_engines,
        })
        state.predictions += 1
        if self.memory is not None:  # reserved before it is sent: a restart never reuses it
            self.memory.save(self._streams)
        self.sinks.emit(prediction)

    def _trace(self, header: Header, t_in: float, lost: int, arrived: float | None) -> None:
        age = (t_in - header.capture_time) * header.source_fps
        state = self._streams[header.stream]
        state.age_frames.append(age)
        if self.trace is not None:
            record = FrameTrace(
                stream=header.stream, seq=header.seq, generation=header.generation,
                capture_time=header.capture_time, arrival=t_in, age_frames=round(age, 2),
                dropped=header.dropped, lost=lost, persons=len(header.meta.persons),
                latency_ms=stage_latency_ms(header, t_in, t_in, self.name),
                stamps=[(s.stage, s.arrived, s.t_in, s.t_out) for s in header.stamps]
                + [(self.name, t_in if arrived is None else arrived, t_in, t_in)])
            try:
                self.trace.emit(record, json_line(record))
            except OSError as error:  # counted in sink_errors; the file stays whole lines
                log.warning("frame trace %s failed (counted, not fatal): %s",
                            self.trace.path, error)

    def _forget_stream(self, stream: str) -> None:
        for key in [k for k in self._rings if k[0] == stream]:
            del self._rings[key]

    def on_control(self, message: Message) -> list[Message]:
        header = message.header
        state = self._stream(header.stream)
        state.ended, state.end = True, (header.generation, header.seq)
        lost = state.book.end(header.generation, header.seq, header.dropped)
        if lost:
            log.warning("stream %s: %d frame(s) lost at its end", header.stream, lost)
        self._forget_stream(header.stream)  # its windows are done: release them
        return []

    def extra_sockets(self) -> list:
        text = [] if self.text is None else [(self.text.socket, self.text.poll)]
        return text + [(w.monitor, w.poll) for w in self.watched]

    def extra_rejections(self) -> list[Rejections]:
        text = [] if self.text is None else [self.text.rejections]
        return text + [w.rejections for w in self.watched]

    def extra_status(self) -> JsonDict:
        return {"streams": {name: s.summary() for name, s in self._streams.items()},
                "persons": len(self._rings), "sink_errors": self.sink_errors(),
                "sink_problems": self.sink_problems(),
                "results_unsent": self.sinks.unsent("results"),
                "state_unsaved": 0 if self.memory is None else self.memory.unsaved,
                "non_finite_predictions": self.non_finite,
                "windows_without_evidence": self.without_evidence,
                "text_lines": 0 if self.text is None else self.text.received,
                "text_superseded": 0 if self.text is None else self.text.superseded}

    def sink_errors(self) -> dict[str, int]:
        """Records that did not reach each sink that failed (the frame trace included):
        the run's verdict reports them as a failure."""
        errors = dict(self.sinks.errors)
        if self.trace is not None and self.trace.failed:
            errors[self.trace.name] = self.trace.failed
        return errors

    def sink_problems(self) -> dict[str, str]:
        """Each failed sink's first error, for the verdict."""
        problems = dict(self.sinks.problems)
        if self.trace is not None and self.trace.error is not None:
            problems[self.trace.name] = problem_text(self.trace.error)
        return problems

    def close(self) -> None:
        self.sinks.close()
        if self.trace is not None:
            self.trace.close()


def has_evidence(window: WindowBatch) -> bool:
    """Whether ``window`` (a batch of one) holds something of its person: an image
    embedding or a keypoint frame. Text alone is the stream's words, said by whoever speaks
    (maybe no one in view): it is the stream's transcript, not this person's evidence, and
    a window of text alone would give every person seen lately the same prediction. A
    window with nothing at all would give NaN."""
    return bool(window.image_mask.any() or window.keypoints_mask.any())


def _contradicts(end: tuple[int, int] | None, header: Header) -> bool:
    """Whether frame ``header`` is one an end of stream said was never sent: a new
    generation (the source came back), or a sequence number at or past the end's count.
    Frames from before the end may still arrive late from a feature replica: they do not."""
    if end is None:
        return True
    generation, sent = end
    return header.generation != generation or header.seq >= sent
