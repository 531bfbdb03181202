"""The wire protocol between stages: ZeroMQ multipart ``[header, buffer, ...]``.

The header is a small, typed, versioned JSON record (:class:`Header`); each following part
is the raw bytes of one array that the header describes (name, dtype, shape). Large
buffers go out zero-copy (ZeroMQ keeps a reference to the numpy memory instead of copying
it), and the receiver views them with :func:`numpy.frombuffer`, so a 1 MB frame is never
copied on either side.

Any message that is not exactly this (wrong version, broken JSON, a missing field, a buffer
whose size does not match its shape) raises :class:`WireError`. Stages catch it, count the
message as malformed and drop it: one bad peer never crashes a stage.

Example:
    >>> header = Header(stream="demo", seq=3, generation=1, capture_time=10.0, media_time=0.1)
    >>> parts = encode(header, {"frame": np.zeros((2, 2, 3), np.uint8)})
    >>> decode(parts).arrays["frame"].shape
    (2, 2, 3)
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

PROTOCOL_VERSION = 2
"""Bumped on any change to :class:`Header`; a receiver drops other versions (counted).
2: a stamp carries the time its message arrived at the stage (``t_arrive``)."""

ZERO_COPY_BYTES = 64 * 1024
"""Buffers at least this big are sent without a copy; below it a copy is cheaper than
ZeroMQ's reference tracking."""

ALLOWED_DTYPES = frozenset({"uint8", "int32", "int64", "float16", "float32", "float64"})


class WireError(ValueError):
    """A message that does not follow the protocol; the receiver counts and drops it."""


class Kind(enum.StrEnum):
    """What a message carries. ``EOS`` (end of stream) is control: never dropped by a hop."""

    FRAME = "frame"
    EOS = "eos"


@dataclass(frozen=True)
class Stamp:
    """When one stage got a message off its socket (``t_arrive``), started the batch that
    held it (``t_in``) and sent its result on (``t_out``), in monotonic seconds. The gaps
    split a frame's latency into transfer (previous ``t_out`` to ``t_arrive``: ZeroMQ and
    the socket buffer), queue wait (``t_arrive`` to ``t_in``: the latest-wins inbox and
    the batch window) and compute (``t_in`` to ``t_out``); ``hidemo bench`` reports them."""

    stage: str
    t_in: float
    t_out: float
    t_arrive: float | None = None

    @property
    def arrived(self) -> float:
        return self.t_in if self.t_arrive is None else self.t_arrive


@dataclass(frozen=True)
class ArraySpec:
    """Describes one buffer part: its name, dtype and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * np.dtype(self.dtype).itemsize


@dataclass(frozen=True)
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
    ``meta`` is stage-specific JSON (the persons found, which engines had random weights).
    """

    stream: str
    seq: int
    generation: int
    capture_time: float
    media_time: float
    kind: Kind = Kind.FRAME
    source_fps: float = 0.0
    dropped: int = 0
    stamps: tuple[Stamp, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    version: int = PROTOCOL_VERSION

    def stamped(self, stage: str, t_in: float, t_out: float,
                t_arrive: float | None = None) -> Header:
        """A copy with one more per-stage stamp (arrival defaults to ``t_in``)."""
        arrived = t_in if t_arrive is None else t_arrive
        return replace(self, stamps=(*self.stamps, Stamp(stage, t_in, t_out, arrived)))

    def to_json(self, arrays: Sequence[ArraySpec] = ()) -> bytes:
        body = asdict(self)
        body["kind"] = str(self.kind)
        body["stamps"] = [[s.stage, s.t_in, s.t_out, s.arrived] for s in self.stamps]
        body["arrays"] = [[a.name, a.dtype, list(a.shape)] for a in arrays]
        return json.dumps(body, separators=(",", ":")).encode()


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


def encode(header: Header, arrays: Mapping[str, np.ndarray] | None = None) -> list[Any]:
    """Multipart frames for ``send_multipart(..., copy=False)``: header JSON, then buffers.

    Arrays are made C-contiguous (a view when they already are); buffers of at least
    :data:`ZERO_COPY_BYTES` are passed as memoryviews so ZeroMQ sends them without a copy.
    """
    specs: list[ArraySpec] = []
    buffers: list[Any] = []
    for name, array in (arrays or {}).items():
        data = np.ascontiguousarray(array)
        if data.dtype.name not in ALLOWED_DTYPES:
            raise ValueError(f"array {name!r} has dtype {data.dtype}; the wire carries "
                             f"{sorted(ALLOWED_DTYPES)}")
        specs.append(ArraySpec(name, data.dtype.name, tuple(int(n) for n in data.shape)))
        buffers.append(memoryview(data).cast("B") if data.nbytes >= ZERO_COPY_BYTES
                       else data.tobytes())
    return [header.to_json(specs), *buffers]


def decode(parts: Sequence[Any]) -> Message:
    """Parse multipart ``parts`` (bytes or zmq.Frame); raise :class:`WireError` if malformed."""
    if not parts:
        raise WireError("empty message")
    try:
        body = json.loads(_bytes(parts[0]))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise WireError(f"header is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise WireError("header is not a JSON object")
    if body.get("version") != PROTOCOL_VERSION:
        raise WireError(f"protocol version {body.get('version')!r}; this build speaks "
                        f"{PROTOCOL_VERSION}")
    header, specs = _header(body)
    if len(specs) != len(parts) - 1:
        raise WireError(f"header lists {len(specs)} arrays but {len(parts) - 1} buffers came")
    arrays = {}
    for spec, part in zip(specs, parts[1:], strict=True):
        buffer = _buffer(part)
        if buffer.nbytes != spec.nbytes:
            raise WireError(f"array {spec.name!r}: {buffer.nbytes} bytes for shape "
                            f"{spec.shape} {spec.dtype} ({spec.nbytes} bytes)")
        arrays[spec.name] = np.frombuffer(buffer, dtype=spec.dtype).reshape(spec.shape)
    return Message(header, arrays)


def _bytes(part: Any) -> bytes:
    return part if isinstance(part, bytes) else bytes(_buffer(part))


def _buffer(part: Any) -> memoryview:
    if isinstance(part, bytes | bytearray | memoryview):
        return memoryview(part)
    buffer = getattr(part, "buffer", None)  # zmq.Frame received with copy=False
    if buffer is None:
        raise WireError(f"message part of type {type(part).__name__} is not bytes")
    return memoryview(buffer)


def _field(body: dict[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = body.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise WireError(f"header field {name!r} is {value!r}; expected {kind}")
    return value


def _header(body: dict[str, Any]) -> tuple[Header, list[ArraySpec]]:
    number = (int, float)
    try:
        kind = Kind(body.get("kind"))
        stamps = tuple(Stamp(str(s), float(a), float(b), float(c))
                       for s, a, b, c in body.get("stamps", ()))
        specs = [ArraySpec(str(n), str(d), tuple(int(x) for x in shape))
                 for n, d, shape in body.get("arrays", ())]
    except (TypeError, ValueError) as error:
        raise WireError(f"bad header: {error}") from None
    for spec in specs:
        if spec.dtype not in ALLOWED_DTYPES or any(n < 0 for n in spec.shape):
            raise WireError(f"array {spec.name!r}: bad dtype {spec.dtype} or shape {spec.shape}")
    meta = body.get("meta", {})
    if not isinstance(meta, dict):
        raise WireError("header field 'meta' is not an object")
    header = Header(
        stream=_field(body, "stream", str), seq=_field(body, "seq", int),
        generation=_field(body, "generation", int),
        capture_time=float(_field(body, "capture_time", number)),
        media_time=float(_field(body, "media_time", number)), kind=kind,
        source_fps=float(_field(body, "source_fps", number)),
        dropped=_field(body, "dropped", int), stamps=stamps, meta=meta,
    )
    return header, specs
