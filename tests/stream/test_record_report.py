"""``hidemo run --record`` and ``hidemo report`` end to end: a real tiny-profile run on two
files (one speaking), its MP4s checked by ffprobe against the run, a SIGTERM mid-run, and
the report opened in a real headless Chromium: no console error, no network request, one
timeline per (stream, person) of predictions.jsonl."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from browser import chromium_or_skip, save_screenshot
from pipeline_runs import by_stream, finish, read_jsonl, start_run, wait_for, write_config
from speech_video import SENTENCES, make_speech_video, missing_tools
from test_record_parts import ffprobe

from stream.media.demo import write_demo_video

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
FPS = 10.0


@pytest.fixture(scope="module")
def recorded_run(tiny_engine_dir: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> dict[str, Any]:
    """One run, to its end, of a speaking clip and a silent one read in real time, with
    ``--record``: its folder, the files' lengths, its console."""
    if (why := missing_tools()) is not None:
        pytest.skip(why)
    tmp_path = tmp_path_factory.mktemp("recorded")
    talk = make_speech_video(tmp_path / "talk", SENTENCES[:2], lead_s=1.0, gap_s=1.0,
                             tail_s=1.5, fps=FPS, size=(320, 240))
    street = write_demo_video(tmp_path / "street.avi", talk.seconds, fps=FPS, width=320,
                              height=240)
    config = write_config(tmp_path, [{"spec": str(talk.path), "id": "talk"},
                                     {"spec": str(street), "id": "street"}])
    out = tmp_path / "out"
    run = start_run(tmp_path, tiny_engine_dir, config, 300.0, "--record",
                    str(out / "rec.mp4"))
    output = finish(run, timeout=300)
    assert run.returncode == 0, output
    return {"out": out, "seconds": {"talk": talk.seconds, "street": talk.seconds},
            "output": output}


def test_the_recording_is_playable_as_long_as_the_run_and_holds_every_frame_it_counted(
        recorded_run: dict[str, Any]) -> None:
    out = recorded_run["out"]
    summary = json.loads((out / "summary.json").read_text())
    record = summary["record"]
    assert record["restarts"] == 0 and record["exit_codes"] == [0], record
    assert record["codec"] in ("libx264", "mpeg4") and record["fps"] > 0
    traces = by_stream(read_jsonl(out / "frames.jsonl"))
    published = sum(p["published"] for p in record["publishers"].values())
    assert published > 0
    for stream, seconds in recorded_run["seconds"].items():
        figures = record["streams"][stream]
        path = out / f"rec.{stream}.mp4"
        assert figures["files"] == [str(path)]
        probe = ffprobe(path)
        # every frame the recorder counted is in the file, and nothing else
        assert probe["frames"] == figures["frames"] == figures["received"] > 0
        # as long as the run: the file read in real time, and the frames that reached
        # the classifier (by their capture times)
        assert abs(probe["seconds"] - seconds) <= 0.1 * seconds, (probe, seconds)
        frames = traces[stream]
        span = frames[-1]["capture_time"] - frames[0]["capture_time"] + 1 / record["fps"]
        assert abs(probe["seconds"] - span) <= 0.1 * span, (probe, span)
        assert figures["received"] + figures["dropped"] >= len(frames)
    assert "recording" in recorded_run["output"]


def test_a_sigterm_mid_run_still_leaves_a_playable_recording(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, [{"spec": "demo", "width": 320, "height": 240}])
    out = tmp_path / "out"
    run = start_run(tmp_path, tiny_engine_dir, config, 300.0, "--record", str(out / "r.mp4"))
    try:
        wait_for(lambda: len(read_jsonl(out / "predictions.jsonl")) >= 3, 120,
                 "three predictions", run)
    finally:
        run.send_signal(signal.SIGTERM)
        output = finish(run, timeout=90)
    summary = json.loads((out / "summary.json").read_text())
    figures = summary["record"]["streams"]["demo0"]
    probe = ffprobe(out / "r.mp4")
    assert probe["frames"] == figures["frames"] > 5, output
    frames = read_jsonl(out / "frames.jsonl")
    span = frames[-1]["capture_time"] - frames[0]["capture_time"]
    assert abs(probe["seconds"] - span) <= 0.1 * span + 0.5, (probe, span)


def chromium_with_logs() -> Any:
    """Headless Chromium that keeps its console and its network events (performance log)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1800", "--hide-scrollbars"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def requested_urls(driver: Any) -> list[str]:
    """Every URL the page asked the network stack for since the last call."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_the_report_opens_offline_and_shows_every_persons_timeline(
        recorded_run: dict[str, Any], tmp_path: Path) -> None:
    out = recorded_run["out"]
    report_dir = tmp_path / "report"
    made = subprocess.run([sys.executable, "-m", "hidemo", "report", str(out), "--out",
                           str(report_dir)], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    page = report_dir / "report.html"
    pngs = sorted(p.name for p in report_dir.glob("report-*.png"))
    assert "report-latency.png" in pngs and any("timeline-talk" in p for p in pngs)
    predictions = read_jsonl(out / "predictions.jsonl")
    expected: dict[tuple[str, int], int] = {}
    for record in predictions:
        key = (record["stream"], record["person"])
        expected[key] = expected.get(key, 0) + 1
    assert {stream for stream, _ in expected} == {"talk", "street"}
    driver = chromium_with_logs()
    try:
        driver.get(page.as_uri())
        wait_for(lambda: driver.execute_script(
            "return [...document.images].every((i) => i.complete && i.naturalWidth > 0)"),
            30, "every picture drawn")
        console = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        assert console == [], console
        urls = requested_urls(driver)
        assert urls and all(u.startswith(("file://", "data:")) for u in urls), urls
        fetched = driver.execute_script(
            "return performance.getEntriesByType('resource').map((e) => e.name)")
        assert all(name.startswith("data:") for name in fetched), fetched
        data = json.loads(driver.execute_script(
            "return document.getElementById('report-data').textContent"))
        series = {(s["stream"], s["person"]): s["points"] for s in data["series"]}
        assert series == expected
        shown = driver.execute_script(
            "return [...document.querySelectorAll('img.timeline')].map((i) =>"
            " [i.dataset.stream, i.dataset.persons, i.naturalHeight])")
        drawn = {(stream, int(p)) for stream, persons, _ in shown for p in persons.split()}
        assert drawn == set(expected) and all(height > 100 for *_, height in shown)
        rows = driver.execute_script(
            "return [...document.querySelectorAll('table.persons tr[data-person]')].map("
            "(r) => [r.dataset.stream, +r.dataset.person, +r.cells[1].textContent])")
        assert {(s, p): n for s, p, n in rows} == expected
        banner = driver.execute_script(
            "const b = document.getElementById('random-weights'); return b && b.textContent")
        assert banner and "RANDOM WEIGHTS" in banner  # the tiny profile's engines
        said = driver.execute_script(
            "return [...document.querySelectorAll('table.transcript td:last-child')]"
            ".map((c) => c.textContent).join(' ')")
        assert "happy" in said.lower(), said
        shot = save_screenshot(driver, tmp_path / "report-page.png")
        # the checks above can fail: a page that fetches something is caught by them
        leaky = tmp_path / "leaky.html"
        leaky.write_text('<!DOCTYPE html><img src="http://127.0.0.1:9/x.png">')
        driver.get(leaky.as_uri())
        assert any(u.startswith("http://127.0.0.1:9/") for u in requested_urls(driver))
    finally:
        driver.quit()
    ARTIFACTS.mkdir(exist_ok=True)
    print(f"\nreport screenshot: {shutil.copy(shot, ARTIFACTS / 'report-page.png')}")
