"""The wire protocol between stages: ZeroMQ multipart ``[header, buffer, ...]``.

The header is a small, typed, versioned JSON record (:class:`Envelope`: a :class:`Header`
plus one :class:`ArraySpec` per buffer); each following part is the raw bytes of one array.
Large buffers go out zero-copy (ZeroMQ keeps a reference to the numpy memory instead of
copying it), and the receiver views them with :func:`numpy.frombuffer`, so a 1 MB frame is
never copied on either side.

Every byte that arrives is untrusted. The records are pydantic dataclasses validated in
strict mode with bounds (finite, ranged numbers; short strings; short lists; at most
:data:`MAX_DIMS` dimensions of at most :data:`MAX_DIM` each), and pydantic's JSON parser
refuses deep nesting and huge integers itself. :class:`WireRules` then checks what needs
context: the stream id is one the run configured, the buffers are exactly those the header
lists, and float arrays hold finite numbers. Anything else raises :class:`WireError` with a
short ``reason`` (``not-json``, ``version``, ``schema``, ``unknown-stream``, ``buffers``,
``size``, ``non-finite``...); stages count rejections per reason and go on.

Example:
    >>> header = Header(stream="demo", seq=3, generation=1, capture_time=10.0, media_time=0.1)
    >>> parts = encode(header, {"frame": np.zeros((2, 2, 3), np.uint8)})
    >>> decode(parts).arrays["frame"].shape
    (2, 2, 3)
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Literal, Protocol

import numpy as np
from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

PROTOCOL_VERSION = 4
"""Bumped on any change to :class:`Header`; a receiver drops other versions (counted).
2: a stamp carries the time its message arrived at the stage (``t_arrive``).
3: typed, bounded records (``meta`` is :class:`FrameMeta`); stamps are objects.
4: ``FrameMeta.keypoints`` says where keypoints came from; detect may ship each person's
keypoints (``Person.keypoints`` is then a row of detect's ``keypoints`` array)."""

ZERO_COPY_BYTES = 64 * 1024
"""Buffers at least this big are sent without a copy; below it a copy is cheaper than
ZeroMQ's reference tracking."""

ALLOWED_DTYPES = frozenset({"uint8", "int32", "int64", "float16", "float32", "float64"})
FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})

MAX_SECONDS = 1e9
"""Upper bound of any time on the wire (monotonic or media seconds: 31 years)."""
class Frame(Protocol):
    """A message part received with ``copy=False`` (``zmq.Frame``): its bytes in ``buffer``."""

    @property
    def buffer(self) -> memoryview: ...


Part = bytes | bytearray | memoryview | Frame
"""One part of a multipart message as a socket gives it."""

MAX_COUNT = 2**53
"""Upper bound of sequence numbers and counters (exact in a float64, as JSON readers use).
A count read off the wire above it is refused; a count this program reports (summed over
generations, restarts or a hostile peer's absurd sequence numbers) saturates at it:
:func:`saturate`, :data:`Tally`, :func:`saturated`."""
MAX_PERSONS = 64
"""Persons one message may carry (``detect.max_persons`` is far below)."""
MAX_STAMPS = 16
MAX_DIMS = 4
MAX_DIM = 1 << 16
MAX_ARRAYS = MAX_PERSONS + 4
MAX_PIXELS = 1e6
"""Bound of box coordinates and crop offsets (pixels; frames are far smaller)."""

def saturate(count: object) -> object:
    """``count`` capped at :data:`MAX_COUNT` when it is an integer (anything else is left
    for validation to refuse): the one rule every reported count follows."""
    if isinstance(count, int) and not isinstance(count, bool) and count > MAX_COUNT:
        return MAX_COUNT
    return count


def saturated(record: object) -> object:
    """``record`` (dicts, lists and tuples of JSON values) with every integer capped by
    :func:`saturate`: applied where a record leaves its stage (a status report, a JSONL
    line), so no count can exceed the bound its schema states, whichever field holds it."""
    if isinstance(record, dict):
        return {key: saturated(value) for key, value in record.items()}
    if isinstance(record, list | tuple):
        return [saturated(value) for value in record]
    return saturate(record)


def _exact_int(value: object) -> object:
    """Refuse a version that is not an ``int`` (``4.0``, ``True``): a ``Literal`` alone
    compares by equality, and ``4.0 == 4``."""
    if type(value) is not int:
        raise ValueError(f"the version must be an integer, not {type(value).__name__}")
    return value


ExactInt = BeforeValidator(_exact_int)
"""Put on a ``version`` field next to its ``Literal``: only that integer passes."""

WIRE_CONFIG = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
"""Strict (no silent coercion of ``"7"`` to 7), closed (unknown fields are errors), finite."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Text = Annotated[str, StringConstraints(max_length=4096)]
Seconds = Annotated[float, Field(ge=0.0, le=MAX_SECONDS)]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Tally = Annotated[int, Field(ge=0, le=MAX_COUNT), BeforeValidator(saturate)]
"""A count a record of this program reports: one above :data:`MAX_COUNT` is saturated,
not refused (:class:`Count` refuses it: for what arrives)."""
Pixel = Annotated[float, Field(ge=-MAX_PIXELS, le=MAX_PIXELS)]
PixelInt = Annotated[int, Field(ge=-int(MAX_PIXELS), le=int(MAX_PIXELS))]
Slot = Annotated[int, Field(ge=-1, le=MAX_PERSONS)]
"""A row of a per-person array (``-1``: none for this person)."""


class WireError(ValueError):
    """A message that does not follow the protocol; the receiver counts and drops it.
    ``reason`` is a short, fixed word to count by; the text is for a (rate-limited) log."""

    def __init__(self, message: str, reason: str = "schema") -> None:
        super().__init__(message)
        self.reason = reason


class Kind(enum.StrEnum):
    """What a message carries. ``EOS`` (end of stream) is control: never dropped by a hop."""

    FRAME = "frame"
    EOS = "eos"


@pydantic_dataclass(frozen=True, config=WIRE_CONFIG)
class Stamp:
    """When one stage got a message off its socket (``t_arrive``), started the batch that
    held it (``t_in``) and sent its result on (``t_out``), in monotonic seconds. The gaps
    split a frame's latency into transfer (previous ``t_out`` to ``t_arrive``: ZeroMQ and
    the socket buffer), queue wait (``t_arrive`` to ``t_in``: the latest-wins inbox and
    the batch window) and compute (``t_in`` to ``t_out``); ``hidemo bench`` reports them."""

    stage: Name
    t_in: Seconds
    t_out: Seconds
    t_arrive: Seconds | None = None

    @property
    def arrived(self) -> float:
        return self.t_in if self.t_arrive is None else self.t_arrive


@pydantic_dataclass(frozen=True, config=WIRE_CONFIG)
class Person:
    """One person in a frame. Detect fills the box, score, track id and crop offset (the
    crop itself is buffer ``crop{i}``, ``i`` the person's position) and, when its
    perception core made keypoints, which row of its ``keypoints`` array is this person's;
    features sets which row of its own ``image`` and ``keypoints`` arrays is this person's
    (``-1``: none for this person in this frame)."""

    track_id: Annotated[int, Field(ge=0, le=2**31)]
    score: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    box: tuple[Pixel, Pixel, Pixel, Pixel] = (0.0, 0.0, 0.0, 0.0)
    offset: tuple[PixelInt, PixelInt] = (0, 0)
    image: Slot = -1
    keypoints: Slot = -1


@pydantic_dataclass(frozen=True, config=WIRE_CONFIG)
class FrameMeta:
    """What stages add to a frame: where it came from, the persons found, which engines
    had random weights (every prediction says so), and why a stream ended (EOS)."""

    source: Text | None = None
    persons: Annotated[tuple[Person, ...], Field(max_length=MAX_PERSONS)] = ()
    frame_hw: tuple[Annotated[int, Field(ge=0, le=MAX_DIM)],
                    Annotated[int, Field(ge=0, le=MAX_DIM)]] | None = None
    detector: Name | None = None
    keypoints: Literal["mediapipe", "engines"] | None = None
    """Where keypoints came from: MediaPipe on the crop, or the perception core's engines."""
    random_weights: Annotated[tuple[Name, ...], Field(max_length=8)] = ()
    reason: Text | None = None


@pydantic_dataclass(frozen=True, config=WIRE_CONFIG)
class Header:
    """The typed header of every message.

    ``seq`` counts the frames a capture emitted in session ``generation`` (a new generation
    starts each time a source is (re)opened, and ``seq`` restarts at 0), so downstream can
    tell a lost frame (a gap) from a new session. ``capture_time`` is ``time.monotonic()``
    in the capture process (system-wide on Linux, so comparable across processes);
    ``media_time`` is the frame's time on the source's own timeline (windows use it, so a
    file read faster than real time still gives correct windows). ``dropped`` counts this
    stream's frames that hops dropped on purpose (latest-wins, downstream blocked) since
    the previous message of the stream reached here; a gap it does not explain is a loss.
    """

    stream: Name
    seq: Count
    generation: Annotated[int, Field(ge=0, le=2**31)]
    capture_time: Seconds
    media_time: Seconds
    kind: Kind = Kind.FRAME
    source_fps: Annotated[float, Field(ge=0.0, le=1000.0)] = 0.0
    dropped: Count = 0
    stamps: Annotated[tuple[Stamp, ...], Field(max_length=MAX_STAMPS)] = ()
    meta: FrameMeta = field(default_factory=FrameMeta)
    version: Annotated[Literal[4], ExactInt] = PROTOCOL_VERSION

    def stamped(self, stage: str, t_in: float, t_out: float,
                t_arrive: float | None = None) -> Header:
        """A copy with one more per-stage stamp (arrival defaults to ``t_in``)."""
        arrived = t_in if t_arrive is None else t_arrive
        return replace(self, stamps=(*self.stamps, Stamp(stage, t_in, t_out, arrived)))

    def with_meta(self, **changes: object) -> Header:
        """A copy whose :class:`FrameMeta` has ``changes``."""
        return replace(self, meta=replace(self.meta, **changes))


@pydantic_dataclass(frozen=True, config=WIRE_CONFIG)
class ArraySpec:
    """Describes one buffer part: its name, dtype and shape."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    dtype: Literal["uint8", "int32", "int64", "float16", "float32", "float64"]
    shape: Annotated[tuple[Annotated[int, Field(ge=0, le=MAX_DIM)], ...],
                     Field(max_length=MAX_DIMS)]

    @property
    def nbytes(self) -> int:
        count = 1
        for n in self.shape:  # Python ints: no overflow, whatever the shape says
            count *= n
        return count * np.dtype(self.dtype).itemsize


@pydantic_dataclass(frozen=True, config=WIRE_CONFIG)
class Envelope:
    """The first part of a message: the header and the arrays that follow it."""

    header: Header
    arrays: Annotated[tuple[ArraySpec, ...], Field(max_length=MAX_ARRAYS)] = ()


_ENVELOPE = TypeAdapter(Envelope)


@dataclass(frozen=True)
class Message:
    """A decoded message: its header and its arrays (read-only views on the received bytes).
    ``arrived`` is when the receiving stage took it off its socket (local, never sent)."""

    header: Header
    arrays: dict[str, np.ndarray]
    arrived: float | None = None

    @property
    def is_control(self) -> bool:
        return self.header.kind is not Kind.FRAME


def encode(header: Header,
           arrays: Mapping[str, np.ndarray] | None = None) -> list[bytes | memoryview]:
    """Multipart frames for ``send_multipart(..., copy=False)``: header JSON, then buffers.

    Arrays are made C-contiguous (a view when they already are); buffers of at least
    :data:`ZERO_COPY_BYTES` are passed as memoryviews so ZeroMQ sends them without a copy.
    """
    specs: list[ArraySpec] = []
    buffers: list[bytes | memoryview] = []
    for name, array in (arrays or {}).items():
        data = np.ascontiguousarray(array)
        if data.dtype.name not in ALLOWED_DTYPES:
            raise ValueError(f"array {name!r} has dtype {data.dtype}; the wire carries "
                             f"{sorted(ALLOWED_DTYPES)}")
        specs.append(ArraySpec(name, data.dtype.name, tuple(int(n) for n in data.shape)))
        buffers.append(memoryview(data).cast("B") if data.nbytes >= ZERO_COPY_BYTES
                       else data.tobytes())
    return [_ENVELOPE.dump_json(Envelope(header, tuple(specs))), *buffers]


@dataclass(frozen=True)
class WireRules:
    """What a receiver checks beyond the schema: the streams the run configured (None:
    any; tests and tools), and the largest total of buffer bytes one message may carry."""

    streams: Collection[str] | None = None
    max_bytes: int = 64 * 1024 * 1024

    def decode(self, parts: Sequence[Part]) -> Message:
        """Parse multipart ``parts`` (bytes or zmq.Frame); raise :class:`WireError`."""
        if not parts:
            raise WireError("empty message", "empty")
        if len(parts) - 1 > MAX_ARRAYS:
            raise WireError(f"{len(parts)} parts; at most {MAX_ARRAYS + 1}", "buffers")
        envelope = _envelope(_buffer(parts[0]))
        header = envelope.header
        if self.streams is not None and header.stream not in self.streams:
            raise WireError(f"stream {header.stream[:32]!r} is not one of this run's",
                            "unknown-stream")
        specs = envelope.arrays
        if len(specs) != len(parts) - 1:
            raise WireError(f"header lists {len(specs)} arrays but {len(parts) - 1} "
                            "buffers came", "buffers")
        if len({s.name for s in specs}) != len(specs):
            raise WireError("two arrays share a name", "buffers")
        if sum(s.nbytes for s in specs) > self.max_bytes:
            raise WireError(f"arrays total over {self.max_bytes} bytes", "size")
        arrays = {}
        for spec, part in zip(specs, parts[1:], strict=True):
            buffer = _buffer(part)
            if buffer.nbytes != spec.nbytes:
                raise WireError(f"array {spec.name!r}: {buffer.nbytes} bytes for shape "
                                f"{spec.shape} {spec.dtype} ({spec.nbytes} bytes)", "size")
            array = np.frombuffer(buffer, dtype=spec.dtype).reshape(spec.shape)
            if spec.dtype in FLOAT_DTYPES and not np.isfinite(array).all():
                raise WireError(f"array {spec.name!r} holds NaN or infinity", "non-finite")
            arrays[spec.name] = array
        return Message(header, arrays)


ANY_STREAM = WireRules()


def decode(parts: Sequence[Part]) -> Message:
    """:meth:`WireRules.decode` accepting any stream id (tests and tools)."""
    return ANY_STREAM.decode(parts)


def _envelope(raw: memoryview) -> Envelope:
    try:
        return _ENVELOPE.validate_json(bytes(raw))
    except ValidationError as error:
        raise refusal(error, "bad header") from None


def refusal(error: ValidationError, what: str) -> WireError:
    """A :class:`WireError` for the first problem pydantic found, with its reason
    (``not-json``, ``version`` or ``schema``) and a short text that never echoes the input
    (it may be huge or hostile). Every untrusted record of the pipeline reports this way."""
    first = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(p) for p in first["loc"])
    if first["type"] == "json_invalid":
        reason = "not-json"
    elif first["loc"][-1:] == ("version",):
        reason = "version"
    else:
        reason = "schema"
    return WireError(f"{what}: {where or 'message'}: {first['msg']}"[:200], reason)


def _buffer(part: Part) -> memoryview:
    if isinstance(part, bytes | bytearray | memoryview):
        return memoryview(part)
    buffer = getattr(part, "buffer", None)  # zmq.Frame received with copy=False
    if buffer is None:
        raise WireError(f"message part of type {type(part).__name__} is not bytes", "buffers")
    return memoryview(buffer)
