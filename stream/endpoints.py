"""The pipeline's socket addresses and how each side opens them.

The long-lived side of a hop binds and the restartable side connects, so a restart never
changes an address: detect binds its input (captures connect) and its output (feature
replicas connect); classify binds its input, the predictions PUB and the credits PUB
(unpaced captures connect, :mod:`stream.credits`); the supervisor binds
the status socket every stage reports to. The text topic is the exception that proves the
rule: its publisher (an ASR or subtitle service) is the long-lived side, so it binds and
classify connects. Internal hops use ipc in one
private folder by default (no port clashes between runs, no network exposure).

Example:
    >>> Endpoints.for_config(EndpointConfig(), Path("/tmp/run")).detect_in
    'ipc:///tmp/run/detect-in'
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import zmq

from stream.config import EndpointConfig

INTERNAL = ("detect_in", "detect_out", "classify_in", "status", "credits")


@dataclass(frozen=True)
class Endpoints:
    detect_in: str
    detect_out: str
    classify_in: str
    status: str
    credits: str
    predictions: str
    text: str

    @classmethod
    def for_config(cls, config: EndpointConfig, run_dir: Path) -> Endpoints:
        if config.transport == "ipc":
            base = config.ipc_dir or run_dir
            internal = {name: f"ipc://{base}/{name.replace('_', '-')}" for name in INTERNAL}
        else:
            internal = {name: f"tcp://127.0.0.1:{config.tcp_base_port + i}"
                        for i, name in enumerate(INTERNAL)}
        return cls(**internal, predictions=config.predictions, text=config.text)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def open_socket(context: zmq.Context, kind: int, endpoint: str, *, bind: bool,
                hwm: int = 2, linger_ms: int = 0, sndbuf: int | None = None) -> zmq.Socket:
    """A socket with small high-water marks and no linger, bound or connected.

    Small queues keep frames from hiding in ZeroMQ buffers; zero linger lets a stage exit
    at once instead of waiting to flush to a peer that may be gone. ``sndbuf`` caps the
    kernel's send buffer (bytes), where frames hide too once ZeroMQ has written them.
    """
    socket = context.socket(kind)
    socket.setsockopt(zmq.SNDHWM, hwm)
    socket.setsockopt(zmq.RCVHWM, hwm)
    socket.setsockopt(zmq.LINGER, linger_ms)
    if sndbuf is not None:
        socket.setsockopt(zmq.SNDBUF, sndbuf)
    if bind:
        if endpoint.startswith("ipc://"):
            Path(endpoint[len("ipc://"):]).parent.mkdir(parents=True, exist_ok=True)
        socket.bind(endpoint)
    else:
        socket.connect(endpoint)
    return socket
