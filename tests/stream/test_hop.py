"""Latest-wins inboxes, batching and non-blocking sends: drops are counted and carried."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zmq

from stream.hop import BatchPolicy, LatestInbox, Sender
from stream.wire import Header, Kind, Message, decode


def message(stream: str, seq: int, dropped: int = 0, kind: Kind = Kind.FRAME) -> Message:
    return Message(Header(stream=stream, seq=seq, generation=1, capture_time=float(seq),
                          media_time=seq / 10, dropped=dropped, kind=kind), {})


def test_latest_wins_keeps_the_newest_and_carries_the_drop_count() -> None:
    inbox = LatestInbox(depth=1)
    for seq in range(5):
        inbox.offer(message("a", seq, dropped=1 if seq == 2 else 0))
    inbox.offer(message("b", 0))
    assert inbox.dropped == {"a": 4}
    batch = inbox.take(8)
    kept = {m.header.stream: m.header for m in batch}
    assert kept["a"].seq == 4
    # frames 0-3 dropped here, plus the one frame 2 said was dropped before it
    assert kept["a"].dropped == 5
    assert kept["b"].dropped == 0
    assert len(inbox) == 0


def test_depth_two_keeps_order_and_counts() -> None:
    inbox = LatestInbox(depth=2)
    for seq in range(4):
        inbox.offer(message("a", seq))
    assert [m.header.seq for m in inbox.take(1)] == [2]
    assert [m.header.seq for m in inbox.take(1)] == [3]
    assert inbox.dropped == {"a": 2}


def test_control_messages_are_never_dropped() -> None:
    inbox = LatestInbox(depth=1)
    inbox.offer(message("a", 0))
    inbox.offer(message("a", 1, kind=Kind.EOS))
    inbox.offer(message("a", 2))
    assert [m.header.seq for m in inbox.take_control()] == [1]
    assert [m.header.seq for m in inbox.take(4)] == [2]


def test_batches_are_fair_across_streams() -> None:
    inbox = LatestInbox(depth=2)
    for seq in range(2):
        for stream in "abc":
            inbox.offer(message(stream, seq))
    first = inbox.take(3)
    assert sorted(m.header.stream for m in first) == ["a", "b", "c"]


def test_batch_closes_at_max_batch_or_max_delay() -> None:
    policy = BatchPolicy(max_batch=3, max_delay_ms=50)
    inbox = LatestInbox(depth=1)
    assert not policy.ready(inbox, 0.0)
    inbox.offer(message("a", 0), now=10.0)
    assert not policy.ready(inbox, 10.01)
    assert policy.wait_ms(inbox, 10.01, 100) == pytest.approx(40.0)
    assert policy.ready(inbox, 10.06)
    inbox.offer(message("b", 0), now=10.0)
    inbox.offer(message("c", 0), now=10.0)
    assert policy.ready(inbox, 10.0)


def test_a_send_with_no_room_is_a_counted_drop_carried_to_the_next(tmp_path: Path) -> None:
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.SNDHWM, 1)
    push.setsockopt(zmq.LINGER, 0)
    push.bind(f"ipc://{tmp_path}/nobody")  # bound, no peer yet: sends would block
    try:
        sender = Sender(push)
        frame = Message(message("a", 0).header, {"x": np.zeros(3, np.float32)})
        assert not sender.send(frame)
        assert sender.blocked == 1 and sender.pending_dropped == {"a": 1}
        pull = context.socket(zmq.PULL)
        pull.connect(f"ipc://{tmp_path}/nobody")
        assert pull.poll(10) == 0
        for _ in range(250):  # the connection completes asynchronously
            if sender.send(message("a", 1)):
                break
            zmq.select([], [], [], 0.02)
        assert pull.poll(5000), "nothing arrived"
        got = decode(pull.recv_multipart())
        assert got.header.dropped >= 1
    finally:
        context.destroy(linger=0)


def test_control_messages_wait_in_a_backlog_instead_of_being_dropped(tmp_path: Path) -> None:
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 0)
    push.bind(f"ipc://{tmp_path}/later")
    try:
        sender = Sender(push)
        assert not sender.send(message("a", 5, kind=Kind.EOS))
        assert len(sender.backlog) == 1 and sender.blocked == 0
        pull = context.socket(zmq.PULL)
        pull.connect(f"ipc://{tmp_path}/later")
        for _ in range(1500):  # generous: a loaded machine connects late, a broken one never
            sender.flush()
            if not sender.backlog:
                break
            zmq.select([], [], [], 0.02)
        assert not sender.backlog, "the end of stream was never sent"
        assert pull.poll(30_000), "the end of stream never arrived"
        assert decode(pull.recv_multipart()).header.kind is Kind.EOS
    finally:
        context.destroy(linger=0)


def test_drop_counts_saturate_instead_of_breaking_the_header_bound() -> None:
    from stream.wire import MAX_COUNT

    inbox = LatestInbox(depth=1)
    inbox.offer(message("a", 0, dropped=MAX_COUNT))  # a peer's absurd count
    inbox.offer(message("a", 1))  # pushes it out: its count travels on, saturated
    assert inbox.take(1)[0].header.dropped == MAX_COUNT


def test_classify_keeps_a_burst_of_features_frames_within_one_batch_window() -> None:
    """features can send two frames of a stream within classify's ``max_delay_ms`` (a frame
    with an image embedding, then a quick one without: ``keypoints: engines``). Classify's
    inbox must hold both, or the image embedding is lost (measured at depth 1: 0.21 images
    per second reached the windows instead of 2)."""
    from stream.config import ClassifyConfig

    inbox = LatestInbox(ClassifyConfig().queue_depth)
    for seq in range(3):  # a burst of three: all kept, in order, none counted dropped
        inbox.offer(message("a", seq))
    assert [m.header.seq for m in inbox.take(ClassifyConfig().max_batch or 8)] == [0, 1, 2]
    assert inbox.dropped == {}
