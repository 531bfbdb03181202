"""A full disk, start to end, on a real small file system (:mod:`small_disk`).

Full before the start: ``hidemo run`` refuses (exit 2) naming the output folder and the
free space it needs, writes nothing and starts no stage. Full mid-run: the stages go on,
the JSONL sinks count what they could not write, every JSONL file still parses line by
line, and the verdict reaches the console (exit 1) even when ``summary.json`` cannot be
written, which the console then says.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from pipeline_runs import finish, read_jsonl, start_run, wait_for, write_config
from sample_records import prediction
from small_disk import fill, free_bytes, small_disk

from stream.config import load_config
from stream.run.cli import _print_summary, write_before_start, write_summary
from stream.run.preflight import OUT_MIN_FREE_BYTES, PreflightError, check_disk
from stream.stages.sinks import JsonlSink, Sinks

DISK_KIB = OUT_MIN_FREE_BYTES // 1024 + 4096
"""Room for the preflight's minimum and a few MiB over it: the run starts, then is filled."""


def parse_jsonl(path: Path) -> list[Any]:
    """Every line of ``path`` as JSON; fails on a partial or corrupt line."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path.name}: partial last line {data[-60:]!r}"
    return [json.loads(line) for line in data.splitlines()]


def tiny_run_config(tmp_path: Path, out: Path) -> Any:
    return load_config(None, {"sources": [{"spec": "demo"}], "profile": "tiny", "out": out})


def test_preflight_refuses_a_full_output_folder_naming_it_and_the_room_needed(
        tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", DISK_KIB) as disk:
        config = tiny_run_config(tmp_path, disk / "runs" / "out")  # not made yet: its parent
        assert check_disk(config) == []
        filler = fill(disk)
        problems = check_disk(config)
        assert len(problems) == 1, problems
        text = str(problems[0])
        assert str(disk / "runs" / "out") in text
        assert f"at least {OUT_MIN_FREE_BYTES / 2**20:.1f} MiB" in text and "--out" in text
        filler.unlink()  # the fix it names: free space there
        assert check_disk(config) == []
        config = tiny_run_config(tmp_path, tmp_path / "elsewhere")  # or: another folder
        fill(disk)
        assert check_disk(config) == []


@pytest.mark.slow
def test_hidemo_run_on_a_full_disk_is_refused_before_any_stage_with_exit_2(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", DISK_KIB) as disk:
        out = disk / "out"
        fill(disk)
        config = write_config(tmp_path, [{"spec": "demo", "width": 320, "height": 240}],
                              asr={"mode": "off"})
        process = start_run(tmp_path, tiny_engine_dir, config, 5.0, "--out", str(out))
        output = finish(process)
        assert process.returncode == 2, output
        assert "Traceback" not in output, output
        assert "hidemo: error: hidemo run cannot start (1 problem(s))" in output, output
        assert f"output folder {out}: " in output and " free, a run needs at least " \
            f"{OUT_MIN_FREE_BYTES / 2**20:.1f} MiB" in output, output
        assert "started pid=" not in output
        assert not out.exists()  # nothing written, not even the folder


def test_a_disk_that_fills_after_the_preflight_refuses_the_run_with_the_same_fix(
        tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 256) as disk:
        (disk / "out").mkdir()
        (disk / "out" / "config.json").write_text('{"earlier": "run"}')
        fill(disk)
        with pytest.raises(PreflightError) as refused:
            write_before_start(disk / "out" / "config.json", "{}" + " " * 100_000)
        text = str(refused.value)
        assert f"output folder {disk / 'out'}" in text and "config.json could not be " \
            "written (No space left on device)" in text and "--out" in text, text
        assert json.loads((disk / "out" / "config.json").read_text()) == {"earlier": "run"}


def test_a_summary_that_cannot_be_written_fails_the_run_and_the_console_says_why(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with small_disk(tmp_path / "disk", 256) as disk:
        path = disk / "summary.json"
        path.write_text('{"reason": "an earlier run"}')
        fill(disk)
        summary = {"reason": "duration reached", "exit_code": 0, "wall_s": 3.0,
                   "failures": [], "warnings": ["source x ended early"],
                   "streams": {"demo0": {"frames": 9}},  # figures missing: still printed
                   "restarts": {}, "pad": "x" * 100_000}
        assert write_summary(path, summary) == 1
        assert not path.exists()  # absent, not an earlier run's, not a part
        assert summary["exit_code"] == 1
    _print_summary(summary, tmp_path)
    console = capsys.readouterr().err
    assert "hidemo run: duration reached after 3.0 s" in console
    assert (f"FAILED: {path} could not be written (No space left on device) (an earlier "
            "run's summary.json there was removed)") in console
    assert "warning: source x ended early" in console
    assert "demo0: 0 predictions, 9 frames" in console


def test_sinks_on_a_disk_that_fills_keep_whole_lines_count_and_name_the_error(
        tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 256) as disk:
        log = JsonlSink(disk / "predictions.jsonl")
        trace = JsonlSink(disk / "frames.jsonl", name="frames")
        sinks = Sinks([log])
        for seq in range(3):
            sinks.emit(prediction(seq, pad=300))
        fill(disk)
        for seq in range(3, 10):  # more than the file's last block has left
            sinks.emit(prediction(seq, pad=5000))
        with pytest.raises(OSError):
            trace.emit(prediction(0), b"{}" + b" " * 8192)
        sinks.close()
        trace.close()
        seqs = [r["seq"] for r in parse_jsonl(disk / "predictions.jsonl")]
        assert seqs == list(range(len(seqs))) and 3 <= len(seqs) < 10
        assert sinks.errors == {"jsonl": 10 - len(seqs)}
        assert sinks.problems == {"jsonl": "No space left on device: "
                                           f"{disk / 'predictions.jsonl'}"}
        assert parse_jsonl(disk / "frames.jsonl") == [] and trace.failed == 1


class Filler(threading.Thread):
    """Keeps the disk full while the run goes: what a truncated line gives back is taken
    again, as another program writing to the same disk would."""

    def __init__(self, disk: Path) -> None:
        super().__init__(daemon=True)
        self.disk = disk
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.02):
            fill(self.disk)


@pytest.mark.slow
def test_a_disk_that_fills_mid_run_keeps_whole_lines_and_shows_the_verdict(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", DISK_KIB) as disk:
        out = disk / "out"
        config = write_config(tmp_path, [{"spec": "demo", "width": 320, "height": 240}],
                              asr={"mode": "off"})
        process = start_run(tmp_path, tiny_engine_dir, config, 10.0, "--out", str(out))
        filler = Filler(disk)
        try:
            wait_for(lambda: len(read_jsonl(out / "predictions.jsonl")) >= 2, 60,
                     "the first predictions", process)
            fill(disk)
            assert free_bytes(disk) < 4096
            filler.start()
            output = finish(process, timeout=90)
        finally:
            filler.done.set()
            if filler.is_alive():
                filler.join()
        assert "Traceback" not in output, output
        assert process.returncode == 1, output
        for path in out.glob("*.jsonl"):  # predictions.jsonl, frames.jsonl: whole lines
            parse_jsonl(path)
        predictions = parse_jsonl(out / "predictions.jsonl")
        seqs = [r["seq"] for r in predictions]
        assert seqs == list(range(len(seqs))) and len(seqs) >= 2  # a prefix, no gap
        assert "FAILED: sink jsonl failed" in output, output  # the verdict, on the console
        assert f"No space left on device: {out / 'predictions.jsonl'}" in output, output
        assert "hidemo run: duration reached after" in output, output
        summary_path = out / "summary.json"
        if summary_path.exists():  # written after all (a line's truncation freed a block)
            summary = json.loads(summary_path.read_text())
            assert summary["exit_code"] == 1 and summary["failures"], summary
        else:
            assert f"FAILED: {summary_path} could not be written (No space left on " \
                "device)" in output, output
        assert json.loads((out / "config.json").read_text())["profile"] == "tiny"
        print(f"\nfull disk mid-run: {len(seqs)} predictions kept, summary.json "
              f"{'written' if summary_path.exists() else 'absent (said on the console)'}")
