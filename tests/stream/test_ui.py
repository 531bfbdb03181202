"""``hidemo run --ui`` end to end: a real headless Chromium on the page, and a browser
connection that never reads, which must cost the pipeline nothing (checked by counters)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from browser import headless_chromium, save_screenshot
from pipeline_runs import finish, start_run, wait_for, write_config

from stream.media.demo import write_demo_video

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def up(url: str) -> bool:
    try:
        get_json(url)
    except OSError:
        return False
    return True


def test_chromium_shows_a_frame_with_a_box_and_live_labels_and_timeline(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(tmp_path, [{"spec": "demo"}], placement="auto")
    run = start_run(tmp_path, tiny_engine_dir, config, 90.0, "--ui-bind", f"127.0.0.1:{port}")
    try:
        wait_for(lambda: up(f"{base}/api/stats"), 60, "the web view to answer", run)
        with headless_chromium() as browser:
            browser.get(f"{base}/")

            def page(script: str) -> Any:
                return browser.execute_script(f"return {script};")

            wait_for(lambda: page("(window.hidemo.lastFrame.demo0 || {persons: []})"
                                  ".persons.length") >= 1, 60, "a frame with a person", run)
            wait_for(lambda: page("window.hidemo.predictions") >= 1, 30, "a prediction", run)
            frame = page("window.hidemo.lastFrame.demo0")
            # the box is on the canvas: pixels down its left edge have the box's colour
            on_edge = page("""(() => {
                const f = window.hidemo.lastFrame.demo0, p = f.persons[0];
                const ctx = document.querySelector('[data-stream=demo0] canvas.frame')
                    .getContext('2d');
                const want = f.colours[0].match(/\\w\\w/g).map((h) => parseInt(h, 16));
                let hits = 0;
                for (let i = 1; i <= 9; i++) {
                  const y = Math.round(p.box[1] + (p.box[3] - p.box[1]) * i / 10);
                  const px = ctx.getImageData(Math.round(p.box[0]), y, 1, 1).data;
                  if (want.every((v, k) => Math.abs(v - px[k]) < 8)) hits++;
                }
                return hits; })()""")
            assert on_edge >= 5, (on_edge, frame)
            keypoints = json.loads((tmp_path / "out" / "config.json").read_text())["keypoints"]
            if keypoints == "engines":  # detect made keypoints: the preview carries them
                assert frame["persons"][0]["keypoints"], frame
            label = page("document.querySelector('[data-stream=demo0] .person b').textContent")
            assert label in ("positive", "negative")
            points = page("window.hidemo.timelinePoints.demo0")
            predictions = page("window.hidemo.predictions")
            wait_for(lambda: page("window.hidemo.timelinePoints.demo0") >= points + 2
                     and page("window.hidemo.predictions") >= predictions + 2, 30,
                     "the timeline to grow by two predictions", run)
            wait_for(lambda: page("window.hidemo.monitorUpdates") >= 2, 20,
                     "stage health", run)
            stages = page("[...document.querySelectorAll('#stages tbody tr')]"
                          ".map((r) => r.dataset.stage)")
            assert {"capture[0]", "detect[0]", "features[0]", "classify[0]"} <= set(stages)
            ages = page("window.hidemo.frameAgesMs")
            assert ages and all(age > 0 for age in ages)  # shown after it was captured
            shot = save_screenshot(browser, tmp_path / "ui-page.png")
        assert shot.stat().st_size > 10_000
        ARTIFACTS.mkdir(exist_ok=True)
        kept = shutil.copy(shot, ARTIFACTS / "ui-page.png")
        print(f"\nweb view screenshot: {kept}")
    finally:
        run.send_signal(__import__("signal").SIGTERM)
        output = finish(run, timeout=60)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["ui"]["restarts"] == 0, output
    assert summary["ui"]["stats"]["received"]["preview"] > 0


def stalled_connection(port: int) -> socket.socket:
    """A WebSocket to the page that never reads a byte nor acknowledges a frame, with a
    tiny receive window: what a frozen browser tab looks like to the server."""
    conn = socket.socket()
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    conn.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    conn.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
    return conn


def reading_client(port: int, stop: threading.Event, frames: list[int]) -> threading.Thread:
    """A browser that keeps up: reads every message, counts the frames."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    def read() -> None:
        with connect(f"ws://127.0.0.1:{port}/ws") as ws:
            while not stop.is_set():
                try:
                    message = ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
                except ConnectionClosed:  # the run ended and the view with it
                    return
                if isinstance(message, bytes):
                    frames.append(len(message))
                    ws.send("ack")  # drawn, as the page says

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def offline_run(tmp_path: Path, engine_dir: Path, video: Path, *extra: str) -> dict[str, Any]:
    config = write_config(tmp_path, [{"spec": str(video), "id": "talk", "realtime": False}],
                          placement="fused", analysis={"capture_fps": 10.0})
    return {"process": start_run(tmp_path, engine_dir, config, 120.0, *extra)}


def test_a_stalled_browser_changes_nothing_the_pipeline_counts(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    # an offline file is analysed whole, at the pipeline's own pace (credits): its counts
    # are the same on every run, so a view that slowed any stage would show in them
    video = write_demo_video(tmp_path / "talk.avi", seconds=12.0, fps=10, width=320, height=240)
    plain_dir, ui_dir = tmp_path / "plain", tmp_path / "ui"
    plain_dir.mkdir()
    ui_dir.mkdir()
    plain = offline_run(plain_dir, tiny_engine_dir, video)["process"]
    assert plain.wait(timeout=150) == 0, finish(plain)
    port = free_port()
    run = offline_run(ui_dir, tiny_engine_dir, video, "--ui-bind", f"127.0.0.1:{port}")["process"]
    stop, frames = threading.Event(), []
    try:
        stats = f"http://127.0.0.1:{port}/api/stats"
        wait_for(lambda: up(stats), 60, "the web view to answer", run)
        stalled = stalled_connection(port)
        reader = reading_client(port, stop, frames)
        wait_for(lambda: len(get_json(stats)["per_client"]) == 2, 20, "both clients", run)
        stalled_name = f"127.0.0.1:{stalled.getsockname()[1]}"

        def stalled_stats() -> dict[str, Any]:
            return next(c for c in get_json(stats)["per_client"] if c["name"] == stalled_name)

        # the frozen tab's queue fills and then drops (counted) while the run goes on
        wait_for(lambda: stalled_stats()["dropped_frames"] >= 3, 90,
                 "the stalled client's queue to drop frames", run)
        during = get_json(stats)
        output = finish(run, timeout=150)
    finally:
        stop.set()
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, output
    reader.join(5)
    stalled.close()
    with_ui = json.loads((ui_dir / "out" / "summary.json").read_text())
    without = json.loads((plain_dir / "out" / "summary.json").read_text())
    # the pipeline's counts are those of the run without a view
    for key in ("frames", "dropped", "lost", "predictions"):
        assert with_ui["streams"]["talk"][key] == without["streams"]["talk"][key], key
    assert with_ui["streams"]["talk"]["dropped"] == 0 and with_ui["streams"]["talk"]["lost"] == 0
    assert with_ui["processed_then_dropped"] == without["processed_then_dropped"]
    for stage in ("capture[0]", "detect[0]", "features[0]", "classify[0]"):
        counters = with_ui["stages"][stage]["counters"]
        assert counters["dropped_in"] == without["stages"][stage]["counters"]["dropped_in"]
        assert counters["dropped_out"] == without["stages"][stage]["counters"]["dropped_out"]
    preview = with_ui["stages"]["detect[0]"]["extra"]["preview"]
    assert preview["published"] > 0 and preview["unsent"] == 0 and preview["failed"] == 0
    assert "preview" not in without["stages"]["detect[0]"]["extra"]  # no view, no cost
    # the frozen tab lost frames only for itself: the reading client got them
    stalled_during = next(c for c in during["per_client"] if c["name"] == stalled_name)
    reader_during = next(c for c in during["per_client"] if c["name"] != stalled_name)
    assert stalled_during["sent_frames"] <= 2 and stalled_during["in_flight"] == 2, during
    assert reader_during["dropped_frames"] <= 1, during
    assert reader_during["sent_frames"] > stalled_during["sent_frames"], during
    assert len(frames) >= reader_during["sent_frames"] - 1
    assert with_ui["ui"]["restarts"] == 0
