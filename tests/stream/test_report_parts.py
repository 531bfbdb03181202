"""``hidemo report`` without a pipeline: run folders written here (records made with the
real schema), including broken and partial ones; what the page shows, against what the
folder holds."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_record_parts import prediction

from stream.report.outputs import read_outputs
from stream.report.page import PERSONS_PER_FIGURE, build_report

MODALITIES = ("image", "keypoints", "text")


def write_run(folder: Path, persons: dict[str, list[int]], *, random: bool = True,
              summary: bool = True, bad_lines: int = 0,
              modalities: tuple[str, ...] = ("image", "keypoints")) -> dict[tuple[str, int], int]:
    """A run folder with ``persons`` per stream, each with 3 to 5 predictions; returns the
    predictions per (stream, person)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines, counts = [], {}
    for stream, ids in persons.items():
        for person in ids:
            n = 3 + person % 3
            counts[(stream, person)] = n
            for k in range(n):
                record = prediction(stream, person, 100.0 + k, (person * 7 + k) % 10 / 10)
                data = record.model_dump(mode="json", by_alias=True)
                data.update(seq=k, window={"start": k - 4.0, "end": float(k + person % 4),
                                           "seconds": 4.0},
                            modalities=list(modalities), random_weights=random,
                            random_engines=["classifier"] if random else [])
                lines.append(json.dumps(data))
    lines += ["{broken"] * bad_lines
    (folder / "predictions.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "frames.jsonl").write_text(json.dumps({
        "stream": "a", "seq": 0, "generation": 1, "capture_time": 1.0, "arrival": 1.1,
        "age_frames": 0.1, "dropped": 0, "lost": 0, "persons": 1,
        "latency_ms": {"detect": 12.0, "total": 40.0}, "stamps": []}) + "\n")
    (folder / "config.json").write_text(json.dumps({
        "profile": "tiny", "sources": [{"spec": f"{s}.mp4", "id": s} for s in persons]}))
    first = next((s for s in persons if "/" not in s), "a")
    (folder / f"transcript-{first}.jsonl").write_text(json.dumps({
        "stream": first, "text": "words </script><b>said</b>", "media_start": 0.5,
        "media_end": 2.0, "time": None, "origin": "asr"}) + "\n")
    if summary:
        (folder / "summary.json").write_text(json.dumps({
            "reason": "all sources ended", "exit_code": 0, "wall_s": 12.0,
            "failures": [], "warnings": ["a warning"],
            "streams": {s: {"frames": 50, "dropped": 2, "lost": 0, "predictions": 9,
                            "latency_ms": {"p50": 80.0, "p95": 120.0, "max": 150.0},
                            "rates": {"frames": 5.0}} for s in persons},
            "engines": [{"engine": "classifier", "model": "m", "precision": "fp32",
                         "onnx_sha256": "ab" * 32, "source_sha256": "cd" * 32,
                         "random_weights": str(random).lower()}]}))
    return counts


def shown_persons(html: str) -> list[tuple[str, int]]:
    """(stream, person) of every timeline picture's ``data-persons``, as often as shown."""
    out = []
    for stream, ids in re.findall(r'<img class="timeline"[^>]*data-stream="([^"]*)" '
                                  r'data-persons="([^"]*)"', html):
        out += [(stream, int(p)) for p in ids.split()]
    return out


def test_every_person_is_one_series_and_in_exactly_one_picture(tmp_path: Path) -> None:
    many = list(range(2 * PERSONS_PER_FIGURE + 3))  # a street: three pictures
    counts = write_run(tmp_path / "run", {"street": many, "desk": [0, 5]}, bad_lines=2)
    report = build_report(read_outputs(tmp_path / "run"))
    series = {(s["stream"], s["person"]): s["points"] for s in report.data["series"]}
    assert series == counts
    shown = shown_persons(report.html)
    assert sorted(shown) == sorted(counts)  # each once
    assert sum(name.startswith("report-timeline-street") for name in report.pngs) == 3
    assert all(png[:8] == b"\x89PNG\r\n\x1a\n" for png in report.pngs.values())
    assert "predictions.jsonl: 2 line(s) could not be read" in report.html


def test_the_page_fetches_nothing_and_escapes_what_the_run_said(tmp_path: Path) -> None:
    write_run(tmp_path / "run", {"a": [1]})
    html = build_report(read_outputs(tmp_path / "run")).html
    for attribute in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attribute.startswith("data:"), attribute
    assert "<link rel=\"stylesheet\"" not in html and "@import" not in html
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts == ['<script type="application/json" id="report-data">']
    assert "words &lt;/script&gt;&lt;b&gt;said&lt;/b&gt;" in html  # the transcript table
    block = html.split('id="report-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(block)["transcript_lines"] == 1


def test_random_weights_are_said_loudly_and_only_then(tmp_path: Path) -> None:
    write_run(tmp_path / "random", {"a": [1]}, random=True)
    write_run(tmp_path / "trained", {"a": [1]}, random=False)
    random = build_report(read_outputs(tmp_path / "random")).html
    trained = build_report(read_outputs(tmp_path / "trained")).html
    assert 'id="random-weights"' in random and "RANDOM WEIGHTS: classifier" in random
    assert "random-weights" not in trained and '<td class="bad">' not in trained


def test_a_killed_run_still_gets_a_report_that_says_what_is_missing(tmp_path: Path) -> None:
    counts = write_run(tmp_path / "run", {"a": [1, 2]}, summary=False)
    report = build_report(read_outputs(tmp_path / "run"))
    assert len(report.data["series"]) == len(counts)
    assert "summary.json is missing: the run did not finish" in report.html


@pytest.mark.slow
@settings(max_examples=8, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "cam/1"]),
                       st.lists(st.integers(0, 40), min_size=1, max_size=15, unique=True),
                       min_size=1, max_size=3),
       st.lists(st.sampled_from(MODALITIES), max_size=3, unique=True))
def test_any_run_shows_each_of_its_persons_once(tmp_path_factory: pytest.TempPathFactory,
                                                persons: dict[str, list[int]],
                                                modalities: list[str]) -> None:
    folder = tmp_path_factory.mktemp("run")
    counts = write_run(folder, persons, modalities=tuple(modalities))
    report = build_report(read_outputs(folder))
    assert {(s["stream"], s["person"]): s["points"] for s in report.data["series"]} == counts
    assert sorted(shown_persons(report.html)) == sorted(counts)


def hidemo_report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hidemo", "report", *args],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_hidemo_report_writes_the_page_and_refuses_a_folder_that_is_not_a_run(
        tmp_path: Path) -> None:
    write_run(tmp_path / "run", {"a": [1]})
    made = hidemo_report(str(tmp_path / "run"), "--out", str(tmp_path / "page"))
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "page" / "report.html").stat().st_size > 10_000
    assert (tmp_path / "page" / "report-latency.png").is_file()
    assert "1 person timeline(s) over 1 stream(s)" in made.stderr
    (tmp_path / "empty").mkdir()
    for folder in ("empty", "absent"):
        refused = hidemo_report(str(tmp_path / folder))
        assert refused.returncode == 2, refused.stderr
        assert "hidemo run" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "empty" / "report.html").exists()
