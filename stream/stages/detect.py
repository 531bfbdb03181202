"""Detect: the run's perception core on a batch of frames from all streams; crops go on.

The core (:mod:`engines.adapters.perception`: detector + ByteTrack, or Holistic on the
keypoint engines) gives each frame's persons, most prominent first, at most
``detect.max_persons``, each with a track id, a box and a crop (with a margin), and with
keypoints when the core makes them. Every frame of the batch is one core call, so the
engines batch across streams. The full frame stays here; each person goes on as its crop
(buffer ``crop{i}``) plus its box and, when present, its keypoints (row ``i`` of buffer
``keypoints``). A frame with nobody still goes on (with no crops) so sequence numbers stay
contiguous downstream.

With the web view on (``--ui``), each analysed frame is also offered to a preview publisher
(:mod:`stream.ui.preview`): it encodes and sends only when its rate cap says so, never
waits, and costs nothing when the view is off (:class:`~stream.ui.preview.NullPreview`).
With ``--record``, each analysed frame also goes to the recorder's publisher
(:mod:`stream.record.publisher`), on the same terms.
"""

from __future__ import annotations

import time

import numpy as np

from engines.adapters.perception import Percept, PerceptionCore, PerceptionFrame
from stream.stages.loop import BatchStage
from stream.strictjson import JsonDict
from stream.transport.wire import MAX_DIM, Message, Person, WireError
from stream.ui.preview import NullPreview, Previews


class DetectStage(BatchStage):
    name = "detect"

    def __init__(self, core: PerceptionCore, preview: Previews | None = None,
                 record: Previews | None = None) -> None:
        self.core = core
        self.preview: Previews = preview or NullPreview()
        self.record: Previews = record or NullPreview()
        self.persons_seen = 0

    def admit(self, message: Message) -> None:
        """A frame must be one BGR image (``frame``: uint8, H x W x 3, at least 16 x 16)."""
        frame = message.arrays.get("frame")
        if frame is None or set(message.arrays) != {"frame"}:
            raise WireError("a frame message carries exactly one array, 'frame'", "arrays")
        if (frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3
                or not 16 <= min(frame.shape[:2]) <= max(frame.shape[:2]) <= MAX_DIM):
            raise WireError(f"frame is {frame.dtype} {frame.shape}; expected uint8 H x W x 3",
                            "arrays")

    def process(self, batch: list[Message]) -> list[Message]:
        t_in = time.monotonic()
        frames = [PerceptionFrame(m.header.stream, m.header.generation, m.arrays["frame"])
                  for m in batch]
        found = self.core.perceive(frames)
        analysed = time.monotonic()
        out = []
        for message, frame, percepts in zip(batch, frames, found, strict=True):
            persons, arrays = wire_persons(percepts)
            self.persons_seen += len(persons)
            random_weights = set(message.header.meta.random_weights)
            if self.core.random_weights:
                random_weights.add("detector")
            height, width = frame.image.shape[:2]
            header = message.header.with_meta(
                persons=persons, frame_hw=(int(height), int(width)), detector=self.core.name,
                random_weights=tuple(sorted(random_weights)),
            ).stamped(self.name, t_in, time.monotonic(), message.arrived)
            out.append(Message(header, arrays))
            self.preview.offer(message.header, frame.image, percepts, analysed, self.core.name)
            self.record.offer(message.header, frame.image, percepts, analysed, self.core.name)
        return out

    def on_control(self, message: Message) -> list[Message]:
        """An end of stream releases the stream's state in the core (its tracker, its own
        detector when it has one), so state stays bounded by the streams that are live."""
        self.core.release(message.header.stream)
        return [message]

    def extra_status(self) -> JsonDict:
        extra: JsonDict = {"detector": self.core.name, "persons": self.persons_seen}
        preview = self.preview.status()
        if preview:
            extra["preview"] = preview
        record = self.record.status()
        if record:
            extra["record"] = record
        return extra

    def close(self) -> None:
        self.preview.close()
        self.record.close()
        self.core.close()


def wire_persons(percepts: list[Percept]) -> tuple[tuple[Person, ...], dict[str, np.ndarray]]:
    """The wire form of one frame's persons: a :class:`Person` each, buffer ``crop{i}``
    each, and buffer ``keypoints`` (N x 137 x 3 float32, row ``i`` person ``i``'s) when the
    core made keypoints."""
    persons, arrays, keypoints = [], {}, []
    for index, percept in enumerate(percepts):
        arrays[f"crop{index}"] = np.ascontiguousarray(percept.crop)
        row = -1
        if percept.keypoints is not None:
            row = len(keypoints)
            keypoints.append(percept.keypoints)
        persons.append(Person(
            track_id=percept.track_id, score=min(1.0, max(0.0, percept.score)),
            box=tuple(round(float(v), 1) for v in percept.xyxy),
            offset=percept.offset, keypoints=row))
    if keypoints:
        arrays["keypoints"] = np.stack(keypoints).astype(np.float32, copy=False)
    return tuple(persons), arrays
