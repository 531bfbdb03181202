"""The web view on a minute of several real people with speech, in a real headless Chromium.

``hidemo run --ui --asr on`` on a paced file (:mod:`people_video`: real photographs panned
across, so people enter and leave; espeak-ng speaking), sampled by the test about every
second while it plays. At every sample: no transcript line on the page is stamped later
than the frame on screen, and each is stamped with its media time (m:ss into the file);
the person chips are exactly the persons with a prediction seen in the last
``person_timeout_s`` of the video, the others folded into "N earlier"; box tags never
cover each other. At the end: the timeline's axis grew with the run and has a legend, the
stage table's counters are right for every stage, a screenshot is saved
(``test-artifacts/ui-people.png``), and a WebSocket client that never reads held at most
its two frames while the page and the pipeline went on.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from browser import headless_chromium, save_screenshot
from people_video import make_people_video
from pipeline_runs import finish, read_jsonl, start_run, wait_for, write_config
from speech_video import missing_tools
from test_ui import ARTIFACTS, free_port, get_json, stalled_connection, up

pytestmark = pytest.mark.slow

SECONDS = 60.0
FPS = 8.0
STREAM = "street"
PERSON_TIMEOUT_S = 3.0

SAMPLE = """return (() => {
  const h = window.hidemo, frame = h.lastFrame.STREAM_ID || null;
  const lines = [...document.querySelectorAll('[data-stream=STREAM_ID] .transcript li')]
    .map((li) => ({clock: li.dataset.clock, time: Number(li.dataset.time),
                   stamp: li.firstChild.textContent, text: li.textContent}));
  return {frame: frame && {media: frame.media_time, generation: frame.generation,
                           tags: frame.tags, persons: frame.persons.length},
          lines, chips: h.chips.STREAM_ID || null, sightings: h.sightings.STREAM_ID || [],
          held: h.heldLines.STREAM_ID || 0, axis: h.timelineAxis.STREAM_ID || null,
          legend: [...document.querySelectorAll('[data-stream=STREAM_ID] .legend .key')]
            .map((k) => k.dataset.person ? Number(k.dataset.person) : k.textContent),
          chipEls: [...document.querySelectorAll('[data-stream=STREAM_ID] .labels .person')]
            .map((c) => c.dataset.person ? Number(c.dataset.person) : 'earlier:' +
                 c.dataset.earlier),
          stages: Object.fromEntries([...document.querySelectorAll('#stages tbody tr')]
            .map((r) => [r.dataset.stage, [...r.children].map((td) => td.textContent)])),
          predictions: h.predictions};
})();""".replace("STREAM_ID", STREAM)


def media_clock(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def check_sample(sample: dict[str, Any], seen_lines: dict[str, float]) -> None:
    """What must hold on the page at any moment."""
    frame = sample["frame"]
    for line in sample["lines"]:  # stamped on the video's clock, never ahead of the frame
        assert line["clock"] == "media", line
        assert frame is not None and line["time"] <= frame["media"] + 1e-6, (line, frame)
        assert line["stamp"] == media_clock(line["time"]), line
        seen_lines[line["text"][len(line["stamp"]) + 1:]] = line["time"]
    chips = sample["chips"]
    if frame is None or chips is None:
        return
    # the persons seen within person_timeout_s of the frame on screen, from the raw log of
    # every frame the page drew
    recent = {person for generation, media, ids in sample["sightings"]
              for person in ids
              if generation == frame["generation"]
              and frame["media"] - media <= PERSON_TIMEOUT_S + 1e-6}
    people = set(chips["people"])
    assert set(chips["shown"]) == people & recent, (chips, recent)
    assert chips["earlier"] == len(people - recent), chips
    assert len(chips["shown"]) <= len(recent)
    chip_ids = [c for c in sample["chipEls"] if isinstance(c, int)]
    assert chip_ids == sorted(chips["shown"]), sample["chipEls"]
    folded = [c for c in sample["chipEls"] if isinstance(c, str)]
    assert folded == ([f"earlier:{chips['earlier']}"] if chips["earlier"] else []), folded
    tags = frame["tags"] or []
    for i, a in enumerate(tags):  # no tag covers another
        for b in tags[i + 1:]:
            assert not (a[0] < b[0] + b[2] and b[0] < a[0] + a[2]
                        and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]), tags


def check_tag_placement(page: Any) -> None:
    """The page's tag placement on crowds of random boxes: on the canvas, and no two tags
    overlapping wherever the canvas has room for them all."""
    rng = random.Random(27)
    cases = []
    for _ in range(200):
        boxes = []
        for _ in range(rng.randint(1, 12)):
            x, y = rng.uniform(-20, 460), rng.uniform(-20, 340)
            boxes.append([x, y, x + rng.uniform(5, 200), y + rng.uniform(5, 300)])
        cases.append([boxes, [rng.uniform(30, 140) for _ in boxes]])
    placed = page(f"return {json.dumps(cases)}.map(([b, w]) => "
                  "window.hidemo.placeTags(b, w, 480, 360));")
    for (boxes, widths), tags in zip(cases, placed, strict=True):
        assert len(tags) == len(boxes)
        for (x, y, w, h), width in zip(tags, widths, strict=True):
            assert x >= 0 and y >= 0 and x + w <= 480 + 1e-6 and y + h <= 360 + 1e-6
            assert w == pytest.approx(min(width, 480))
        for i, a in enumerate(tags):  # 12 tags of <= 140 x 20 always fit on 480 x 360
            for b in tags[i + 1:]:
                assert not (a[0] < b[0] + b[2] and b[0] < a[0] + a[2]
                            and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]), (boxes, tags)


def test_a_minute_of_people_and_speech_stays_readable_and_on_one_clock(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    if (why := missing_tools()) is not None:
        pytest.skip(why)
    pytest.importorskip("faster_whisper")
    video = make_people_video(tmp_path / "video", seconds=SECONDS, fps=FPS)
    config = write_config(tmp_path, [{"spec": str(video.path), "id": STREAM}],
                          placement="fused", analysis={"capture_fps": 5.0},
                          classify={"person_timeout_s": PERSON_TIMEOUT_S})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    run = start_run(tmp_path, tiny_engine_dir, config, SECONDS + 90.0,
                    "--ui-bind", f"127.0.0.1:{port}", "--asr", "on")
    samples: list[dict[str, Any]] = []
    seen_lines: dict[str, float] = {}
    held_at_start = None
    stalled = None
    try:
        wait_for(lambda: up(f"{base}/api/stats"), 120, "the web view to answer", run)
        with headless_chromium() as browser:
            browser.get(f"{base}/")

            def page(script: str) -> Any:
                return browser.execute_script(script)

            check_tag_placement(page)
            stalled = stalled_connection(port)
            stalled_name = f"127.0.0.1:{stalled.getsockname()[1]}"
            wait_for(lambda: page(f"return !!window.hidemo.lastFrame.{STREAM};"), 120,
                     "the first frame", run)
            held_at_start = get_json(f"{base}/api/stats")["held_lines"][STREAM]
            while run.poll() is None:
                sample = page(SAMPLE)
                check_sample(sample, seen_lines)
                samples.append(sample)
                if sample["frame"]["media"] >= SECONDS - 6:
                    break
                time.sleep(1.0)
            assert samples and samples[-1]["frame"]["media"] >= SECONDS - 6, (
                "the run ended before its video did")
            stats = get_json(f"{base}/api/stats")
            shot = save_screenshot(browser, tmp_path / "ui-people.png")
    finally:
        output = finish(run, timeout=120)  # the file's end ends the run
        if stalled is not None:
            stalled.close()
    assert run.returncode == 0, output
    ARTIFACTS.mkdir(exist_ok=True)
    print(f"\nweb view screenshot: {shutil.copy(shot, ARTIFACTS / 'ui-people.png')}")
    out = tmp_path / "out"
    predictions = read_jsonl(out / "predictions.jsonl")
    asr_lines = read_jsonl(out / f"transcript-{STREAM}.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    last = samples[-1]

    # several people came and went: the fold was needed, and it held at every sample
    persons = {record["person"] for record in predictions}
    assert len(persons) >= 2, persons
    assert any(s["chips"] and s["chips"]["earlier"] for s in samples), "nobody ever left"
    assert all(set(s["chips"]["people"]) <= persons for s in samples if s["chips"])
    # the ASR ran ahead of the video; its lines waited for it and kept their media times
    assert held_at_start and held_at_start > 0, held_at_start
    said = {line["text"]: line["media_start"] for line in asr_lines}
    assert len(seen_lines) >= 3, seen_lines
    for text, at in seen_lines.items():
        assert text in said and at == pytest.approx(said[text], abs=1e-3), (text, at, said)
    # the timeline's axis grew with the run (not a fixed 5 minutes) and names its persons
    spans = [s["axis"]["span"] for s in samples if s["axis"]]
    assert spans[0] <= 35 and spans[-1] > spans[0] and max(spans) <= 300, spans
    assert last["legend"] and all(isinstance(k, int) for k in last["legend"][:10])
    # on the file's clock, as its transcript: ticks m:ss into the file, the axis inside it
    axis = last["axis"]
    assert axis["clock"] == "media", axis
    assert axis["start"] >= 0 and axis["end"] <= SECONDS + 1, axis
    assert last["frame"] and axis["end"] >= last["frame"]["media"] - 1e-6, (axis, last["frame"])
    assert axis["labels"] and all(re.fullmatch(r"\d+:\d\d", label) for label in axis["labels"])
    # the stage table: every stage's counters, classify's out and the ASR's ms/item included
    stages = last["stages"]
    columns = ["stage", "pid", "state", "in", "out", "drops", "malformed", "ms", "restarts",
               "notes"]
    table = {name: dict(zip(columns, cells, strict=True)) for name, cells in stages.items()}
    assert int(table["classify[0]"]["out"]) > 0, table
    for name in ("capture[0]", "detect[0]", "features[0]", "classify[0]", "asr[0]"):
        assert float(table[name]["ms"]) > 0, (name, table)
    counters = summary["stages"]["classify[0]"]["counters"]
    assert counters["sent"] == len(predictions)
    assert all(record["window"]["start"] >= 0 for record in predictions)
    # the frozen client held two frames at most and dropped the rest, counted (until the
    # server's keepalive gave up on it, if it did), while the page went on, and the
    # preview was never refused by its socket
    clients = stats["per_client"] + stats["departed"]
    frozen = [c for c in clients if c["name"] == stalled_name]
    assert frozen and frozen[0]["sent_frames"] <= 2 and frozen[0]["in_flight"] <= 2, clients
    assert frozen[0]["dropped_frames"] >= 3, clients
    assert max(c["sent_frames"] for c in stats["per_client"]) > 10 * frozen[0]["sent_frames"]
    preview = summary["stages"]["detect[0]"]["extra"]["preview"]
    assert preview["published"] > 0 and preview["unsent"] == 0 and preview["failed"] == 0
    assert summary["streams"][STREAM]["lost"] == 0 and summary["ui"]["restarts"] == 0
