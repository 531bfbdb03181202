"""Real servers for the service tests: Mosquitto (an MQTT broker) and Prometheus.

Not a test module. Each is Debian's own binary (``apt-get install mosquitto prometheus``;
``.ci/run`` installs them), started by the test on a free loopback port with a config the
test writes, so nothing here depends on a system service.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def need(binary: str, package: str) -> str:
    """The path of ``binary``, or skip: the test needs Debian's ``package``."""
    path = shutil.which(binary) or (f"/usr/sbin/{binary}"
                                   if Path(f"/usr/sbin/{binary}").exists() else None)
    if path is None:
        pytest.skip(f"{binary} not installed: apt-get install {package} (.ci/run installs it)")
    return path


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class Mosquitto:
    """A broker on 127.0.0.1:``port`` with persistence in ``folder``: stopped with SIGTERM
    (it saves its sessions and retained messages), started again on the same port with
    them, as a broker restart on a site does. ``extra`` is more configuration (a TLS
    listener)."""

    def __init__(self, folder: Path, port: int | None = None, extra: str = "") -> None:
        self.binary = need("mosquitto", "mosquitto")
        self.folder = folder
        self.port = port or free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.config = folder / "mosquitto.conf"
        # as this user: started by root, mosquitto would otherwise become "mosquitto" and
        # could not write its sessions into the test's private folder
        user = pwd.getpwuid(os.geteuid()).pw_name
        self.config.write_text(
            f"user {user}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {folder}/\nautosave_interval 1\n"
            f"log_dest stderr\n{extra}")
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with (self.folder / "mosquitto.log").open("ab") as log:
            self.process = subprocess.Popen([self.binary, "-c", str(self.config)],
                                            stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its state and exits; a save that failed fails the test
        (a restart would then have lost the sessions the test relies on)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(10)
        self.process = None
        errors = [line for line in (self.folder / "mosquitto.log").read_text().splitlines()
                  if "Error" in line and "OpenSSL" not in line]  # a refused TLS peer is not
        assert not errors, f"mosquitto: {errors}"


class Prometheus:
    """Prometheus on 127.0.0.1:``port`` scraping ``target`` every second, with
    ``rule_files`` loaded, its data in ``folder``."""

    def __init__(self, folder: Path, target: str, rule_files: list[Path]) -> None:
        binary = need("prometheus", "prometheus")
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "prometheus.yml"
        config.write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [{"job_name": "hidemo",
                                "static_configs": [{"targets": [target]}]}]}))
        self.log = (folder / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, 30)
        self.wait_ready(120)

    def wait_ready(self, timeout: float) -> None:
        """Until ``/-/ready`` answers 200: the port opens before the storage is loaded, and
        queries meanwhile answer 503 (seen on a busy machine)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready",
                                            timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:  # URLError and HTTPError (503) are OSErrors
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise AssertionError(f"prometheus not ready within {timeout} s")
            time.sleep(0.2)

    def api(self, path: str, **query: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if query:
            url += "?" + urllib.parse.urlencode(query)
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expression: str) -> list[dict[str, Any]]:
        """An instant query's result: one sample per series."""
        return self.api("query", query=expression)["result"]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


class RtspServer:
    """``rtsp_server.py`` (aio-rtsp-toolkit, a real RTSP/TCP server) in its own process,
    serving ``folder/clip.mp4`` of ``frames`` frames at 10 fps: stalled with SIGSTOP (the
    connection stays open and nothing comes), resumed with SIGCONT."""

    SCRIPT = Path(__file__).with_name("rtsp_server.py")

    def __init__(self, folder: Path, frames: int) -> None:
        pytest.importorskip("av", reason="the test RTSP server encodes with PyAV: "
                                         "pip install -e '.[dev]'")
        pytest.importorskip("aio_rtsp_toolkit", reason="the test RTSP server is "
                                                       "aio-rtsp-toolkit: pip install -e '.[dev]'")
        import sys

        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/clip.mp4"
        self.process = subprocess.Popen(
            [sys.executable, str(self.SCRIPT), str(folder), str(self.port), str(frames)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "ready", or the process died
        if line.strip() != "ready":
            self.process.kill()
            raise RuntimeError(f"test RTSP server did not start (said {line!r})")

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(10)
