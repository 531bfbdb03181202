"""Cheap decimation: capture decides on a frame's media time after the grab, so a skipped
frame is never retrieved (converted and copied), and the kept frames are exactly the ones
decoding everything and sampling afterwards kept: same media times, same pixels."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engines.adapters.rates import RateSampler
from stream.config import load_config
from stream.media.demo import DemoClip, write_demo_video
from stream.media.sources import (
    DemoSource,
    OpenCVSource,
    SkippingSource,
    SourceReader,
    SourceState,
    ended_early,
)
from stream.stages.capture import run_capture
from stream.stages.loop import StopFlag
from stream.transport.endpoints import Endpoints
from stream.transport.status import Health, StageStatus, decode_status
from stream.transport.wire import Kind, decode


def decode_all_then_sample(path: Path, rate: float) -> list[tuple[float, np.ndarray]]:
    """What capture kept before decimation moved ahead of the decode: every frame read
    (grab + convert) with OpenCV, then sampled on its index / fps time."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    sampler = RateSampler(rate)
    kept, index = [], 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if sampler.take(index / fps):
            kept.append((index / fps, frame))
        index += 1
    capture.release()
    return kept


def read_all(reader: SourceReader) -> tuple[list[tuple[float, np.ndarray]], int]:
    """The kept (media time, frame) pairs of a file and the number of skipped events."""
    kept, skipped = [], 0
    while (event := reader.next()).state is SourceState.STREAMING:
        if event.skipped:
            assert event.frame is None
            skipped += 1
        else:
            assert event.frame is not None
            kept.append((event.media_time, event.frame))
    assert event.state is SourceState.ENDED
    return kept, skipped


def write_mp4(path: Path, seconds: float, fps: float, width: int, height: int) -> Path | None:
    """An MPEG-4 part 2 file (inter-frame coded, unlike MJPG); None where OpenCV cannot."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        return None
    source = DemoSource(fps, width, height)
    source.open()
    for _ in range(round(seconds * fps)):
        got = source.read()
        assert got is not None
        writer.write(got[0])
    writer.release()
    return path


@pytest.mark.parametrize("container", ["avi", "mp4"])
def test_kept_frames_are_the_decode_all_frames_and_skipped_ones_are_never_retrieved(
        tmp_path: Path, container: str) -> None:
    if container == "avi":
        path = write_demo_video(tmp_path / "clip.avi", seconds=2.0, fps=30, width=96,
                                height=64)
    else:
        made = write_mp4(tmp_path / "clip.mp4", seconds=2.0, fps=30, width=96, height=64)
        if made is None:
            pytest.skip("this OpenCV build cannot write mp4v")
        path = made
    reader = SourceReader(OpenCVSource(str(path), live=False), policy=RateSampler(5.0))
    kept, skipped = read_all(reader)
    expected = decode_all_then_sample(path, 5.0)

    assert [t for t, _ in kept] == [t for t, _ in expected]
    assert len(kept) == 10 and skipped == 50
    for (_, frame), (_, reference) in zip(kept, expected, strict=True):
        np.testing.assert_array_equal(frame, reference)
    assert reader.cost.grabbed == 60 and reader.cost.retrieved == 10
    report = reader.cost.report()
    assert report["skipped"] == 50 and report["retrieved"] == 10
    assert not ended_early(reader.source) and reader.generation == 1


def test_without_a_policy_every_frame_is_retrieved(tmp_path: Path) -> None:
    path = write_demo_video(tmp_path / "clip.avi", seconds=1.0, fps=10, width=64, height=48)
    reader = SourceReader(OpenCVSource(str(path), live=False))
    kept, skipped = read_all(reader)
    assert len(kept) == 10 and skipped == 0
    assert reader.cost.grabbed == reader.cost.retrieved == 10


def test_a_truncated_file_still_ends_early_when_decimated(tmp_path: Path) -> None:
    path = write_demo_video(tmp_path / "clip.avi", seconds=4.0, fps=30, width=96, height=64)
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.truncate(size // 2)  # the header still says 120 frames
    source = OpenCVSource(str(path), live=False)
    reader = SourceReader(source, policy=RateSampler(5.0))
    kept, skipped = read_all(reader)
    assert source.frame_count == 120 and 0 < source.frames_read < 100
    assert source.frames_read == len(kept) + skipped == reader.cost.grabbed
    assert ended_early(source) and reader.generation == 1
    assert reader.next().state is SourceState.ENDED  # final


class DroppingLiveSource(SkippingSource):
    """A live source with its own clock from 0 at each open, that drops after ``frames``
    frames; it counts what it was asked to convert."""

    live = True

    def __init__(self, frames: int, fps: float) -> None:
        self.frames, self.fps = frames, fps
        self.index = 0
        self.retrieves = 0

    def open(self) -> bool:
        self.index = 0
        return True

    def grab(self) -> float | None:
        if self.index >= self.frames:
            return None
        self.index += 1
        return (self.index - 1) / self.fps

    def retrieve(self) -> np.ndarray | None:
        self.retrieves += 1
        return np.full((2, 2, 3), self.index, np.uint8)


def test_a_reconnected_live_source_starts_a_new_generation_and_sampling_afresh() -> None:
    source = DroppingLiveSource(frames=25, fps=25.0)  # 1 s per session
    reader = SourceReader(source, policy=RateSampler(5.0), backoff_min_s=0.001,
                          backoff_max_s=0.002, max_wait_s=0.01)
    kept: dict[int, list[float]] = {}
    states = set()
    while reader.generation < 3 or len(kept.get(3, [])) < 5:
        event = reader.next()
        states.add(event.state)
        if event.frame is not None:
            kept.setdefault(event.generation, []).append(round(event.media_time, 6))
    assert kept[1] == kept[2] == [0.0, 0.2, 0.4, 0.6, 0.8]  # the clock restarted at 0
    assert SourceState.RECONNECTING in states and reader.reconnects >= 2
    assert source.retrieves == sum(len(times) for times in kept.values())
    assert reader.cost.grabbed == 2 * 25 + source.index


def test_the_demo_source_renders_only_kept_frames() -> None:
    source = DemoSource(fps=30.0, width=64, height=48)
    reader = SourceReader(source, policy=RateSampler(5.0))
    events = [reader.next() for _ in range(30)]
    frames = [e for e in events if e.frame is not None]
    assert [round(e.media_time, 6) for e in frames] == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert reader.cost.retrieved == 5 and reader.cost.grabbed == 30
    np.testing.assert_array_equal(frames[1].frame, DemoClip(64, 48).frame(0.2))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source_fps=st.sampled_from([7.0, 10.0, 12.0, 15.0, 24.0, 25.0, 30.0, 50.0, 60.0]),
       capture_fps=st.sampled_from([0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 12.5, 30.0]))
def test_kept_count_matches_the_sampler_on_the_same_times(
        tmp_path: Path, source_fps: float, capture_fps: float) -> None:
    path = write_demo_video(tmp_path / f"clip-{source_fps}-{capture_fps}.avi", seconds=2.0,
                            fps=source_fps, width=32, height=32)
    try:
        reader = SourceReader(OpenCVSource(str(path), live=False),
                              policy=RateSampler(capture_fps))
        times, kept_times = [], []
        while (event := reader.next()).state is SourceState.STREAMING:
            times.append(event.media_time)
            if not event.skipped:
                kept_times.append(event.media_time)
        sampler = RateSampler(capture_fps)
        due = [t for t in times if sampler.take(t)]
        assert len(times) == round(2.0 * source_fps)
        assert kept_times == due
        assert reader.cost.retrieved == len(due)
        assert reader.cost.grabbed - reader.cost.retrieved == len(times) - len(due)
    finally:
        path.unlink()


def test_the_capture_stage_reports_grabbed_and_retrieved_frames(tmp_path: Path) -> None:
    """run_capture (in a thread, unpaced, with credits for all its frames) on a 30 fps file
    at capture_fps 5: 5 frames out, and its last status report's ``decode`` figures say 30
    grabbed, 5 retrieved."""
    path = write_demo_video(tmp_path / "clip.avi", seconds=1.0, fps=30, width=64, height=48)
    config = load_config(None, {"sources": [{"spec": str(path), "in_flight": 8,
                                             "realtime": False}],
                                "profile": "tiny", "analysis": {"capture_fps": 5.0}})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    endpoints = Endpoints.for_config(config.endpoints, run_dir)
    context = zmq.Context()
    frames = context.socket(zmq.PULL)
    frames.bind(endpoints.detect_in)
    status = context.socket(zmq.PULL)
    status.bind(endpoints.status)
    codes: list[int] = []
    stop = StopFlag()
    thread = threading.Thread(target=lambda: codes.append(
        run_capture(config, 0, endpoints, stop, context)))
    try:
        thread.start()
        headers = []
        while not headers or headers[-1].kind is not Kind.EOS:
            assert frames.poll(10_000), "capture sent nothing for 10 s"
            headers.append(decode(frames.recv_multipart()).header)
        thread.join(10)
        assert codes == [0]
        reports: list[StageStatus] = []
        # the last report (stopping) was sent as the thread ended; ZeroMQ may still be
        # delivering it, so wait for it rather than take what has arrived
        while not reports or reports[-1].state is not Health.STOPPING:
            assert status.poll(10_000), "no stopping report from capture within 10 s"
            reports.append(decode_status(status.recv()))
    finally:
        stop.set()
        thread.join(10)
        context.destroy(linger=0)
    kept = [h for h in headers if h.kind is not Kind.EOS]
    assert [round(h.media_time, 6) for h in kept] == [0.0, 0.2, 0.4, 0.6, 0.8]
    last = reports[-1]
    assert last.counters.received == 30 and last.counters.processed == 5
    decode_figures = last.extra["decode"]
    assert isinstance(decode_figures, dict)
    assert decode_figures["grabbed"] == 30 and decode_figures["retrieved"] == 5
    assert decode_figures["skipped"] == 25
    assert last.extra["ended_early"] is None
