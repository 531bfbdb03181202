"""The record topic's messages: an analysed frame, its persons, and a publisher count.

Parts: ``[stream id, count, envelope, frame, keypoints?]``. The stream id leads so that
a subscriber may filter by stream; ``count`` is the publisher's own 8-byte big-endian
number of the frames it meant to send for the stream (so the recorder counts every frame
lost on the way, whether the publisher could not send it or ZeroMQ dropped it); the rest is
the pipeline's own wire format (:mod:`stream.transport.wire`): the frame's :class:`Header`
with ``meta.persons`` (boxes and keypoint rows in the sent frame's pixels) and
``meta.frame_hw`` (the analysed frame's size), the frame (uint8, H x W x 3, BGR) and, when
detect made keypoints, ``keypoints`` (N x 137 x 3 float32, sent pixels).

Every part is untrusted: :func:`decode_record` validates it or raises
:class:`~stream.transport.wire.WireError` with a reason the recorder counts.

Example:
    >>> header = Header(stream="demo0", seq=0, generation=1, capture_time=1.0,
    ...                 media_time=0.0)
    >>> parts = record_parts(0, header, np.zeros((32, 32, 3), np.uint8), None)
    >>> decode_record(parts, WireRules()).image.shape
    (32, 32, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stream.transport.wire import Header, Part, WireError, WireRules, encode

COUNT_BYTES = 8
KEYPOINT_SHAPE = (137, 3)
MIN_SIDE = 16


@dataclass(frozen=True)
class RecordFrame:
    """A validated record message: the publisher's count for the stream, the frame's
    header (persons in ``header.meta.persons``), the image and the keypoints (or None)."""

    count: int
    header: Header
    image: np.ndarray
    keypoints: np.ndarray | None


def record_parts(count: int, header: Header, image: np.ndarray,
                 keypoints: np.ndarray | None) -> list[bytes | memoryview]:
    """The parts of one record message (``send_multipart(..., copy=False)``)."""
    arrays = {"frame": image}
    if keypoints is not None:
        arrays["keypoints"] = keypoints
    return [header.stream.encode(), count.to_bytes(COUNT_BYTES, "big"),
            *encode(header, arrays)]


def decode_record(parts: Sequence[Part], rules: WireRules) -> RecordFrame:
    """The record message in ``parts``, or :class:`WireError` (``parts``, ``buffers``,
    ``unknown-stream``, ``arrays``, ``size``, ``schema``...)."""
    if len(parts) < 4:
        raise WireError(f"{len(parts)} parts; expected [stream, count, envelope, frame, "
                        "keypoints?]", "parts")
    count_part = memoryview(_bytes(parts[1]))
    if count_part.nbytes != COUNT_BYTES:
        raise WireError(f"the count part is {count_part.nbytes} bytes, not {COUNT_BYTES}",
                        "parts")
    count = int.from_bytes(count_part, "big")
    message = rules.decode(parts[2:])
    header = message.header
    if _bytes(parts[0]) != header.stream.encode():
        raise WireError("the topic is not the header's stream", "unknown-stream")
    arrays = message.arrays
    if set(arrays) - {"frame", "keypoints"} or "frame" not in arrays:
        raise WireError("a record carries 'frame' and, at most, 'keypoints'", "arrays")
    image = arrays["frame"]
    if (image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3
            or min(image.shape[:2]) < MIN_SIDE):
        raise WireError(f"frame is {image.dtype} {image.shape}; expected uint8 H x W x 3",
                        "arrays")
    keypoints = arrays.get("keypoints")
    rows = 0
    if keypoints is not None:
        if (keypoints.dtype != np.float32 or keypoints.ndim != 3
                or keypoints.shape[1:] != KEYPOINT_SHAPE):
            raise WireError(f"keypoints are {keypoints.dtype} {keypoints.shape}; expected "
                            "float32 N x 137 x 3", "arrays")
        rows = keypoints.shape[0]
    if any(person.keypoints >= rows for person in header.meta.persons):
        raise WireError("a person points past the keypoint rows", "buffers")
    return RecordFrame(count, header, image, keypoints)


def _bytes(part: Part) -> bytes:
    buffer = getattr(part, "buffer", part)  # a zmq.Frame received with copy=False
    return bytes(buffer)
