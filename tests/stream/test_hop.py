"""Latest-wins inboxes, batching and non-blocking sends: drops are counted and carried."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.transport.inbox import BatchPolicy, LatestInbox, Sender
from stream.transport.wire import Header, Kind, Message, decode


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
    from stream.transport.wire import MAX_COUNT

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


# ------------------------------------------------ frames held for a batch are not pushed out

def test_a_frame_held_for_a_batch_is_not_pushed_out_by_its_streams_next() -> None:
    """The stage idles, holding stream a's frame for a batch (``batching``), when a's next
    frame comes (its capture sent the held frame and the next one as two credits came
    back): the batch closes at once with the first, the second starts the next batch."""
    policy = BatchPolicy(max_batch=8, max_delay_ms=50)
    inbox = LatestInbox(depth=1)
    inbox.offer(message("a", 0), now=10.0)
    assert not policy.ready(inbox, 10.001)
    inbox.batching = True
    inbox.offer(message("a", 1), now=10.002)
    assert inbox.dropped == {} and inbox.deferred == 1 and len(inbox) == 2
    assert policy.ready(inbox, 10.002), "the batch closes instead of dropping"
    assert [m.header.seq for m in inbox.take(8)] == [0]
    assert not inbox.batching and inbox.deferred == 0
    assert [m.header.seq for m in inbox.take(8)] == [1]
    assert inbox.dropped == {} and len(inbox) == 0


def test_frames_that_came_while_the_stage_was_busy_stay_latest_wins() -> None:
    inbox = LatestInbox(depth=1)  # batching False: the stage was working
    inbox.offer(message("a", 0))
    inbox.offer(message("a", 1))
    assert inbox.dropped == {"a": 1} and inbox.deferred == 0
    assert [(m.header.seq, m.header.dropped) for m in inbox.take(8)] == [(1, 1)]


def test_a_set_aside_frame_whose_streams_frame_missed_the_batch_waits_its_turn() -> None:
    """More streams than ``max_batch``: a stream whose held frame did not fit keeps it, and
    the frame set aside behind it stays aside for the next batch (nothing pushed out)."""
    inbox = LatestInbox(depth=1)
    for stream in "abc":
        inbox.offer(message(stream, 0))
    inbox.batching = True
    inbox.offer(message("c", 1))
    assert [m.header.stream for m in inbox.take(2)] == ["a", "b"]
    assert inbox.deferred == 1 and inbox.dropped == {}
    assert [(m.header.stream, m.header.seq) for m in inbox.take(2)] == [("c", 0)]
    assert [(m.header.stream, m.header.seq) for m in inbox.take(2)] == [("c", 1)]
    assert len(inbox) == 0 and inbox.dropped == {}


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.tuples(st.just("arrive"), st.sampled_from("abc")),
                          st.just("idle turn"), st.just("busy turn")), max_size=80),
       st.integers(1, 3), st.integers(1, 3))
def test_the_stage_loops_inbox_drops_only_what_came_while_it_was_busy(
        events: list, depth: int, max_batch: int) -> None:
    """The stage loop's use of the inbox, modelled: frames arrive; an idle turn waits for a
    batch that is not due (``batching`` on), a busy turn takes a batch, as
    :func:`stream.stages.loop.run_inbox_loop` does (a turn with a frame set aside takes a batch:
    the policy is then ready). Every frame is taken once, dropped once or
    still waiting; each stream's frames are taken in order; and a frame is pushed out only
    by a frame that arrived while no batch was being held (the stage was busy)."""
    inbox = LatestInbox(depth=depth)
    seqs = {s: 0 for s in "abc"}
    taken: dict[str, list[int]] = {s: [] for s in "abc"}
    offered = 0
    for event in events:
        if event == "idle turn" and not inbox.deferred:
            inbox.batching = inbox.frames > 0
        elif event in ("idle turn", "busy turn"):  # a frame set aside closes the batch
            for m in inbox.take(max_batch):
                taken[m.header.stream].append(m.header.seq)
        else:
            stream = event[1]
            before = sum(inbox.dropped.values())
            holding = inbox.batching
            inbox.offer(message(stream, seqs[stream]))
            seqs[stream] += 1
            offered += 1
            if holding:
                assert sum(inbox.dropped.values()) == before, "a held frame pushed out"
    while len(inbox):  # drain what is left
        for m in inbox.take(max_batch):
            taken[m.header.stream].append(m.header.seq)
    assert sum(len(t) for t in taken.values()) + sum(inbox.dropped.values()) == offered
    for stream, seqs_taken in taken.items():
        assert seqs_taken == sorted(seqs_taken), stream
        assert len(set(seqs_taken)) == len(seqs_taken), stream


def test_the_stage_loop_batches_two_quick_frames_of_a_stream_instead_of_dropping_one(
        tmp_path: Path) -> None:
    """Real sockets through :func:`stream.stages.loop.run_inbox_loop`: a frame waits for its
    batch (300 ms) when its stream's next frame comes. Both are worked on, in order, and
    nothing is counted dropped (before: the first was pushed out)."""
    import threading
    import time

    from stream.stages.loop import run_inbox_loop
    from stream.transport.status import Rejections, StatusReporter
    from stream.transport.wire import ANY_STREAM, encode

    class Stop:
        done = False

        def __bool__(self) -> bool:
            return self.done

    context = zmq.Context()
    pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    for socket in (pull, push):
        socket.setsockopt(zmq.LINGER, 0)
    pull.bind(f"ipc://{tmp_path}/in")
    push.connect(f"ipc://{tmp_path}/in")
    reporter = StatusReporter(None, "detect", 0)
    batches: list[list[int]] = []
    stop = Stop()
    loop = threading.Thread(target=run_inbox_loop, args=(
        pull, LatestInbox(depth=1), BatchPolicy(max_batch=8, max_delay_ms=300)), kwargs={
        "admit": lambda m: None, "rules": ANY_STREAM,
        "rejections": Rejections("detect_in", "detect"), "reporter": reporter,
        "handlers": [],
        "on_frames": lambda batch: batches.append([m.header.seq for m in batch]),
        "on_control": lambda messages: None, "after_turn": lambda: None, "stop": stop})
    loop.start()
    try:
        push.send_multipart(encode(message("a", 0).header))
        deadline = time.monotonic() + 20
        while reporter.counters.received < 1 and time.monotonic() < deadline:
            time.sleep(0.002)  # frame 0 is in the inbox: its turn ends holding it
        push.send_multipart(encode(message("a", 1).header))
        deadline = time.monotonic() + 5
        while sum(map(len, batches)) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.done = True
        loop.join(5)
        context.destroy(linger=0)
    assert batches == [[0], [1]]
    assert reporter.counters.received == 2 and reporter.counters.dropped_in == 0


def test_an_offline_stream_keeps_its_in_flight_while_live_ones_stay_latest_wins() -> None:
    """Split placement, a stage busy with another stream's frame: a file's two frames in
    flight both wait (its capture never has more out), a camera's older one is pushed out."""
    inbox = LatestInbox(depth=1, keep={"file": 2})
    for seq in range(2):
        inbox.offer(message("file", seq))
        inbox.offer(message("cam", seq))
    assert inbox.dropped == {"cam": 1}
    assert inbox.depth_of("file") == 2 and inbox.depth_of("cam") == 1
    taken = [(m.header.stream, m.header.seq) for m in inbox.take(8)]
    assert sorted(taken) == [("cam", 1), ("file", 0), ("file", 1)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(["a", "b", "file"]).map(lambda s: ("arrive", s)),
                          st.just("idle turn"), st.just("busy turn")), max_size=80),
       st.integers(1, 3), st.integers(1, 3))
def test_an_offline_stream_within_its_credits_never_loses_a_frame_at_a_stage(
        events: list, in_flight: int, max_batch: int) -> None:
    """Split or fused, any interleaving of turns: a file stream whose capture sends only
    while fewer than ``in_flight`` of its frames are unfinished (credits) loses none at a
    stage's inbox, whatever the live streams beside it do."""
    inbox = LatestInbox(depth=1, keep={"file": in_flight})
    unfinished = 0
    sent = taken = 0
    for event in events:
        if event == "idle turn" and not inbox.deferred:
            inbox.batching = inbox.frames > 0
        elif event in ("idle turn", "busy turn"):
            for m in inbox.take(max_batch):
                if m.header.stream == "file":
                    unfinished -= 1
                    taken += 1
        elif event[1] != "file" or unfinished < in_flight:  # no credit: the file waits
            stream = event[1]
            inbox.offer(message(stream, sent if stream == "file" else 0))
            if stream == "file":
                unfinished += 1
                sent += 1
    assert inbox.dropped.get("file", 0) == 0
    while len(inbox):
        taken += sum(m.header.stream == "file" for m in inbox.take(max_batch))
    assert taken == sent
