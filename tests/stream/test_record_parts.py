"""The recording's parts without a pipeline: the record message (validated, fuzzed), the
publisher that never waits, the recorder's drop counting, tags, subtitles and held frames,
and real MP4 files checked with ffprobe."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engines.adapters.perception import Percept
from stream.config import EndpointConfig, RecordConfig, load_config
from stream.prediction import Prediction
from stream.record.draw import Tag, annotate, wrap
from stream.record.launcher import record_paths
from stream.record.publisher import RecordPublisher
from stream.record.recorder import MAX_PENDING, Recorder
from stream.record.wire import RecordFrame, decode_record, record_parts
from stream.record.writer import VideoWriter, choose_codec, partial_path
from stream.transport.endpoints import Endpoints, open_endpoint
from stream.transport.wire import FrameMeta, Header, Person, WireError, WireRules

RULES = WireRules(streams=frozenset({"demo0", "cam1"}))


def ffprobe(path: Path) -> dict:
    """ffprobe's frame count (every frame decoded) and duration of the first video stream."""
    if shutil.which("ffprobe") is None:
        pytest.skip("ffprobe not installed (Debian: apt-get install ffmpeg)")
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
         "stream=codec_name,nb_read_frames,duration,width,height", "-of", "json", str(path)],
        capture_output=True, text=True, check=True)
    stream = json.loads(result.stdout)["streams"][0]
    return {"codec": stream["codec_name"], "frames": int(stream["nb_read_frames"]),
            "seconds": float(stream["duration"]), "size": (stream["width"], stream["height"])}


def header(stream: str = "demo0", seq: int = 0, capture: float = 100.0, media: float = 0.0,
           persons: tuple[Person, ...] = ()) -> Header:
    return Header(stream=stream, seq=seq, generation=1, capture_time=capture,
                  media_time=media, meta=FrameMeta(persons=persons))


def frame(count: int, *, stream: str = "demo0", capture: float = 100.0, media: float = 0.0,
          persons: tuple[Person, ...] = (), size: tuple[int, int] = (64, 48)) -> RecordFrame:
    image = np.full((size[1], size[0], 3), 60, np.uint8)
    return RecordFrame(count, header(stream, count, capture, media, persons), image, None)


def percept(track_id: int, keypoints: bool = True) -> Percept:
    points = np.zeros((137, 3), np.float32)
    points[:, 0], points[:, 1], points[:, 2] = 200.0, 100.0, 0.9
    return Percept(track_id=track_id, score=0.8, xyxy=np.array([100, 50, 300, 400]),
                   crop=np.zeros((8, 8, 3), np.uint8), offset=(100, 50),
                   keypoints=points if keypoints else None)


def prediction(stream: str, person: int, capture: float, positive: float) -> Prediction:
    return Prediction.model_validate({
        "stream": stream, "seq": 0, "person": person, "generation": 1, "frame_seq": 0,
        "label": "positive" if positive >= 0.5 else "negative",
        "probs": {"negative": 1.0 - positive, "positive": positive},
        "window": {"start": 0.0, "end": 1.0, "seconds": 1.0}, "modalities": ["image"],
        "slots": {"image": 1, "keypoints": 0, "text": 0}, "smoothing": 0.0,
        "capture_time": capture, "emit_time": capture + 0.1, "latency_ms": {"total": 1.0},
        "frames": {"received": 1, "dropped": 0, "lost": 0}, "detector": None,
        "random_weights": False, "random_engines": []})


# -- the record message ------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(count=st.integers(0, 2**40), width=st.integers(16, 80), height=st.integers(16, 80),
       persons=st.lists(st.tuples(st.integers(0, 2**31), st.booleans()), max_size=5),
       media=st.floats(0, 1e6))
def test_a_record_message_comes_back_as_it_was_sent(count: int, width: int, height: int,
                                                     persons: list[tuple[int, bool]],
                                                     media: float) -> None:
    rng = np.random.default_rng(count % 1000)
    image = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    rows = sum(with_points for _, with_points in persons)
    people, row = [], 0
    for track, with_points in persons:
        people.append(Person(track_id=track, keypoints=row if with_points else -1))
        row += with_points
    keypoints = rng.random((rows, 137, 3), dtype=np.float32) if rows else None
    sent = header("cam1", 5, 10.0, media, tuple(people))
    got = decode_record([bytes(p) for p in record_parts(count, sent, image, keypoints)], RULES)
    assert got.count == count and got.header == sent
    assert np.array_equal(got.image, image)
    assert (got.keypoints is None) == (keypoints is None)
    if keypoints is not None:
        assert np.array_equal(got.keypoints, keypoints)


def _good_parts() -> list[bytes]:
    persons = (Person(track_id=1, keypoints=0),)
    return [bytes(p) for p in record_parts(3, header(persons=persons),
                                           np.zeros((32, 32, 3), np.uint8),
                                           np.ones((1, 137, 3), np.float32))]


@pytest.mark.parametrize(("change", "reason"), [
    (lambda p: p[:3], "parts"),
    (lambda p: [p[0], p[1][:4], *p[2:]], "parts"),
    (lambda p: [b"cam1", *p[1:]], "unknown-stream"),
    (lambda p: [p[0], p[1], p[2].replace(b'"demo0"', b'"other"'), *p[3:]], "unknown-stream"),
    (lambda p: [*p[:3], p[3][:-1], p[4]], "size"),
    (lambda p: [*p[:4], np.full((1, 137, 3), np.nan, np.float32).tobytes()], "non-finite"),
    (lambda p: p[:4], "buffers"),
    (lambda p: [p[0], p[1], b"{not json", *p[3:]], "not-json"),
])
def test_a_broken_record_message_is_refused_with_its_reason(change, reason: str) -> None:
    with pytest.raises(WireError) as refused:
        decode_record(change(_good_parts()), RULES)
    assert refused.value.reason == reason


def test_a_record_whose_person_points_past_the_keypoints_is_refused() -> None:
    persons = (Person(track_id=1, keypoints=1),)
    parts = record_parts(0, header(persons=persons), np.zeros((32, 32, 3), np.uint8),
                         np.ones((1, 137, 3), np.float32))
    with pytest.raises(WireError, match="keypoint rows"):
        decode_record(parts, RULES)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=300), max_size=7))
def test_any_bytes_are_a_record_or_a_refusal(parts: list[bytes]) -> None:
    with contextlib.suppress(WireError):  # anything else fails the test
        decode_record(parts, RULES)


# -- the publisher -----------------------------------------------------------------------

@pytest.fixture()
def record_pub_sub(tmp_path: Path):
    context = zmq.Context()
    config = EndpointConfig(predictions=f"ipc://{tmp_path}/p", text=f"ipc://{tmp_path}/t")
    endpoints = Endpoints.for_config(config, tmp_path)
    pub = open_endpoint(context, endpoints, "record", "bind", config)
    sub = open_endpoint(context, endpoints, "record", "connect", config)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    yield pub, sub
    context.destroy(linger=0)


def _wait_subscribed(pub: zmq.Socket, sub: zmq.Socket) -> None:
    """Send probes until the subscription has reached the publisher (slow joiner)."""
    probe = RecordPublisher(pub, fps=None, width=64)
    for _ in range(200):
        probe.offer(header(), np.zeros((16, 16, 3), np.uint8), [], 0.0, None)
        if sub.poll(20):
            while sub.poll(50):
                sub.recv_multipart()
            return
    raise AssertionError("the subscription never arrived")


def test_the_publisher_never_waits_and_the_recorder_counts_every_frame_it_missed(
        record_pub_sub, tmp_path: Path) -> None:
    """A subscriber that reads nothing: every offer returns at once; then the recorder,
    reading what reached it, counts as dropped exactly the frames it never got."""
    pub, sub = record_pub_sub
    _wait_subscribed(pub, sub)
    publisher = RecordPublisher(pub, fps=None, width=320)
    image = np.zeros((480, 640, 3), np.uint8)
    offered = 300
    for seq in range(offered):
        publisher.offer(header(seq=seq), image, [percept(1)], 0.0, "test")
    status = publisher.status()
    assert status["published"] + status["unsent"] == offered and status["skipped"] == 0
    recorder = Recorder({"demo0": tmp_path / "x.mp4"}, fps=5.0)
    while sub.poll(200):
        recorder.frame(decode_record(sub.recv_multipart(copy=False), RULES), now=0.0)
    got = recorder.received["demo0"]
    assert 0 < got < offered  # queues of two: most frames were dropped, never waited for
    last = recorder.last_count["demo0"]
    assert recorder.dropped["demo0"] == last + 1 - got
    held = recorder.pending[-1].record
    assert held.image.shape == (240, 320, 3)  # scaled to record.width
    assert held.header.meta.persons[0].box == (50.0, 25.0, 150.0, 200.0)
    assert held.keypoints is not None and held.keypoints[0, 0, 0] == 100.0


def test_the_publisher_keeps_to_fps_on_average_without_bursts(record_pub_sub) -> None:
    pub, _ = record_pub_sub
    now = [0.0]
    publisher = RecordPublisher(pub, fps=4.0, width=64, clock=lambda: now[0])
    image = np.zeros((16, 16, 3), np.uint8)
    for step in range(100):  # 10 s at 10 frames per second
        now[0] = step * 0.1
        publisher.offer(header(), image, [], 0.0, None)
    sent = publisher.published + publisher.unsent
    assert 39 <= sent <= 41 and sent + publisher.skipped == 100
    now[0] = 100.0  # after a long pause: one frame, not a burst
    for _ in range(3):
        publisher.offer(header(), image, [], 0.0, None)
    assert publisher.published + publisher.unsent == sent + 1


# -- the recorder ------------------------------------------------------------------------

class FakeWriter:
    """Keeps what the recorder writes, in memory."""

    def __init__(self, path: Path, fps: float, codec: str) -> None:
        self.path, self.frames, self.times, self.images = path, 0, [], []
        self.codec, self.size, self.seconds = "fake", None, 0.0

    def write(self, image: np.ndarray, seconds: float) -> None:
        self.frames += 1
        self.times.append(seconds)
        self.images.append(image)

    def close(self) -> Path:
        return self.path


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 50), min_size=1, max_size=40))
def test_dropped_frames_are_the_gaps_in_each_publishers_count(counts: list[int]) -> None:
    """Any order of counts (a restart starts again from 0): dropped is what a reader of the
    counts would call missing, and every frame received is written."""
    recorder = Recorder({"demo0": Path("x.mp4")}, fps=5.0, writer=FakeWriter)
    expected, last = 0, None
    for count in counts:
        recorder.frame(frame(count), now=0.0)
        expected += count if last is None or count <= last else count - last - 1
        last = count
    assert recorder.dropped["demo0"] == expected
    recorder.close()
    assert recorder.writers["demo0"].frames == len(counts)


def test_frames_are_held_for_their_predictions_and_memory_stays_bounded() -> None:
    recorder = Recorder({"demo0": Path("x.mp4")}, fps=5.0, delay_s=2.0, writer=FakeWriter)
    recorder.frame(frame(0), now=10.0)
    recorder.flush(11.9)
    assert recorder.pending and "demo0" not in recorder.writers
    recorder.flush(12.0)
    assert not recorder.pending and recorder.writers["demo0"].frames == 1
    for count in range(1, MAX_PENDING + 50):
        recorder.frame(frame(count, media=count * 0.2), now=20.0)
    assert len(recorder.pending) == MAX_PENDING  # the oldest were written at once
    assert recorder.writers["demo0"].frames == 50


def test_each_person_gets_the_newest_prediction_made_by_the_frame_it_is_drawn_on() -> None:
    recorder = Recorder({"demo0": Path("x.mp4")}, fps=5.0, writer=FakeWriter)
    for capture, positive in ((10.0, 0.9), (11.0, 0.2), (12.0, 0.7)):
        recorder.prediction(prediction("demo0", 4, capture, positive))
    assert recorder._tag("demo0", 4, 9.9) is None
    assert recorder._tag("demo0", 4, 10.0) == Tag("positive", 0.9)
    assert recorder._tag("demo0", 4, 11.5) == Tag("negative", 0.2)
    assert recorder._tag("demo0", 4, 30.0) == Tag("positive", 0.7)
    assert recorder._tag("demo0", 5, 30.0) is None


def test_a_subtitle_shows_from_when_it_was_said_on_either_clock() -> None:
    recorder = Recorder({"demo0": Path("x.mp4")}, fps=5.0, writer=FakeWriter)
    recorder.line("demo0", "said on the media clock", media=(4.0, 9.0))
    recorder.line("demo0", "said at a monotonic time", spoken=120.0)
    assert recorder._subtitle("demo0", 100.0, 3.9) is None
    assert recorder._subtitle("demo0", 100.0, 4.0) == "said on the media clock"
    assert recorder._subtitle("demo0", 100.0, 9.0) == "said on the media clock"
    assert recorder._subtitle("demo0", 100.0, 13.0) is None  # over
    assert recorder._subtitle("demo0", 121.0, 13.0) == "said at a monotonic time"
    assert recorder._subtitle("demo0", 120.5, 5.0) == "said at a monotonic time"  # newer
    assert recorder._subtitle("demo0", 121.5, 5.0) == "said on the media clock"
    recorder.line("cam9", "not one of this run's streams", spoken=1.0)
    assert recorder.transcript_lines == 2


def test_a_drawn_frame_has_the_box_tag_and_subtitle_where_they_belong() -> None:
    image = np.full((240, 320, 3), 100, np.uint8)
    person = Person(track_id=2, box=(40.0, 60.0, 140.0, 180.0))
    plain = annotate(image, [person], None, {}, None, "demo0 00:00.0")
    drawn = annotate(image, [person], None, {2: Tag("positive", 0.73)},
                     "a line long enough to need two lines on a frame this narrow",
                     "demo0 00:00.0", "RANDOM WEIGHTS")
    assert (image == 100).all()  # the input is left as it was
    for x in (40, 139):  # the box's sides, in the person's colour
        assert (drawn[120, x] != 100).any() and (plain[120, x] == drawn[120, x]).all()
    assert (drawn[44:58, 40:140] != plain[44:58, 40:140]).any()  # the longer tag
    band = drawn[200:240]
    assert (plain[200:240] == 100).all()
    assert (band < 100).mean() > 0.5 and (band > 200).any()  # dark band, white words
    assert (drawn[4:20, 180:316, 2] > 200).any()  # the red warning, top right
    assert (plain[4:20, 180:316] == 100).all()
    assert len(wrap("a line long enough to need two lines on a frame this narrow", 296,
                    0.4)) == 2


def test_a_reopened_source_keeps_the_video_going_forward() -> None:
    recorder = Recorder({"demo0": Path("x.mp4")}, fps=5.0, delay_s=0.0, writer=FakeWriter)
    for count, media in enumerate((0.0, 0.2, 0.4, 0.0, 0.2)):  # the source restarted
        recorder.frame(frame(count, media=media), now=0.0)
    recorder.close()
    times = recorder.writers["demo0"].times
    assert times == sorted(times) and len(set(times)) == 5
    assert times[3] == pytest.approx(0.6)


# -- the files ---------------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["libx264", "mpeg4"])
def test_the_writer_leaves_a_playable_mp4_timed_by_the_frames(tmp_path: Path,
                                                              codec: str) -> None:
    path = tmp_path / "out.mp4"
    writer = VideoWriter(path, fps=5.0, codec=codec)
    times = [t * 0.2 for t in range(40) if t not in (10, 11, 12)]  # 3 frames never came
    for t in times:
        writer.write(np.full((121, 161, 3), int(t * 20), np.uint8), 100.0 + t)
    assert not path.exists() and partial_path(path).exists()  # whole or absent
    assert writer.close() == path and not partial_path(path).exists()
    probe = ffprobe(path)
    assert probe["frames"] == writer.frames == len(times)
    assert probe["seconds"] == pytest.approx(8.0, abs=0.05)
    assert probe["size"] == (160, 120)  # even, for 4:2:0
    assert probe["codec"] == {"libx264": "h264", "mpeg4": "mpeg4"}[codec]


def test_the_codec_is_chosen_or_refused_by_what_pyav_has() -> None:
    assert choose_codec("auto") in ("libx264", "mpeg4")
    with pytest.raises(ValueError, match=r"record\.codec"):
        choose_codec("no-such-encoder")


def test_each_stream_and_each_part_gets_its_own_file() -> None:
    assert record_paths(Path("/r/talk.mp4"), ["file0"]) == {"file0": Path("/r/talk.mp4")}
    two = record_paths(Path("/r/talk.mp4"), ["cam/0", "cam1"], part=2)
    assert two == {"cam/0": Path("/r/talk.cam_0.part2.mp4"),
                   "cam1": Path("/r/talk.cam1.part2.mp4")}


def test_the_configuration_takes_record_and_refuses_another_suffix() -> None:
    config = load_config(None, {"sources": [{"spec": "demo"}], "profile": "tiny"},
                         ["record.path=/tmp/run.mp4", "record.fps=5"])
    assert config.record.path == Path("/tmp/run.mp4") and config.echoes_transcripts
    with pytest.raises(ValueError, match=r"must end in \.mp4"):
        RecordConfig(path=Path("run.avi"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["a-file/run.mp4", "run.avi"])
def test_a_recording_that_cannot_be_written_stops_the_run_before_it_starts(
        tmp_path: Path, name: str) -> None:
    (tmp_path / "a-file").write_text("in the way of a folder")
    run = subprocess.run(
        [sys.executable, "-m", "hidemo", "run", "--source", "demo", "--profile", "tiny",
         "--duration", "5", "--record", str(tmp_path / name)],
        capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "--record" in run.stderr or "record.path" in run.stderr, run.stderr
    assert "started" not in run.stderr and "Traceback" not in run.stderr
