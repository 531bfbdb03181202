"""Publishers apply only subscriptions that can match; the rest are counted, not kept."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.transport.subscriptions import GatedPub, open_gated_pub

STREAMS = ("cam0", "cam1")


def _settle(pub: GatedPub, subscriber: zmq.Socket, topic: bytes) -> bool:
    """Publish ``topic`` until ``subscriber`` gets it (True) or a second passes (False):
    subscriptions travel asynchronously, and each send first admits what has arrived."""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        pub.send_multipart([topic, b"x"])
        if subscriber.poll(50):
            subscriber.recv_multipart()
            return True
    return False


@settings(max_examples=25, deadline=None)
@given(topics=st.lists(st.binary(max_size=80), max_size=40))
def test_only_matching_subscriptions_are_applied_and_every_other_is_counted(
        topics: list[bytes]) -> None:
    context = zmq.Context()
    try:
        pub = open_gated_pub(context, topics=STREAMS, endpoint="predictions", stage="classify")
        pub.bind("inproc://pub")
        attacker = context.socket(zmq.XSUB)  # sends raw subscription messages
        attacker.connect("inproc://pub")
        for topic in topics:
            attacker.send(b"\x01" + topic)
        attacker.send(b"\x07not a subscription")
        time.sleep(0.05)
        read = pub.admit()
        allowed = {b"", *(s.encode() for s in STREAMS)}
        refused = sum(topic not in allowed for topic in topics) + 1
        assert read == len(topics) + 1
        assert pub.rejections is not None
        assert pub.rejections.total == refused
        # what was admitted still delivers; what was refused never does
        for topic in {b"cam0", b"zzz"}:
            pub.send_multipart([topic, b"payload"])
        got = []
        while attacker.poll(100):
            got.append(attacker.recv_multipart()[0])
        expected = []
        if b"" in topics:
            expected = [b"cam0", b"zzz"]
        elif b"cam0" in topics:
            expected = [b"cam0"]
        assert sorted(got) == sorted(expected)
    finally:
        context.destroy(linger=0)


def test_a_real_subscriber_gets_its_stream_and_nothing_else(tmp_path: Path) -> None:
    context = zmq.Context()
    try:
        pub = open_gated_pub(context, topics=STREAMS, endpoint="predictions", stage="classify")
        pub.bind(f"ipc://{tmp_path}/pub")
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.SUBSCRIBE, b"cam1")
        sub.connect(f"ipc://{tmp_path}/pub")
        assert _settle(pub, sub, b"cam1")
        pub.send_multipart([b"cam0", b"other stream"])
        pub.send_multipart([b"cam1", b"mine"])
        assert sub.poll(1000) and sub.recv_multipart() == [b"cam1", b"mine"]
        assert not sub.poll(200)
    finally:
        context.destroy(linger=0)


def _subscribe_many(endpoint: str, connections: int, per_connection: int, length: int,
                    sent: Any) -> None:
    """The attacker's process: distinct subscriptions of ``length`` bytes on several
    connections; ``sent`` is set once they are all out, then it stays connected."""
    context = zmq.Context()
    sockets = []
    for batch in range(connections):
        sub = context.socket(zmq.SUB)
        sub.setsockopt(zmq.SNDHWM, 100_000)
        sub.connect(endpoint)
        for i in range(per_connection):
            topic = (batch * per_connection + i).to_bytes(4, "big")
            sub.setsockopt(zmq.SUBSCRIBE, topic + b"y" * (length - 4))
        sockets.append(sub)
    time.sleep(1.0)  # on the wire
    sent.set()
    time.sleep(60)  # stay connected until killed
    context.destroy(linger=0)


def _publish(gated: bool, endpoint: str, ready: Any, sent: Any, result: Any) -> None:
    """The publisher's process (a fresh one, so no freed memory of earlier work hides
    growth): publish until the attack is out and a moment more, then report its RSS
    growth and the subscriptions it refused."""
    context = zmq.Context()
    pub = (open_gated_pub(context, topics=STREAMS, endpoint="predictions", stage="classify")
           if gated else context.socket(zmq.PUB))
    pub.setsockopt(zmq.RCVHWM, 100_000)
    pub.bind(endpoint)
    for _ in range(20):
        pub.send_multipart([b"cam0", b"x"])
    before = psutil.Process().memory_info().rss
    ready.set()
    while not sent.is_set():
        pub.send_multipart([b"cam0", b"x"])
        time.sleep(0.01)
    for _ in range(100):  # takes in what is still on its way
        pub.send_multipart([b"cam0", b"x"])
        time.sleep(0.01)
    grown = (psutil.Process().memory_info().rss - before) / 2**20
    refused = pub.rejections.total if isinstance(pub, GatedPub) and pub.rejections else 0
    result.put((grown, refused))
    context.destroy(linger=0)


def _attack(tmp_path: Path, gated: bool, length: int) -> tuple[float, int]:
    """RSS growth (MiB) of a publisher under 2,000 distinct subscriptions of ``length``
    bytes from another process, and how many it refused."""
    spawn = multiprocessing.get_context("spawn")
    endpoint = f"ipc://{tmp_path}/pub-{gated}-{length}"
    ready, sent, result = spawn.Event(), spawn.Event(), spawn.Queue()
    publisher = spawn.Process(target=_publish, args=(gated, endpoint, ready, sent, result))
    attacker = spawn.Process(target=_subscribe_many, args=(endpoint, 4, 500, length, sent))
    publisher.start()
    try:
        assert ready.wait(60), "the publisher did not start"
        attacker.start()
        return result.get(timeout=120)
    finally:
        for process in (attacker, publisher):
            process.kill()
            process.join()


@pytest.mark.slow
def test_thousands_of_distinct_subscriptions_cost_no_memory(tmp_path: Path) -> None:
    """What a plain PUB keeps per subscription (a trie node per byte) is what an attacker
    would grow. The gated publisher drops a connection whose subscription is longer than
    any topic it publishes before storing it, and refuses (and counts) the short ones. The
    plain PUB under the long attack shows the test can tell."""
    grown, refused = _attack(tmp_path, gated=True, length=400)
    assert grown < 20, grown
    grown, refused = _attack(tmp_path, gated=True, length=4)
    assert grown < 20 and refused == 2000, (grown, refused)
    grown, _ = _attack(tmp_path, gated=False, length=400)
    assert grown > 20, grown
