"""The recorder's process on real sockets, fed by this test as detect and classify would
feed it: the files it leaves (ffprobe), its counts, its refusals, and its supervision
(killed: restarted as a new part, the files it finished stay playable)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from test_record_parts import ffprobe, percept, prediction

from stream.config import EndpointConfig
from stream.record.launcher import RecorderProcess, RecorderSpec, record_paths
from stream.record.publisher import RecordPublisher
from stream.record.writer import partial_path
from stream.transport.endpoints import Endpoints, open_endpoint
from stream.transport.text_topic import TextLine
from stream.transport.wire import Header

pytestmark = pytest.mark.slow

STREAMS = ["cam0", "cam1"]


class Feed:
    """The pipeline's side: detect's record PUB, classify's predictions and transcript."""

    def __init__(self, tmp_path: Path) -> None:
        self.config = EndpointConfig(predictions=f"ipc://{tmp_path}/predictions",
                                     text=f"ipc://{tmp_path}/text")
        self.endpoints = Endpoints.for_config(self.config, tmp_path / "run", STREAMS)
        self.context = zmq.Context()
        self.sockets = {name: open_endpoint(self.context, self.endpoints, name, "bind",
                                            self.config)
                        for name in ("record", "predictions", "transcript")}
        self.publisher = RecordPublisher(self.sockets["record"], fps=None, width=320)
        self.media = dict.fromkeys(STREAMS, 0.0)

    def frames(self, seconds: float, fps: float = 10.0) -> None:
        """``seconds`` of frames of every stream at ``fps``, with a prediction each
        second and a transcript line on cam0."""
        image = np.full((240, 320, 3), 90, np.uint8)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            now = time.monotonic()
            for stream in STREAMS:
                header = Header(stream=stream, seq=0, generation=1, capture_time=now,
                                media_time=self.media[stream])
                self.publisher.offer(header, image, [percept(1)], now, "test")
                if round(self.media[stream] * fps) % round(fps) == 0:
                    record = prediction(stream, 1, now, 0.8)
                    self.sockets["predictions"].send_multipart(
                        [stream.encode(), record.model_dump_json(by_alias=True).encode()])
                self.media[stream] += 1.0 / fps
            if round(self.media["cam0"] * fps) % 20 == 1:
                self.sockets["transcript"].send_multipart(
                    [b"cam0", TextLine(text="hello there", time=now).body()])
            time.sleep(max(0.0, 1.0 / fps - (time.monotonic() - now)))

    def close(self) -> None:
        self.context.destroy(linger=0)


def start(tmp_path: Path, feed: Feed, max_restarts: int = 2) -> RecorderProcess:
    spec = RecorderSpec(path=tmp_path / "rec.mp4", streams=STREAMS, fps=10.0, codec="auto",
                        delay_s=0.5, endpoints=feed.endpoints, endpoint_config=feed.config,
                        stats_dir=tmp_path / "run")
    spec_path = tmp_path / "record-spec.json"
    spec_path.write_text(spec.model_dump_json())
    recorder = RecorderProcess(spec_path, spec, tmp_path / "recorder.log",
                               max_restarts=max_restarts)
    recorder.start()
    return recorder


def test_the_recorder_writes_a_playable_file_per_stream_and_counts_what_it_missed(
        tmp_path: Path) -> None:
    feed = Feed(tmp_path)
    recorder = start(tmp_path, feed)
    try:
        time.sleep(1.5)  # the process imports PyAV and OpenCV
        feed.frames(2.0)  # subscribed by now
        for garbage in ([b"cam0", b"x"], [b"cam0", b"\0" * 8, b"{}", b"y"]):
            feed.sockets["record"].send_multipart(garbage)
        feed.sockets["predictions"].send_multipart([b"cam0", b"{not json"])
        feed.frames(2.0)
    finally:
        recorder.stop()
        feed.close()
    report = recorder.report()
    assert recorder.exit_codes == [0] and report["restarts"] == 0, report
    assert report["rejected"] == {"record:parts": 1, "record:schema": 1,
                                  "predictions:not-json": 1}
    assert report["predictions"] > 0 and report["transcript_lines"] > 0
    published = feed.publisher.published + feed.publisher.unsent
    for stream, path in record_paths(tmp_path / "rec.mp4", STREAMS).items():
        figures = report["streams"][stream]
        assert figures["files"] == [str(path)]
        probe = ffprobe(path)
        assert probe["frames"] == figures["frames"] == figures["received"] > 20
        assert figures["received"] + figures["dropped"] == published // len(STREAMS)
        assert probe["seconds"] == pytest.approx(figures["seconds"], abs=0.15)
        assert probe["size"] == (320, 240)


def test_a_killed_recorder_starts_a_new_part_and_the_finished_one_stays_playable(
        tmp_path: Path) -> None:
    feed = Feed(tmp_path)
    recorder = start(tmp_path, feed, max_restarts=1)
    try:
        time.sleep(1.5)
        feed.frames(2.0)
        assert recorder.process is not None
        first = recorder.process
        first.send_signal(signal.SIGKILL)  # no chance to close its files
        deadline = time.monotonic() + 20
        while recorder.process is first and time.monotonic() < deadline:
            feed.frames(0.2)
        assert recorder.process is not first, "the recorder was not restarted"
        time.sleep(1.5)
        feed.frames(3.0)
        second = recorder.process
        second.send_signal(signal.SIGTERM)  # closes its files, then is not restarted again
        second.wait(20)
        feed.frames(1.0)
    finally:
        recorder.stop()
        feed.close()
    report = recorder.report()
    assert report["restarts"] == 1 and report["exit_codes"][:2] == [-signal.SIGKILL, 0]
    assert any("restarting" in w for w in report["warnings"]), report["warnings"]
    assert any("part(s) [0]" in w for w in report["warnings"]), report["warnings"]
    for stream, path in record_paths(tmp_path / "rec.mp4", STREAMS).items():
        assert not path.exists() and partial_path(path).exists()  # never finished
        part = record_paths(tmp_path / "rec.mp4", STREAMS, part=1)[stream]
        assert report["streams"][stream]["files"] == [str(part)]
        assert ffprobe(part)["frames"] == report["streams"][stream]["frames"] > 10
    stats = json.loads((tmp_path / "run" / "record-stats-1.json").read_text())
    assert set(stats["streams"]) == set(STREAMS)
