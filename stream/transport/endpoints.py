"""The pipeline's socket addresses and how each side opens them, declared in :data:`LAYOUT`.

The pipeline side binds and whatever may come and go connects, so a restart never changes
an address: detect binds its input (captures connect) and its output (feature replicas
connect); classify binds its input, the predictions PUB, the credits PUB (unpaced captures
connect, :mod:`stream.transport.credits`) and the text SUB (the ASR stages and outside publishers
connect, so no stranger can stand in for the topic); the supervisor binds the status
socket every stage reports to. In fused placement each worker binds its own input,
credits, preview and record (:meth:`Endpoints.for_worker`), and classify no credits.
Internal hops use ipc in one private folder by default (no port clashes between runs, no
network exposure).

Every socket that receives has ``ZMQ_MAXMSGSIZE``: a peer that sends a bigger message is
disconnected by ZeroMQ before the message is buffered (it may reconnect), so one hostile or
broken peer cannot make a stage allocate gigabytes. The outside endpoints (predictions,
text) are CURVE-secured when :meth:`EndpointConfig.curve_on` says so
(:mod:`stream.transport.curve`).

Example:
    >>> Endpoints.for_config(EndpointConfig(), Path("/tmp/run")).detect_in
    'ipc:///tmp/run/detect-in'
    >>> LAYOUT["text"].bind.opened_by
    ('classify',)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import zmq
from pydantic.dataclasses import dataclass as pydantic_dataclass

from stream.config import EndpointConfig
from stream.transport.curve import (
    ClientKeys,
    CurveServer,
    RunKeys,
    Secure,
    client_security,
    serve_internal,
)
from stream.transport.subscriptions import GatedPub

INTERNAL = ("detect_in", "detect_out", "classify_in", "status", "credits", "preview",
            "monitor", "transcript", "results", "record")

PER_WORKER = ("detect_in", "credits", "preview", "record")
"""The endpoints each fused worker binds for itself (:meth:`Endpoints.for_worker`)."""

KiB = 2**10
MiB = 2**20
SUBSCRIPTION_MAX_BYTES = 512
"""What a PUB socket receives: subscriptions (topics are stream ids of at most 64
characters), never big; a bigger message drops the peer's connection."""
CURVE_HANDSHAKE_BYTES = 512
"""What a publisher's receive bound must allow on a CURVE socket: the handshake's INITIATE
command (vouch and metadata) is bounded by ``ZMQ_MAXMSGSIZE`` too."""
DEFAULT_MAX_BYTES = 64 * MiB
"""The limit of a receiving socket opened without one: the default frame-hop limit."""

Side = Literal["bind", "connect"]


@dataclass(frozen=True)
class SocketEnd:
    """One side of a hop: which processes open it, the socket type, its high-water mark
    (None: the configured ``high_water_mark``; a caller may raise it, e.g. to a batch)."""

    opened_by: tuple[str, ...]
    kind: int
    hwm: int | None


@dataclass(frozen=True)
class Hop:
    """One endpoint's layout. ``max_bytes`` bounds a message on the receiving side (None:
    ``max_frame_mb``, for the frame hops); ``outside`` endpoints face clients outside the
    pipeline and are CURVE-secured when the configuration says so."""

    bind: SocketEnd
    connect: SocketEnd
    max_bytes: int | None
    outside: bool = False

    def end(self, side: Side) -> SocketEnd:
        return self.bind if side == "bind" else self.connect


STAGES = ("capture", "detect", "features", "classify", "asr")
OUTSIDE = "outside client"
UI = "ui"
"""The web view's process (:mod:`stream.ui`): a subscriber of the pipeline's outputs."""
RECORDER = "recorder"
"""The recorder's process (:mod:`stream.record`): writes the annotated video."""

LAYOUT: Mapping[str, Hop] = MappingProxyType({
    "detect_in": Hop(SocketEnd(("detect",), zmq.PULL, None),
                     SocketEnd(("capture",), zmq.PUSH, None), max_bytes=None),
    "detect_out": Hop(SocketEnd(("detect",), zmq.PUSH, None),
                      SocketEnd(("features",), zmq.PULL, None), max_bytes=None),
    "classify_in": Hop(SocketEnd(("classify",), zmq.PULL, None),
                       SocketEnd(("features",), zmq.PUSH, None), max_bytes=None),
    "status": Hop(SocketEnd(("supervisor",), zmq.PULL, 1000),
                  SocketEnd(STAGES, zmq.PUSH, 10), max_bytes=1 * MiB),
    "credits": Hop(SocketEnd(("classify",), zmq.PUB, 100),
                   SocketEnd(("capture",), zmq.SUB, 100), max_bytes=4 * KiB),
    "predictions": Hop(SocketEnd(("classify",), zmq.PUB, 1000),
                       SocketEnd(("supervisor", RECORDER, OUTSIDE), zmq.SUB, 1000),
                       max_bytes=1 * MiB,
                       outside=True),
    "text": Hop(SocketEnd(("classify",), zmq.SUB, 1000),
                SocketEnd(("asr", OUTSIDE), zmq.PUB, 1000), max_bytes=64 * KiB,
                outside=True),
    # the web view's topics (bound only with ``ui.enabled``): PUB, queue of 1-2, never waited
    # on (NOBLOCK), so a slow or absent view costs the publisher nothing
    "preview": Hop(SocketEnd(("detect",), zmq.PUB, 1),
                   SocketEnd((UI,), zmq.SUB, 2), max_bytes=4 * MiB),
    "monitor": Hop(SocketEnd(("supervisor",), zmq.PUB, 2),
                   SocketEnd((UI,), zmq.SUB, 2), max_bytes=1 * MiB),
    "transcript": Hop(SocketEnd(("classify",), zmq.PUB, 100),
                      SocketEnd((UI, "supervisor", RECORDER), zmq.SUB, 100),
                      max_bytes=64 * KiB),
    # the recorder's frames (bound only with ``record.path``): raw frames, bounded like the
    # frame hops; a PUB with a queue of 2, never waited on (NOBLOCK): drops are counted
    "record": Hop(SocketEnd(("detect",), zmq.PUB, 2),
                  SocketEnd((RECORDER,), zmq.SUB, 2), max_bytes=None),
    # classify's predictions for the supervisor's own view, over a private hop: the public
    # predictions endpoint may be bound by anyone on the machine before classify binds it
    "results": Hop(SocketEnd(("supervisor",), zmq.PULL, 1000),
                   SocketEnd(("classify",), zmq.PUSH, 1000), max_bytes=1 * MiB),
})
"""Every endpoint of a run: who binds, who connects, socket types, queues, message bounds."""


@pydantic_dataclass(frozen=True)
class Endpoints:
    """Every address of one run, the stream ids its publishers admit as subscriptions
    (``topics``; None: any), and the run's internal CURVE keys (``keys``; None: the
    internal hops are private without them, in the run's own ipc folder)."""

    detect_in: str
    detect_out: str
    classify_in: str
    status: str
    credits: str
    predictions: str
    text: str
    preview: str
    monitor: str
    transcript: str
    results: str
    record: str
    topics: tuple[str, ...] | None = None
    keys: RunKeys | None = None

    @classmethod
    def for_config(cls, config: EndpointConfig, run_dir: Path,
                   streams: Sequence[str] | None = None,
                   keys: RunKeys | None = None) -> Endpoints:
        if config.transport == "ipc":
            base = config.ipc_dir or run_dir
            internal = {name: f"ipc://{base}/{name.replace('_', '-')}" for name in INTERNAL}
        else:
            internal = {name: f"tcp://127.0.0.1:{config.tcp_base_port + i}"
                        for i, name in enumerate(INTERNAL)}
        return cls(**internal, predictions=config.predictions, text=config.text,
                   topics=None if streams is None else tuple(streams), keys=keys)

    def for_worker(self, worker: int, config: EndpointConfig) -> Endpoints:
        """The endpoints fused worker ``worker`` binds, and its captures connect to: its
        own input (``detect_in``), credits, preview and record; worker 0 keeps the run's
        own.
        Over ipc the address takes the worker's number; over tcp, ports after the
        internal block (:data:`INTERNAL`), :data:`PER_WORKER` for each further worker."""
        if worker == 0:
            return self
        own: dict[str, str] = {}
        for offset, name in enumerate(PER_WORKER):
            address = getattr(self, name)
            if address.startswith("ipc://"):
                own[name] = f"{address}-{worker}"
            else:
                port = (config.tcp_base_port + len(INTERNAL)
                        + (worker - 1) * len(PER_WORKER) + offset)
                own[name] = f"tcp://127.0.0.1:{port}"
        return replace(self, **own)


def max_message_bytes(name: str, config: EndpointConfig) -> int:
    """The largest message the receiving side of endpoint ``name`` accepts."""
    limit = LAYOUT[name].max_bytes
    return config.max_frame_bytes if limit is None else limit


def secured(endpoints: Endpoints, config: EndpointConfig) -> list[str]:
    """The outside endpoints of this run that are CURVE-secured."""
    return [name for name, hop in LAYOUT.items()
            if hop.outside and config.curve_on(getattr(endpoints, name))]


def start_curve(context: zmq.Context, endpoints: Endpoints,
                config: EndpointConfig) -> CurveServer | None:
    """The CURVE server of the process that binds the outside endpoints (classify), started
    on ``context``; None when no endpoint of this run is secured."""
    names = secured(endpoints, config)
    if not names:
        return None
    if config.curve is None:  # EndpointConfig refuses this; kept for hand-made configs
        raise ValueError(f"endpoints {names} need CURVE keys; make them with "
                         f"`hidemo keys --out DIR`")
    return CurveServer.start(context, config.curve)


def open_endpoint(context: zmq.Context, endpoints: Endpoints, name: str, side: Side,
                  config: EndpointConfig, *, hwm: int | None = None, sndbuf: int | None = None,
                  curve: CurveServer | None = None) -> zmq.Socket:
    """The ``side`` of endpoint ``name`` as :data:`LAYOUT` declares it, bound or connected.

    ``hwm`` overrides the layout's high-water mark. On a CURVE-secured outside endpoint the
    binding side needs the running ``curve`` server (its authenticator admits the clients);
    the connecting side (the pipeline's own subscriber) uses the configured client keys.
    Refuses to open a secured endpoint without CURVE rather than open it unprotected.

    Example:
        >>> sub = open_endpoint(context, endpoints, "predictions", "connect",
        ...                     config.endpoints)  # doctest: +SKIP
    """
    hop = LAYOUT[name]
    end = hop.end(side)
    address = getattr(endpoints, name)
    secure: Secure | None = None
    if not hop.outside and endpoints.keys is not None:
        secure = (serve_internal(context, endpoints.keys) if side == "bind"
                  else endpoints.keys.connect)
    elif hop.outside and config.curve_on(address):
        if side == "bind":
            if curve is None:
                raise ValueError(f"endpoint {name} {address!r} needs CURVE: start a "
                                 f"CurveServer on this context first")
            secure = partial(curve.secure, endpoint=name)
        else:
            if config.curve is None:
                raise ValueError(f"endpoint {name} {address!r} needs CURVE keys; make them "
                                 f"with `hidemo keys --out DIR`")
            secure = client_security(ClientKeys.from_config(config.curve))
    if hwm is None:
        hwm = config.high_water_mark if end.hwm is None else end.hwm
    if side == "connect":
        address = connect_address(address)
    socket = None
    if end.kind == zmq.PUB:  # subscriptions admitted only when they can match
        socket = context.socket(zmq.XPUB, socket_class=GatedPub).gate(
            endpoints.topics, name, end.opened_by[0])
    return open_socket(context, end.kind, address, bind=side == "bind", hwm=hwm, sndbuf=sndbuf,
                       max_bytes=max_message_bytes(name, config), secure=secure,
                       socket=socket)


def connect_address(endpoint: str) -> str:
    """Where a process on this machine connects to reach ``endpoint``: a wildcard bind
    (``tcp://*:5560``, ``0.0.0.0``, ``[::]``) is reached on loopback, since ZeroMQ cannot
    connect to a wildcard.

    Example:
        >>> connect_address("tcp://*:5560")
        'tcp://127.0.0.1:5560'
    """
    scheme, _, rest = endpoint.partition("://")
    host, sep, port = rest.rpartition(":")
    if scheme != "tcp" or not sep:
        return endpoint
    loopback = {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]"}.get(host)
    return endpoint if loopback is None else f"tcp://{loopback}:{port}"


def open_socket(context: zmq.Context, kind: int, endpoint: str, *, bind: bool,
                hwm: int = 2, linger_ms: int = 0, sndbuf: int | None = None,
                max_bytes: int | None = None, secure: Secure | None = None,
                socket: zmq.Socket | None = None) -> zmq.Socket:
    """A socket with small high-water marks, no linger and a bound on what it receives.

    Small queues keep frames from hiding in ZeroMQ buffers; zero linger lets a stage exit
    at once instead of waiting to flush to a peer that may be gone. ``sndbuf`` caps the
    kernel's send buffer (bytes), where frames hide too once ZeroMQ has written them.
    ``max_bytes`` is the ``ZMQ_MAXMSGSIZE`` of a receiving socket (default
    :data:`DEFAULT_MAX_BYTES`); a PUB only receives subscriptions, bounded by
    :data:`SUBSCRIPTION_MAX_BYTES`. ``secure`` sets CURVE options before bind or connect.
    ``socket`` is a new socket of ``kind``'s family made by the caller (a
    :class:`~stream.transport.subscriptions.GatedPub` for a PUB), else one is made here.
    """
    if socket is None:
        socket = context.socket(kind)
    socket.setsockopt(zmq.SNDHWM, hwm)
    socket.setsockopt(zmq.RCVHWM, hwm)
    socket.setsockopt(zmq.LINGER, linger_ms)
    if sndbuf is not None:
        socket.setsockopt(zmq.SNDBUF, sndbuf)
    if kind in (zmq.PUB, zmq.XPUB):
        if socket.getsockopt(zmq.MAXMSGSIZE) < 0:  # unless the caller bounded it closer
            socket.setsockopt(zmq.MAXMSGSIZE, SUBSCRIPTION_MAX_BYTES)
    elif kind != zmq.PUSH:  # every other type receives
        socket.setsockopt(zmq.MAXMSGSIZE, DEFAULT_MAX_BYTES if max_bytes is None else max_bytes)
    if secure is not None:
        secure(socket)
        if kind in (zmq.PUB, zmq.XPUB) and socket.getsockopt(zmq.MAXMSGSIZE) < \
                CURVE_HANDSHAKE_BYTES:  # the bound applies to CURVE's INITIATE command too
            socket.setsockopt(zmq.MAXMSGSIZE, CURVE_HANDSHAKE_BYTES)
    if bind:
        if endpoint.startswith("ipc://"):
            Path(endpoint[len("ipc://"):]).parent.mkdir(parents=True, exist_ok=True)
        socket.bind(endpoint)
    else:
        socket.connect(endpoint)
    return socket
