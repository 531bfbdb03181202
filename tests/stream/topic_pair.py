"""A text topic for tests: a SUB bound where the pipeline binds its topics, and a PUB
connected to it the way a publisher (the ASR, a subtitle feed) connects."""

from __future__ import annotations

import time
from pathlib import Path

import zmq


def topic_pair(context: zmq.Context, folder: Path, name: str = "text"
               ) -> tuple[zmq.Socket, zmq.Socket]:
    """``(sub, pub)`` on ``ipc://folder/name``, the subscription settled: a PUB drops what
    it sends before its subscriber's subscription has reached it."""
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.bind(f"ipc://{folder}/{name}")
    pub = context.socket(zmq.PUB)
    pub.connect(f"ipc://{folder}/{name}")
    sub.poll(300)
    time.sleep(0.3)
    return sub, pub
