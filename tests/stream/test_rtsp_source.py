"""An RTSP URL source against a real RTSP server (aio-rtsp-toolkit serving H.264 over
RTSP/TCP, in its own process) read through OpenCV's FFmpeg: a server that drops and one that
stalls without closing both end in a reconnect and a new generation."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stream.config import SourceConfig
from stream.media.sources import SourceReader, SourceState, make_source

pytest.importorskip("av", reason="the test RTSP server encodes with PyAV: pip install -e '.[dev]'")
pytest.importorskip("aio_rtsp_toolkit",
                    reason="the test RTSP server is aio-rtsp-toolkit: pip install -e '.[dev]'")

pytestmark = pytest.mark.slow

SERVER = Path(__file__).with_name("rtsp_server.py")


class RtspServerProcess:
    """``rtsp_server.py`` in a subprocess: started, killed, frozen, thawed."""

    def __init__(self, folder: Path, port: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), str(folder), str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until "ready" or the process dies
        if line.strip() != "ready":
            self.process.kill()
            raise RuntimeError(f"test RTSP server did not start (said {line!r})")

    def signal(self, sig: signal.Signals) -> None:
        os.kill(self.process.pid, sig)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_until(reader: SourceReader, done, deadline_s: float, frames: dict[int, int],
               states: list[tuple[float, SourceState]]) -> None:
    """Pump the reader until ``done()``; count frames per generation, time-stamp states."""
    deadline = time.monotonic() + deadline_s
    while not done():
        assert time.monotonic() < deadline, f"timed out: frames {frames}, states {states[-3:]}"
        event = reader.next()
        states.append((time.monotonic(), event.state))
        if event.frame is not None:
            assert event.frame.shape == (120, 160, 3)
            frames[event.generation] = frames.get(event.generation, 0) + 1


def rtsp_reader(port: int, **timeouts: float) -> SourceReader:
    config = SourceConfig(spec=f"rtsp://127.0.0.1:{port}/clip.mp4", **timeouts)
    assert config.kind == "url"
    return SourceReader(make_source(config), backoff_min_s=0.1, backoff_max_s=0.4,
                        max_wait_s=0.05)


def test_an_rtsp_source_reconnects_after_the_server_drops(tmp_path: Path) -> None:
    port = free_port()
    server = RtspServerProcess(tmp_path, port)
    reader = rtsp_reader(port)
    frames: dict[int, int] = {}
    states: list[tuple[float, SourceState]] = []
    try:
        read_until(reader, lambda: frames.get(1, 0) >= 15, 30, frames, states)
        server.stop()  # the camera goes away mid-stream
        read_until(reader, lambda: states[-1][1] is SourceState.RECONNECTING, 15, frames, states)
        server = RtspServerProcess(tmp_path, port)
        read_until(reader, lambda: frames.get(2, 0) >= 10, 30, frames, states)
    finally:
        reader.close()
        server.stop()
    assert frames[1] >= 15 and frames[2] >= 10 and set(frames) == {1, 2}, frames
    assert reader.reconnects == 1
    assert SourceState.ENDED not in {state for _, state in states}


def test_a_stalled_rtsp_server_is_dropped_after_the_read_timeout(tmp_path: Path) -> None:
    """SIGSTOP keeps the TCP connection open and sends nothing: without a read timeout the
    capture would block for FFmpeg's 30 s; with ``read_timeout_s`` 1 it reconnects."""
    port = free_port()
    server = RtspServerProcess(tmp_path, port)
    reader = rtsp_reader(port, read_timeout_s=1.0, open_timeout_s=2.0)
    frames: dict[int, int] = {}
    states: list[tuple[float, SourceState]] = []
    try:
        read_until(reader, lambda: frames.get(1, 0) >= 15, 30, frames, states)
        server.signal(signal.SIGSTOP)
        stalled_at = time.monotonic()
        read_until(reader, lambda: states[-1][1] is SourceState.RECONNECTING, 15, frames, states)
        noticed_after = states[-1][0] - stalled_at
        server.signal(signal.SIGCONT)
        read_until(reader, lambda: frames.get(2, 0) >= 10, 40, frames, states)
    finally:
        reader.close()
        server.signal(signal.SIGCONT)
        server.stop()
    # Frames FFmpeg had buffered still arrive first; then one read times out (1 s).
    assert noticed_after < 6.0, noticed_after
    assert frames.get(2, 0) >= 10 and reader.reconnects >= 1, frames
