"""Publishers apply only subscriptions that can match; the rest are counted, not kept."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import psutil
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.subscriptions import GatedPub, open_gated_pub

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


def _subscribe_many(endpoint: str, connections: int, per_connection: int,
                    length: int) -> None:
    """Another process: distinct subscriptions of ``length`` bytes on several connections."""
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
    time.sleep(30)  # stay connected until killed
    context.destroy(linger=0)


def _rss_growth_mb(pub: zmq.Socket, endpoint: str, length: int) -> float:
    """This process's RSS growth while another process sends 2,000 distinct subscriptions
    of ``length`` bytes to ``pub`` (which takes them in as it publishes)."""
    process = psutil.Process()
    before = process.memory_info().rss
    attacker = multiprocessing.get_context("spawn").Process(
        target=_subscribe_many, args=(endpoint, 4, 500, length))
    attacker.start()
    try:
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            pub.send_multipart([b"cam0", b"x"])
            if (isinstance(pub, GatedPub) and pub.rejections is not None
                    and pub.rejections.total >= 2000):
                break
            time.sleep(0.01)
        time.sleep(0.5)
        pub.send_multipart([b"cam0", b"x"])
        return (process.memory_info().rss - before) / 2**20
    finally:
        attacker.kill()
        attacker.join()


def test_thousands_of_distinct_subscriptions_cost_no_memory(tmp_path: Path) -> None:
    """What a plain PUB keeps per subscription (a trie node per byte) is what an attacker
    would grow. The gated publisher drops a connection whose subscription is longer than
    any topic it publishes before storing it, and refuses (and counts) the short ones. The
    plain PUB under the long attack shows the test can tell."""
    context = zmq.Context()
    try:
        gated = open_gated_pub(context, topics=STREAMS, endpoint="predictions",
                               stage="classify")
        gated.setsockopt(zmq.RCVHWM, 100_000)
        gated.bind(f"ipc://{tmp_path}/gated")
        assert _rss_growth_mb(gated, f"ipc://{tmp_path}/gated", length=400) < 20
        assert _rss_growth_mb(gated, f"ipc://{tmp_path}/gated", length=4) < 20
        assert gated.rejections is not None and gated.rejections.total >= 2000
        plain = context.socket(zmq.PUB)
        plain.setsockopt(zmq.RCVHWM, 100_000)
        plain.bind(f"ipc://{tmp_path}/plain")
        assert _rss_growth_mb(plain, f"ipc://{tmp_path}/plain", length=400) > 20
    finally:
        context.destroy(linger=0)
