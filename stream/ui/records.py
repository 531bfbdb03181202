"""Typed records of the view's topics, shared by their publishers and the web server.

Every message the web server receives is untrusted like any other on a socket: it is
validated here (strict pydantic, bounded sizes, finite numbers, known streams) or refused
with a :class:`~stream.transport.wire.WireError` whose ``reason`` the server counts.

Preview message parts: ``[stream id, PreviewHeader JSON, JPEG, keypoints?]``, keypoints
being ``keypoint_rows`` x 137 x 3 float32 in preview pixels (x, y, confidence).

Example:
    >>> header = PreviewHeader(stream="demo0", seq=1, generation=1, capture_time=1.0,
    ...                        analysed_time=1.1, media_time=0.5, frame_hw=(480, 640),
    ...                        size_hw=(360, 480))
    >>> encode_preview(header)[:10]
    b'{"stream":'
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, JsonValue, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from stream.transport.status import StageStatus
from stream.transport.wire import (
    MAX_DIM,
    MAX_PERSONS,
    WIRE_CONFIG,
    Count,
    ExactInt,
    Name,
    Pixel,
    Seconds,
    Slot,
    Text,
    WireError,
    refusal,
)

PREVIEW_VERSION = 1
MAX_JPEG_BYTES = 2 * 2**20
"""A preview JPEG is a few tens of KB; anything near this bound is not one."""
KEYPOINT_SHAPE = (137, 3)
Dim = Annotated[int, Field(ge=1, le=MAX_DIM)]


@pydantic_dataclass(frozen=True, config=WIRE_CONFIG)
class PreviewPerson:
    """One person of a preview: track id, score, box in preview pixels, and which row of
    the keypoints part is theirs (-1: none, e.g. keypoints made later by features)."""

    track_id: Annotated[int, Field(ge=0, le=2**31)]
    score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    box: tuple[Pixel, Pixel, Pixel, Pixel] = (0.0, 0.0, 0.0, 0.0)
    keypoints: Slot = -1


@pydantic_dataclass(frozen=True, config=WIRE_CONFIG)
class PreviewHeader:
    """What was analysed in one frame, and when: ``capture_time`` (the capture's
    ``time.monotonic()``) and ``analysed_time`` (detect done) let the page show how old the
    frame is and which part of that age is the pipeline's; ``media_time`` (the frame's time
    on the source's own timeline) is the video's clock, which a file's transcript lines wait
    for."""

    stream: Name
    seq: Count
    generation: Annotated[int, Field(ge=0, le=2**31)]
    capture_time: Seconds
    analysed_time: Seconds
    media_time: Seconds
    frame_hw: tuple[Dim, Dim]
    size_hw: tuple[Dim, Dim]
    persons: Annotated[tuple[PreviewPerson, ...], Field(max_length=MAX_PERSONS)] = ()
    keypoint_rows: Annotated[int, Field(ge=0, le=MAX_PERSONS)] = 0
    detector: Name | None = None
    version: Annotated[Literal[1], ExactInt] = PREVIEW_VERSION



_PREVIEW = TypeAdapter(PreviewHeader)


def encode_preview(header: PreviewHeader) -> bytes:
    """A preview header as the JSON bytes it travels as."""
    return _PREVIEW.dump_json(header)


@dataclass(frozen=True)
class Preview:
    """A validated preview: its header, the JPEG bytes, the keypoints (or None)."""

    header: PreviewHeader
    jpeg: bytes
    keypoints: np.ndarray | None


def decode_preview(parts: Sequence[bytes], streams: Collection[str]) -> Preview:
    """The preview in ``parts``, or :class:`WireError` (``parts``, ``schema``,
    ``unknown-stream``, ``buffers``, ``non-finite``)."""
    if len(parts) not in (3, 4):
        raise WireError(f"{len(parts)} parts; expected [stream, header, jpeg, keypoints?]",
                        "parts")
    try:
        header = _PREVIEW.validate_json(parts[1])
    except ValidationError as error:
        raise refusal(error, "preview header") from None
    if header.stream not in streams or parts[0] != header.stream.encode():
        raise WireError(f"stream {header.stream[:32]!r} is not one of this run's",
                        "unknown-stream")
    jpeg = bytes(parts[2])
    if not 4 <= len(jpeg) <= MAX_JPEG_BYTES or jpeg[:2] != b"\xff\xd8":
        raise WireError("the image part is not a JPEG of a bounded size", "buffers")
    rows = header.keypoint_rows
    keypoints = None
    if rows:
        if len(parts) != 4 or len(parts[3]) != rows * 137 * 3 * 4:
            raise WireError(f"keypoints part is not {rows} x 137 x 3 float32", "buffers")
        keypoints = np.frombuffer(parts[3], np.float32).reshape(rows, *KEYPOINT_SHAPE)
        if not np.isfinite(keypoints).all():
            raise WireError("keypoints hold NaN or infinity", "non-finite")
    elif len(parts) == 4:
        raise WireError("a keypoints part with keypoint_rows 0", "buffers")
    if any(p.keypoints >= rows for p in header.persons):
        raise WireError("a person points past the keypoint rows", "buffers")
    return Preview(header, jpeg, keypoints)


@pydantic_dataclass(frozen=True, config=WIRE_CONFIG)
class MonitorEvent:
    """A supervisor event (a stage started, died, restarted, hung...), for the page."""

    time: Seconds
    event: Name
    stage: Name
    index: Annotated[int, Field(ge=0, le=1024)]
    detail: Text = ""


@pydantic_dataclass(frozen=True, config=WIRE_CONFIG)
class MonitorSnapshot:
    """The supervisor's view of the run: each stage's last status (health, counters,
    figures), restarts per stage, the latest events."""

    time: Seconds
    stages: Annotated[dict[Name, StageStatus], Field(max_length=256)] = field(
        default_factory=dict)
    restarts: Annotated[dict[Name, Count], Field(max_length=256)] = field(default_factory=dict)
    events: Annotated[tuple[MonitorEvent, ...], Field(max_length=64)] = ()
    version: Annotated[Literal[1], ExactInt] = 1



_MONITOR = TypeAdapter(MonitorSnapshot)


def encode_monitor(snapshot: MonitorSnapshot) -> bytes:
    """A monitor snapshot as the JSON bytes it travels as."""
    return _MONITOR.dump_json(snapshot, fallback=str)


def monitor_dict(snapshot: MonitorSnapshot) -> dict[str, JsonValue]:
    """A monitor snapshot as JSON-ready values (what the page receives)."""
    return _MONITOR.dump_python(snapshot, mode="json")


def decode_monitor(parts: Sequence[bytes]) -> MonitorSnapshot:
    if len(parts) != 1:
        raise WireError(f"{len(parts)} parts; expected one snapshot", "parts")
    try:
        return _MONITOR.validate_json(parts[0])
    except ValidationError as error:
        raise refusal(error, "monitor snapshot") from None


def event_detail(details: Mapping[str, object]) -> str:
    """A supervisor event's details as one short line (``exit_code=1 restart_in_s=0.5``)."""
    return " ".join(f"{k}={v}" for k, v in details.items())[:200]
