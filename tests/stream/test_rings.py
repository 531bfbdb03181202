"""Sequence accounting (lost versus dropped) and per-person windows at the classifier."""

from __future__ import annotations

import numpy as np

from engines.adapters.openpose_layout import NUM_KEYPOINTS
from stream.stages.sinks import stage_latency_ms
from stream.stages.windows import PersonRing, StreamBook
from stream.transport.wire import Header


def test_gaps_explained_by_drops_are_not_losses() -> None:
    book = StreamBook("a")
    assert book.account(1, 0, 0) == 0
    assert book.account(1, 4, 3) == 0  # frames 1-3 dropped on purpose upstream
    assert book.account(1, 8, 1) == 2  # 5-7 missing, one explained: two lost
    assert (book.dropped, book.lost, book.frames) == (4, 2, 3)


def test_out_of_order_arrivals_from_replicas_are_not_losses() -> None:
    # two feature replicas: replica B dropped frame 3 and reports it on its next frame (5),
    # which arrives after replica A's frame 4; B's frame 1 arrives after A's frame 2
    book = StreamBook("a")
    book.account(1, 0, 0)
    book.account(1, 2, 0)
    book.account(1, 1, 0)
    book.account(1, 4, 0)
    book.account(1, 5, 1)
    assert book.lost == 0 and book.dropped == 1 and book.frames == 5
    # the end marker may overtake the other replica's last frame
    book.end(1, 8, 0)
    assert book.lost == 2  # frames 6 and 7 still in flight
    book.account(1, 6, 0)
    book.account(1, 7, 0)
    assert book.lost == 0


def test_losses_are_reported_once_and_kept_across_generations() -> None:
    book = StreamBook("a")
    book.account(1, 0, 0)
    assert book.account(1, 3, 0) == 2
    assert book.account(1, 5, 0) == 1
    assert book.account(2, 0, 0) == 0
    assert book.lost == 3
    assert book.end(2, 3, 1) == 1  # frame 1 or 2 never came, one was dropped
    assert book.lost == 4


def test_a_new_generation_restarts_the_sequence() -> None:
    book = StreamBook("a")
    book.account(1, 0, 0)
    book.account(1, 1, 0)
    assert book.account(2, 0, 0) == 0
    assert book.generations == 2 and book.lost == 0


def test_ring_keeps_only_the_window_and_builds_a_grid() -> None:
    ring = PersonRing(window_seconds=2.0)
    keypoints = np.zeros((NUM_KEYPOINTS, 3), np.float32)
    keypoints[:, :2] = np.random.default_rng(0).uniform(100, 200, (NUM_KEYPOINTS, 2))
    keypoints[:, 2] = 1.0
    for i in range(50):
        t = i * 0.1
        ring.add(t, np.full(8, i, np.float32) if i % 5 == 0 else None, keypoints)
    assert ring.keypoints[0][0] >= 4.9 - 2.0 - 1.0 - 1e-9
    window = ring.window(4.9, image_rate=2.0, keypoint_rate=5.0, image_dim=8, text_dim=4,
                         text=None)
    assert window.image.shape == (1, 4, 8) and window.keypoints.shape == (1, 10, 137, 3)
    assert window.keypoints_mask.sum() == 10
    assert window.image_mask.sum() == 4
    assert window.modalities_present == [["image", "keypoints"]]


def test_latency_splits_stage_work_and_queues() -> None:
    header = Header(stream="a", seq=0, generation=1, capture_time=10.0, media_time=0.0)
    header = header.stamped("capture", 10.0, 10.01).stamped("detect", 10.02, 10.05)
    latency = stage_latency_ms(header, 10.07, 10.10)
    assert latency["detect"] == 30.0 and latency["classify"] == 30.0
    assert latency["queues"] == 30.0 and latency["total"] == 100.0


def test_end_of_stream_accounts_the_tail() -> None:
    book = StreamBook("a")
    book.account(1, 0, 0)
    book.account(1, 1, 0)
    assert book.end(1, next_seq=5, dropped=2) == 1  # frames 2-4: two dropped, one lost
    assert (book.dropped, book.lost) == (2, 1)


def test_a_time_far_before_the_ring_restarts_it_instead_of_starving_it() -> None:
    ring = PersonRing(window_seconds=2.0)
    keypoints = np.ones((NUM_KEYPOINTS, 3), np.float32)
    ring.add(9e8, None, keypoints)  # an absurd time (a seek, a hostile peer)
    for i in range(10):
        ring.add(100.0 + i * 0.1, None, keypoints)
    assert len(ring.keypoints) == 10 and ring.last_seen == 100.9
