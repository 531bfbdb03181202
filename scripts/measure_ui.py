"""What the web view costs: frame age when shown in a browser, and the CPU of its process.

Usage (from the repository root, engines built, Debian's chromium + chromium-driver)::

    .venv/bin/python scripts/measure_ui.py runs/ui-measure [--profile edge] [--seconds 30]
        [--screenshot docs/ui.png]

Runs ``hidemo run --source demo --ui`` (one stream), opens the page in headless Chromium
and, over ``--seconds`` after a warm-up, reads from the page every frame it showed: its age
from capture to shown (the page stamps it when it draws, from the capture's own clock
converted to wall time) and how much of that age was the pipeline's (capture to detect
done). The rest is what the view adds: encoding, the preview topic, the server, the
WebSocket, decoding and drawing. It also reads the CPU time of the web server process
(psutil) and of detect's preview encoding (detect's status), and saves a screenshot.
The web view's figures in docs/measurements/ (the web view's cost) come from this script.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import psutil


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


def ui_process(run: subprocess.Popen[str]) -> psutil.Process:
    for child in psutil.Process(run.pid).children(recursive=True):
        if "stream.ui.server" in child.cmdline():
            return child
    raise SystemExit("no web view process under hidemo run")


def chromium() -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,760", "--hide-scrollbars"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver") or "chromedriver"),
                            options=options)


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    array = np.asarray(values)
    return {"p50": round(float(np.percentile(array, 50)), 1),
            "p95": round(float(np.percentile(array, 95)), 1), "n": len(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--profile", default="edge")
    parser.add_argument("--engine-dir", type=Path, default=None)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--screenshot", type=Path, default=None)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [sys.executable, "-m", "hidemo", "run", "--source", "demo", "--profile",
               args.profile, "--ui-bind", f"127.0.0.1:{port}", "--view", "none", "--out",
               str(args.out / "run"), "--duration", str(args.seconds + args.warmup + 60)]
    if args.engine_dir is not None:
        command += ["--engine-dir", str(args.engine_dir)]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    browser = None
    try:
        wait_until(lambda: urllib.request.urlopen(f"{base}/api/stats", timeout=2).status == 200,
                   120, "the web view")
        browser = chromium()
        browser.get(f"{base}/")
        wait_until(lambda: browser.execute_script(
            "return Object.keys(window.hidemo.framesShown).length") > 0, 120, "a frame shown")
        time.sleep(args.warmup)
        ui = ui_process(run)
        browser_procs = [p for p in psutil.process_iter(["name"])
                         if "chrom" in (p.info["name"] or "")]
        cpu0 = ui.cpu_times()
        browser_cpu0 = sum(sum(p.cpu_times()[:2]) for p in browser_procs)
        shown0 = browser.execute_script("return window.hidemo.frameAgesMs.length")
        started = time.monotonic()
        time.sleep(args.seconds)
        wall = time.monotonic() - started
        cpu1 = ui.cpu_times()
        browser_cpu1 = sum(sum(p.cpu_times()[:2]) for p in browser_procs if p.is_running())
        ages = browser.execute_script("return window.hidemo.frameAgesMs")
        pipeline = browser.execute_script("return window.hidemo.pipelineMsAtShow")
        taken = max(0, len(ages) - shown0)  # the page keeps its last 1000
        ages, pipeline = ages[-taken:], pipeline[-taken:]
        stats = json.loads(urllib.request.urlopen(f"{base}/api/stats", timeout=5).read())
        if args.screenshot is not None:
            args.screenshot.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(args.screenshot))
    finally:
        if browser is not None:
            browser.quit()
        run.terminate()
        output, _ = run.communicate(timeout=120)
    summary = json.loads((args.out / "run" / "summary.json").read_text())
    detect = summary["stages"]["detect[0]"]
    preview = detect["extra"].get("preview", {})
    ui_cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    result = {
        "profile": args.profile, "placement": summary["placement"]["placement"],
        "seconds": round(wall, 1), "frames_shown": len(ages),
        "frame_age_shown_ms": percentiles(ages),
        "pipeline_part_ms": percentiles(pipeline),
        "added_by_view_ms": percentiles([a - p for a, p in zip(ages, pipeline, strict=True)]),
        "ui_process_cpu_percent": round(100.0 * ui_cpu_s / wall, 1),
        "browser_cpu_percent": round(100.0 * (browser_cpu1 - browser_cpu0) / wall, 1),
        "preview": preview,
        "preview_encode_cpu_percent": round(
            100.0 * preview.get("published", 0) * preview.get("encode_ms", 0.0) / 1000.0
            / max(summary["running_s"], 1e-9), 2),
        "ui_stats": stats, "streams": summary["streams"],
    }
    (args.out / "ui-measure.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("ui_stats", "streams")},
                     indent=2))
    if run.returncode != 0:
        print(output[-4000:], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
