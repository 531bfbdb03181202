"""Sources: the demo clip, a file to its end, and a live source that drops and comes back."""

from __future__ import annotations

import functools
import http.server
import threading
import time
from pathlib import Path

import numpy as np

from stream.config import SourceConfig
from stream.media.demo import DemoClip, write_demo_video
from stream.media.sources import FrameSource, OpenCVSource, SourceReader, SourceState, make_source


def test_demo_clip_moves() -> None:
    clip = DemoClip(320, 240)
    first, later = clip.frame(0.0), clip.frame(1.0)
    assert first.shape == (240, 320, 3) and first.dtype == np.uint8
    assert np.abs(first.astype(int) - later.astype(int)).mean() > 1.0


def test_a_file_is_read_to_its_end_with_media_times(tmp_path: Path) -> None:
    path = write_demo_video(tmp_path / "clip.avi", seconds=1.0, fps=10, width=160, height=120)
    reader = SourceReader(OpenCVSource(str(path), live=False))
    times = []
    while (event := reader.next()).state is SourceState.STREAMING:
        times.append(event.media_time)
    assert event.state is SourceState.ENDED and reader.generation == 1
    assert len(times) == 10
    np.testing.assert_allclose(times, np.arange(10) / 10, atol=1e-6)


class FlakySource(FrameSource):
    """Gives ``frames`` frames per session, fails to open ``refusals`` times in between."""

    live = True
    fps = 10.0

    def __init__(self, frames: int, refusals: int) -> None:
        self.frames, self.refusals = frames, refusals
        self.left = 0
        self.opens = self.attempts = 0

    def open(self) -> bool:
        self.attempts += 1
        if self.opens and self.attempts % (self.refusals + 1):
            return False
        self.opens += 1
        self.left = self.frames
        return True

    def read(self) -> tuple[np.ndarray, float] | None:
        if self.left == 0:
            return None
        self.left -= 1
        return np.zeros((2, 2, 3), np.uint8), 0.0


def test_a_live_source_reconnects_with_backoff_and_a_new_generation() -> None:
    source = FlakySource(frames=3, refusals=2)
    reader = SourceReader(source, backoff_min_s=0.01, backoff_max_s=0.04, max_wait_s=0.05)
    generations, states = [], set()
    for _ in range(200):
        event = reader.next()
        states.add(event.state)
        if event.frame is not None:
            generations.append(event.generation)
        if reader.generation == 3 and len(generations) == 9:
            break
    assert generations == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert SourceState.RECONNECTING in states and reader.reconnects == 2
    assert source.attempts > source.opens  # refused opens were retried


class _VideoServer:
    """A real HTTP server for one folder, stoppable and restartable on the same port."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_an_http_url_streams_through_opencv_and_reconnects_after_the_server_drops(
        tmp_path: Path) -> None:
    write_demo_video(tmp_path / "clip.avi", seconds=1.0, fps=10, width=160, height=120)
    server = _VideoServer(tmp_path)
    config = SourceConfig(spec=f"http://127.0.0.1:{server.port}/clip.avi")
    assert config.kind == "url"
    reader = SourceReader(make_source(config), backoff_min_s=0.05, backoff_max_s=0.2,
                          max_wait_s=0.05)
    frames: dict[int, int] = {}
    states: set[SourceState] = set()
    restarted = None
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and frames.get(2, 0) < 10:
            event = reader.next()
            states.add(event.state)
            if event.frame is not None:
                assert event.frame.shape == (120, 160, 3)
                frames[event.generation] = frames.get(event.generation, 0) + 1
            if restarted is None and frames.get(1) == 10 and event.frame is None:
                server.stop()  # the stream ended and the server is gone: reconnecting
                for _ in range(5):
                    states.add(reader.next().state)
                restarted = _VideoServer(tmp_path, server.port)
    finally:
        reader.close()
        (restarted or server).stop()
    assert frames.get(1) == 10 and frames.get(2) == 10, frames
    assert SourceState.RECONNECTING in states and SourceState.ENDED not in states
    assert reader.reconnects >= 1
