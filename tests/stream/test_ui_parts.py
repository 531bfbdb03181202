"""The web view's parts without a pipeline: the preview publisher's rate cap and wire
record, the server's refusals, per-client queues, tokens, and the page's routes."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient
from topic_pair import topic_pair

from engines.adapters.perception import Percept
from stream.config import EndpointConfig
from stream.transport.endpoints import Endpoints, open_endpoint
from stream.transport.status import Counters, Health, StageStatus
from stream.transport.text_topic import TextLine, TextTopic
from stream.transport.wire import Header, WireError
from stream.ui.access import TOKEN_ENV, browser_urls, parse_bind, resolve_token, token_ok
from stream.ui.app import build_app
from stream.ui.hub import Client, Hub
from stream.ui.lines import HeldLines, VideoClock
from stream.ui.monitor import MonitorView
from stream.ui.preview import PreviewPublisher
from stream.ui.records import PreviewHeader, decode_monitor, decode_preview, encode_preview

TOKEN = "a-long-enough-test-token"
JPEG = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()


def preview_parts(stream: str, *, capture_time: float, media_time: float,
                  generation: int = 1, persons: tuple = ()) -> list[bytes]:
    """A preview message as detect sends it: the video of ``stream`` is at ``media_time``."""
    header = PreviewHeader(stream=stream, seq=1, generation=generation,
                           capture_time=capture_time, analysed_time=capture_time,
                           media_time=media_time, frame_hw=(8, 8), size_hw=(8, 8),
                           persons=persons)
    return [stream.encode(), encode_preview(header), JPEG]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def percept(track_id: int = 3, keypoints: bool = True) -> Percept:
    points = np.zeros((137, 3), np.float32)
    points[:, 0], points[:, 1], points[:, 2] = 200.0, 100.0, 0.9
    return Percept(track_id=track_id, score=0.8, xyxy=np.array([100, 50, 300, 400]),
                   crop=np.zeros((8, 8, 3), np.uint8), offset=(100, 50),
                   keypoints=points if keypoints else None)


@pytest.fixture()
def pub_sub(tmp_path: Path):
    context = zmq.Context()
    config = EndpointConfig(predictions=f"ipc://{tmp_path}/p", text=f"ipc://{tmp_path}/t")
    endpoints = Endpoints.for_config(config, tmp_path)
    sub = open_endpoint(context, endpoints, "preview", "connect", config)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    pub = open_endpoint(context, endpoints, "preview", "bind", config)
    yield pub, sub
    context.destroy(linger=0)


def test_the_preview_is_capped_per_stream_scaled_and_decodes_as_sent(pub_sub) -> None:
    pub, sub = pub_sub
    clock = Clock()
    preview = PreviewPublisher(pub, fps=4.0, width=320, quality=70, clock=clock)
    image = np.full((480, 640, 3), 128, np.uint8)
    header = Header(stream="demo0", seq=7, generation=1, capture_time=99.5, media_time=1.0)
    probe = Header(stream="demo0", seq=0, generation=1, capture_time=99.5, media_time=1.0)
    sub.poll(200)  # let the subscription reach the publisher
    for _ in range(100):
        if sub.poll(0):
            break
        preview.offer(probe, image, [percept()], 99.9, "yolo")
        clock.now += 1.0
    preview = PreviewPublisher(pub, fps=4.0, width=320, quality=70, clock=clock)
    for step in range(10):  # 10 frames 0.1 s apart: a preview at most every 0.25 s
        preview.offer(header, image, [percept(), percept(4, keypoints=False)],
                      99.9 + step, "yolo")
        clock.now += 0.1
    assert preview.published == 4 and preview.skipped == 6 and preview.unsent == 0
    assert preview.status()["published"] == 4
    got = decode_preview(sub.recv_multipart(), ["demo0"])
    for _ in range(10):  # probes sent until the subscription took may still be queued
        if got.header.seq == header.seq:
            break
        assert sub.poll(10_000), "no preview after the probes"
        got = decode_preview(sub.recv_multipart(), ["demo0"])
    assert got.header.seq == header.seq
    assert got.header.size_hw == (240, 320) and got.header.frame_hw == (480, 640)
    assert got.header.media_time == header.media_time  # the video's clock, for the page
    first, second = got.header.persons
    assert first.box == (50.0, 25.0, 150.0, 200.0) and first.keypoints == 0
    assert second.keypoints == -1 and got.keypoints is not None
    assert got.keypoints.shape == (1, 137, 3)
    assert got.keypoints[0, 0, 0] == pytest.approx(100.0)  # scaled with the image
    decoded = cv2.imdecode(np.frombuffer(got.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (240, 320, 3)


def test_a_preview_that_is_not_one_is_refused_with_its_reason() -> None:
    header = json.dumps({"stream": "demo0", "seq": 1, "generation": 1, "capture_time": 1.0,
                         "analysed_time": 1.0, "media_time": 0.5, "frame_hw": [10, 10],
                         "size_hw": [10, 10],
                         "keypoint_rows": 1}).encode()
    cases = {
        "parts": [b"demo0", header],
        "not-json": [b"demo0", b"{", b"\xff\xd8x"],
        "unknown-stream": [b"other", header.replace(b"demo0", b"other"), b"\xff\xd8xx"],
        "buffers": [b"demo0", header, b"\xff\xd8xx", b"\x00" * 12],  # not 137 x 3 floats
    }
    for reason, parts in cases.items():
        with pytest.raises(WireError) as refused:
            decode_preview(parts, ["demo0"])
        assert refused.value.reason == reason, (reason, refused.value)
    nan = np.full((1, 137, 3), np.nan, np.float32).tobytes()
    with pytest.raises(WireError, match="NaN"):
        decode_preview([b"demo0", header, b"\xff\xd8xx", nan], ["demo0"])


TOPICS = ("preview", "predictions", "transcript", "monitor")
JUNK = st.one_of(st.binary(max_size=64), st.sampled_from([
    b"demo0", b"{", b"[]", b"null", b"\xff\xd8", b'{"stream": "demo0"}',
    b'{"text": "hi", "time": -1}', b'{"text": "' + b"x" * 5000 + b'"}',
    b'{"label": "happy", "probability": NaN}']))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(TOPICS), st.lists(JUNK, max_size=5)), max_size=20))
def test_hostile_messages_never_raise_out_of_the_hub_and_are_all_counted(
        messages: list[tuple[str, list[bytes]]]) -> None:
    """Whatever arrives on the view's topics (the pipeline's sockets are reachable by other
    local processes), the hub neither raises nor loses count: every message is
    counted as received, the refused ones also by reason, and a preview is refused with a
    WireError, nothing else."""
    hub = Hub(["demo0"], history_s=60.0)
    for topic, parts in messages:
        hub.receive(topic, parts)
        if topic == "preview":
            with contextlib.suppress(WireError):
                decode_preview(parts, ["demo0"])
    stats = hub.stats()
    for topic in TOPICS:
        sent = sum(1 for t, _ in messages if t == topic)
        refused = sum(stats["rejected"].get(topic, {}).values())
        assert stats["received"].get(topic, 0) == sent and refused <= sent, (topic, stats)
    json.dumps(hub.state())  # what the page gets stays serialisable


def test_the_hub_counts_refusals_per_topic_and_never_raises() -> None:
    hub = Hub(["demo0"], history_s=60.0)
    hub.receive("predictions", [b"demo0", b'{"label": "happy"}'])
    hub.receive("transcript", [b"nobody", b'{"text": "hi"}'])
    hub.receive("monitor", [b"[]"])
    hub.receive("transcript", [b"demo0", b'{"text": "I am fine", "time": 5.0}'])
    hub.receive("preview", preview_parts("demo0", capture_time=6.0, media_time=1.0))
    stats = hub.stats()
    assert stats["received"]["transcript"] == 2
    assert stats["rejected"]["predictions"] == {"schema": 1}
    assert stats["rejected"]["transcript"] == {"unknown-stream": 1}
    assert stats["rejected"]["monitor"] == {"schema": 1}
    assert [line["text"] for line in hub.state()["transcript"]["demo0"]] == ["I am fine"]


def test_a_client_that_stops_reading_keeps_only_the_newest_and_counts_the_rest() -> None:
    client = Client("stalled", max_data=4)
    for index in range(10):
        client.put_frame("demo0", b"frame%d" % index)
        client.put_data(f"data {index}")
    assert client.dropped_frames == 9 and client.dropped_data == 6
    assert client.frames == {"demo0": b"frame9"}
    assert list(client.data) == ["data 6", "data 7", "data 8", "data 9"]


def test_frames_wait_for_the_page_to_draw_the_ones_it_has() -> None:
    client = Client("page", max_in_flight=2)
    sent = []
    for index in range(6):  # one frame per stream each round; the page never acknowledges
        for stream in ("a", "b", "c"):
            client.put_frame(stream, f"{stream}{index}".encode())
        sent += [item for item in client.ready_items() if isinstance(item, bytes)]
    assert sent == [b"a0", b"b0"]  # two in flight, then nothing until an ack
    assert client.dropped_frames == 18 - 2 - 3  # put, less sent, less the newest waiting
    client.ack()
    assert client.ready_items() == [b"c5"]  # the newest of the stream that waited longest
    client.ack()
    client.ack()
    assert client.ready_items() == [b"a5", b"b5"]


def test_the_monitor_snapshot_round_trips_stage_statuses() -> None:
    class Socket:
        def __init__(self) -> None:
            self.sent: list[bytes] = []

        def send(self, data: bytes, flags: int = 0) -> None:
            self.sent.append(data)

    socket = Socket()
    view = MonitorView(socket, interval_s=0.0)  # type: ignore[arg-type]
    view.event({"time": 5.0, "event": "died", "stage": "features", "index": 0, "exit_code": 1})
    status = StageStatus("detect", 0, 42, Health.RUNNING,
                         counters=Counters(received=5, processed=5, dropped_in=1),
                         extra={"preview": {"published": 2}})
    view.update({"detect[0]": status}, {"detect[0]": 1})
    snapshot = decode_monitor([socket.sent[-1]])
    assert snapshot.stages["detect[0]"].counters.dropped_in == 1
    assert snapshot.restarts == {"detect[0]": 1}
    assert snapshot.events[0].detail == "exit_code=1"


def test_a_network_bind_needs_a_token_and_the_error_says_how(tmp_path: Path) -> None:
    assert parse_bind("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ValueError, match="--ui-bind"):
        parse_bind("8080")
    assert resolve_token("127.0.0.1:8080", None, {}) is None
    with pytest.raises(ValueError, match=f"--ui-bind 0.0.0.0:8080.*{TOKEN_ENV}.*--ui-token-file"):
        resolve_token("0.0.0.0:8080", None, {})
    assert resolve_token("0.0.0.0:8080", None, {TOKEN_ENV: TOKEN}) == TOKEN
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    assert resolve_token("192.168.1.5:80", token_file, {}) == TOKEN
    with pytest.raises(ValueError, match="at least"):
        resolve_token("0.0.0.0:8080", None, {TOKEN_ENV: "short"})
    assert token_ok(TOKEN, TOKEN) and not token_ok(TOKEN, TOKEN[:-1] + "x")
    assert not token_ok(TOKEN, None) and token_ok(None, None)


def test_hidemo_run_refuses_a_network_bind_without_a_token() -> None:
    env = {k: v for k, v in __import__("os").environ.items() if k != TOKEN_ENV}
    done = subprocess.run([sys.executable, "-m", "hidemo", "run", "--source", "demo",
                           "--ui-bind", "0.0.0.0:8080", "--duration", "1"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 2, done.stderr
    assert "--ui-bind 0.0.0.0:8080" in done.stderr and TOKEN_ENV in done.stderr


def test_the_page_and_its_socket_need_the_token_the_right_host_and_origin() -> None:
    hub = Hub(["demo0"], history_s=60.0)
    app = build_app(hub, token=TOKEN, host="127.0.0.1")
    with TestClient(app, base_url="http://127.0.0.1:8080") as client:
        assert client.get("/").status_code == 401
        page = client.get(f"/?token={TOKEN}")
        assert page.status_code == 200 and "hidemo live" in page.text
        assert client.get("/static/app.js").status_code == 200
        assert client.get("/api/stats", headers={"Authorization": f"Bearer {TOKEN}"}).json()[
            "clients"] == 0
        # a DNS name pointed at 127.0.0.1 by another site is not this page's host
        assert client.get(f"/?token={TOKEN}", headers={"host": "evil.example"}).status_code == 400
        from starlette.websockets import WebSocketDisconnect

        host = {"host": "127.0.0.1:8080"}
        with pytest.raises(WebSocketDisconnect), client.websocket_connect("/ws", headers=host):
            pass
        with pytest.raises(WebSocketDisconnect), client.websocket_connect(
                f"/ws?token={TOKEN}", headers={**host, "origin": "http://evil.example"}):
            pass
        with client.websocket_connect(f"/ws?token={TOKEN}", headers={
                **host, "origin": "http://127.0.0.1:8080"}) as ws:
            hello = ws.receive_json()
            assert hello["type"] == "hello" and hello["streams"] == ["demo0"]
            hub.receive("transcript", [b"demo0", b'{"text": "hello there"}'])
            hub.receive("preview", preview_parts("demo0", capture_time=time.monotonic() + 1,
                                                 media_time=1.0))
            assert ws.receive_json()["line"]["text"] == "hello there"


def test_the_view_takes_the_previews_of_every_fused_worker(tmp_path: Path) -> None:
    """In fused placement each worker publishes its streams' previews on its own endpoint;
    the view's one preview subscription is connected to all of them."""
    import zmq.asyncio

    from stream.ui.launcher import UiSpec
    from stream.ui.server import subscribe

    config = EndpointConfig(predictions=f"ipc://{tmp_path}/p", text=f"ipc://{tmp_path}/t")
    endpoints = Endpoints.for_config(config, tmp_path)
    spec = UiSpec(host="127.0.0.1", port=8080, streams=["s0", "s1", "s2"], history_s=10.0,
                  max_clients=2, endpoints=endpoints, endpoint_config=config,
                  preview_publishers=3)
    context = zmq.Context()
    view = zmq.asyncio.Context()
    sockets: dict[str, zmq.asyncio.Socket] = {}
    try:
        pubs = [open_endpoint(context, endpoints.for_worker(w, config), "preview", "bind",
                              config) for w in range(3)]
        sockets = subscribe(view, spec)
        sub = zmq.Socket.shadow(sockets["preview"].underlying)
        image = np.full((48, 64, 3), 90, np.uint8)
        seen: set[str] = set()
        for _ in range(200):  # each worker offers until its subscription has taken
            for worker, pub in enumerate(pubs):
                header = Header(stream=f"s{worker}", seq=1, generation=1, capture_time=1.0,
                                media_time=1.0)
                PreviewPublisher(pub, fps=100.0, width=32, quality=50).offer(
                    header, image, [], 1.0, None)
            while sub.poll(20):
                seen.add(decode_preview(sub.recv_multipart(), spec.streams).header.stream)
            if seen == {"s0", "s1", "s2"}:
                break
        assert seen == {"s0", "s1", "s2"}
    finally:
        for socket in sockets.values():
            socket.close(linger=0)
        view.term()
        context.destroy(linger=0)


def page_lines(client: Client) -> list[dict]:
    """The transcript lines queued for ``client``, as the page gets them."""
    lines = [json.loads(text)["line"] for text in client.data
             if json.loads(text)["type"] == "transcript"]
    client.data.clear()
    return lines


LINE = st.one_of(
    st.tuples(st.just("media"), st.floats(0.0, 60.0), st.floats(0.0, 5.0)),
    st.tuples(st.just("time"), st.floats(-5.0, 70.0), st.just(0.0)),
    st.tuples(st.just("none"), st.just(0.0), st.just(0.0)))  # timed on arrival (now)


@settings(max_examples=200, deadline=None)
@given(file=st.booleans(), offset=st.floats(100.0, 1000.0),
       events=st.lists(st.one_of(st.tuples(st.just("frame"), st.floats(0.0, 2.0)),
                                 st.tuples(st.just("line"), LINE)), max_size=40))
def test_a_transcript_line_reaches_the_page_when_the_video_has_reached_it(
        file: bool, offset: float, events: list) -> None:
    """Lines on either clock (a file's ASR on media time, a publisher on the monotonic
    clock, one with no time at all) and frames in any interleaving: a line goes to the page
    only once the newest frame has reached it, on the stream's one clock (media time for a
    file, wall time for a live source), each once, none lost; and none that the video has
    reached stays held."""
    hub = Hub(["s"], history_s=60.0, media_streams=["s"] if file else [])
    hub.to_wall = lambda t: t + 5000.0  # a fixed monotonic -> wall offset
    client = hub.join("page")
    assert client is not None
    media, said, shown = 0.0, 0, []
    for kind, value in events:
        if kind == "frame":
            media += value
            hub.receive("preview", preview_parts("s", capture_time=offset + media,
                                                 media_time=media))
        else:
            how, at, length = value
            body = ({"text": f"l{said}", "media_start": at, "media_end": at + length}
                    if how == "media" else {"text": f"l{said}", "time": offset + at}
                    if how == "time" else {"text": f"l{said}"})
            hub.receive("transcript", [b"s", json.dumps(body).encode()])
            said += 1
        for line in page_lines(client):
            if file:
                assert line["clock"] == "media" and "time_wall" not in line
                assert 0.0 <= line["media_start"] <= media + 1e-6, (line, media)
                assert line["media_end"] >= line["media_start"]
            else:
                assert line["clock"] == "wall" and "media_start" not in line
                assert line["time_wall"] <= offset + media + 5000.0 + 1e-6, (line, media)
            shown.append(line["text"])
        clock = hub.clocks.get("s")
        if clock is not None:
            held = hub.held["s"]
            assert all(held._media_start(line, clock) > clock.media_time for line in held.lines)
    assert len(shown) == len(set(shown))  # none twice
    assert len(shown) + len(hub.held["s"]) == said  # none lost: shown or still held
    assert hub.stats()["held_lines"] == {"s": said - len(shown)}
    assert [line["text"] for line in hub.state()["transcript"]["s"]] == shown[-50:]


def test_a_file_line_said_before_the_first_frame_waits_for_it_and_keeps_its_media_time() -> None:
    hub = Hub(["talk"], history_s=60.0, media_streams=["talk"])
    client = hub.join("page")
    for text, start, end in (("later", 14.0, 16.0), ("first", 1.0, 2.5)):
        body = {"text": text, "media_start": start, "media_end": end}
        hub.receive("transcript", [b"talk", json.dumps(body).encode()])
    assert page_lines(client) == []  # no frame yet: no clock, nothing shown
    hub.receive("preview", preview_parts("talk", capture_time=500.0, media_time=1.25))
    assert page_lines(client) == [{"stream": "talk", "text": "first", "clock": "media",
                                   "media_start": 1.0, "media_end": 2.5}]
    hub.receive("preview", preview_parts("talk", capture_time=512.0, media_time=13.25))
    assert page_lines(client) == []  # 14 s is still ahead of the video
    assert hub.state()["clocks"] == {"talk": "media"} and hub.stats()["held_lines"] == {
        "talk": 1}
    hub.receive("preview", preview_parts("talk", capture_time=513.0, media_time=14.25))
    assert [line["text"] for line in page_lines(client)] == ["later"]


def test_held_lines_are_bounded_and_the_oldest_go_first_counted() -> None:
    held = HeldLines(media=True, keep=3)
    for index in range(5):
        held.add(TextLine(text=f"l{index}", media_start=float(index)))
    assert len(held) == 3 and held.dropped == 2
    out = held.release(VideoClock(capture_time=110.0, media_time=10.0), lambda t: t)
    assert [line["text"] for line in out] == ["l2", "l3", "l4"]


def test_classify_echoes_each_line_on_the_clock_it_came_with(tmp_path: Path) -> None:
    """A file's ASR line goes to the view with its media span, not converted to a time
    (before the first frame it would have been the arrival time); a subtitle line with
    its time; a line without one with its arrival time."""
    context = zmq.Context()
    got: list[tuple[str, TextLine]] = []
    try:
        sub, pub = topic_pair(context, tmp_path, "text")
        topic = TextTopic(sub, lambda: (lambda texts: np.zeros((len(texts), 4))),
                          streams=["talk"], on_line=lambda s, line: got.append((s, line)),
                          clock=lambda stream: None)  # no frame seen yet
        bodies = [b'{"text": "asr", "origin": "asr", "media_start": 3.0, "media_end": 4.5}',
                  b'{"text": "subtitle", "time": 1234.5}', b'{"text": "no time"}']
        before = time.monotonic()
        for _ in range(200):  # until the subscription has connected
            pub.send_multipart([b"talk", bodies[0]])
            if sub.poll(20):
                break
        topic.poll()
        got.clear()
        for body in bodies:
            pub.send_multipart([b"talk", body])
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            sub.poll(100)
            topic.poll()
    finally:
        context.destroy(linger=0)
    (_, asr), (_, subtitle), (_, bare) = got
    assert (asr.media_start, asr.media_end, asr.time) == (3.0, 4.5, None)
    assert subtitle.time == 1234.5 and subtitle.media_start is None
    assert bare.time is not None and before <= bare.time <= time.monotonic()


def test_a_wildcard_bind_is_shown_as_the_addresses_another_machine_can_open() -> None:
    from stream.run.cli import ui_message

    interfaces = {"lo": ["127.0.0.1", "::1"], "eth0": ["192.168.1.5", "fe80::1%eth0",
                                                       "2001:db8::5"],
                  "wlan0": ["10.0.0.7"]}
    assert browser_urls("0.0.0.0", 8080, "?token=T", interfaces) == [
        "http://10.0.0.7:8080/?token=T", "http://192.168.1.5:8080/?token=T"]
    assert browser_urls("::", 80, "", interfaces) == [
        "http://10.0.0.7:80/", "http://192.168.1.5:80/", "http://[2001:db8::5]:80/"]
    assert browser_urls("192.168.1.5", 8080) == ["http://192.168.1.5:8080/"]
    assert browser_urls("box.lan", 8080) == ["http://box.lan:8080/"]
    assert browser_urls("0.0.0.0", 8080, "", {"lo": ["127.0.0.1"]}) == []
    lines = ui_message("0.0.0.0", 8080, True, None, interfaces)
    assert "0.0.0.0:8080" in lines[0] and "http://0.0.0.0" not in "".join(lines)
    assert lines[1:] == [f"  http://10.0.0.7:8080/?token=${TOKEN_ENV}",
                         f"  http://192.168.1.5:8080/?token=${TOKEN_ENV}"]
    token_file = Path("/etc/hidemo/token")
    assert ui_message("0.0.0.0", 8080, True, token_file, interfaces)[1] == (
        "  http://10.0.0.7:8080/?token=$(cat /etc/hidemo/token)")
    assert ui_message("127.0.0.1", 8080, False, None) == ["web view on http://127.0.0.1:8080/"]
    assert "127.0.0.1:8080" in ui_message("0.0.0.0", 8080, True, None, {"lo": ["127.0.0.1"]})[0]
    real = browser_urls("0.0.0.0", 8080)  # this machine's own interfaces
    assert all("127.0.0.1" not in url and "0.0.0.0" not in url for url in real)


def test_each_address_printed_for_a_wildcard_bind_serves_the_page() -> None:
    """The page bound to 0.0.0.0 (a real uvicorn server, with a token) answers at every
    address ``hidemo run`` prints for it, the token parameter filled in."""
    import socket
    import threading
    import urllib.request

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("0.0.0.0", 0))
        port = probe.getsockname()[1]
    urls = browser_urls("0.0.0.0", port, f"?token={TOKEN}")
    if not urls:
        pytest.skip("this machine has no network interface besides loopback")
    app = build_app(Hub(["demo0"], history_s=60.0), token=TOKEN, host="0.0.0.0")
    server = uvicorn.Server(uvicorn.Config(app, host="0.0.0.0", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        for url in urls:
            with urllib.request.urlopen(url, timeout=5) as response:
                assert response.status == 200 and b"hidemo live" in response.read(), url
    finally:
        server.should_exit = True
        thread.join(10)


def test_the_hub_forgets_persons_not_predicted_for_history_s() -> None:
    """An hour of passers-by: the state a page gets (``hello``) holds only the persons
    predicted in the last ``history_s``, so it stays small however long the run."""
    from sample_records import prediction

    hub = Hub(["s"], history_s=11.0)
    for person in range(200):  # a new person every 2 s
        record = prediction(person, stream="s").model_copy(
            update={"person": person, "emit_time": 1000.0 + 2 * person})
        hub.receive("predictions", [b"s", record.model_dump_json(by_alias=True).encode()])
    kept = sorted(r["person"] for r in hub.state()["predictions"])
    assert kept == list(range(194, 200)), kept  # predicted in the last 11 s
    assert sorted({point[1] for point in hub.state()["history"]["s"]}) == kept
