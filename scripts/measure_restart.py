"""Kill each inference stage of a live run twice; print how long until predictions resume.

Usage (from the repository root, engines built)::

    .venv/bin/python scripts/measure_restart.py runs/restart [--profile edge]

For detect, features and classify in turn, SIGKILL the stage and time from the kill to the
first prediction from a frame captured after it (the supervisor's backoff included), then
report the restarts, whether prediction ``seq`` stayed contiguous and the frames reported
lost. The figures of docs/measurements/*-unattended-fuzz-restart-soak.md come from this
script.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil

STAGES = ("detect", "features", "classify")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--profile", default="edge")
    parser.add_argument("--kills", type=int, default=2, help="kills per stage")
    args = parser.parse_args()
    log = args.out / "predictions.jsonl"
    args.out.mkdir(parents=True, exist_ok=True)
    run = subprocess.Popen(
        [sys.executable, "-m", "hidemo", "run", "--source", "demo", "--profile", args.profile,
         "--duration", "600", "--out", str(args.out), "--view", "log",
         "--set", f"endpoints.predictions=ipc://{args.out.resolve()}/predictions.sock",
         "--set", f"endpoints.text=ipc://{args.out.resolve()}/text.sock"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def records() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []

    try:
        if not _wait(lambda: len(records()) >= 3, 180):
            print("no predictions within 180 s", file=sys.stderr)
            return 1
        resumed: dict[str, list[float | None]] = {}
        for stage in STAGES:
            for _ in range(args.kills):
                victim = next(p for p in psutil.Process(run.pid).children(recursive=True)
                              if stage in p.cmdline())
                killed = time.monotonic()
                os.kill(victim.pid, signal.SIGKILL)

                def after(killed: float = killed) -> list[float]:
                    return [r["emit_time"] for r in records()
                            if r["capture_time"] > killed]

                ok = _wait(lambda: bool(after()), 120)
                resumed.setdefault(stage, []).append(
                    round(min(after()) - killed, 2) if ok else None)
                time.sleep(3)
        run.send_signal(signal.SIGINT)
        run.wait(90)
    finally:
        if run.poll() is None:
            run.kill()
    summary = json.loads((args.out / "summary.json").read_text())
    seqs = [r["seq"] for r in records()]
    print(json.dumps({"kill_to_next_prediction_s": resumed, "restarts": summary["restarts"],
                      "seq_contiguous": seqs == list(range(len(seqs))),
                      "lost": {k: v["lost"] for k, v in summary["streams"].items()}}))
    return 0


def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


if __name__ == "__main__":
    sys.exit(main())
