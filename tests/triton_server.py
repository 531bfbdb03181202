"""A real ``hidemo serve-engines`` (PyTriton's Triton server) for tests, on free loopback ports.

The serving environment is made once under ``artifacts/serve-env`` (about a minute and the
package index, the first time) and reused by every later test run, as the command reuses it.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from engines.serving.server import READY

SERVE_ENV = Path(__file__).resolve().parents[1] / "artifacts" / "serve-env"
READY_TIMEOUT_S = 600.0
"""Generous: the first start also creates the serving environment."""


def free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            sockets.append(probe)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for probe in sockets:
            probe.close()


@dataclass
class ServedEngines:
    """A running ``hidemo serve-engines``: its process, addresses, token and output."""

    process: subprocess.Popen[str]
    grpc_port: int
    http_port: int
    state_dir: Path
    host: str = "127.0.0.1"
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str] = field(default_factory=queue.Queue)

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def token_file(self) -> Path:
        return self.state_dir / "token"

    @property
    def token(self) -> str:
        return self.token_file.read_text().strip()

    def wait_for_line(self, text: str, timeout: float) -> str:
        """The first output line (from now on, or already seen) containing ``text``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            while seen < len(self.lines):
                seen += 1
                if text in self.lines[seen - 1]:
                    return self.lines[seen - 1]
            if self.process.poll() is not None and self._queue.empty():
                raise AssertionError(f"serve-engines exited ({self.process.returncode}) "
                                     f"before {text!r}:\n" + "".join(self.lines))
            with contextlib.suppress(queue.Empty):
                self.lines.append(self._queue.get(timeout=0.2))
        raise AssertionError(f"no {text!r} from serve-engines within {timeout} s:\n"
                             + "".join(self.lines))

    def worker(self) -> psutil.Process:
        """The Triton worker process (PyTriton's parent of tritonserver) now."""
        for child in psutil.Process(self.process.pid).children():
            if "worker.py" in " ".join(child.cmdline()):
                return child
        raise AssertionError("serve-engines has no worker process")

    def tritonserver(self) -> psutil.Process:
        for child in self.worker().children(recursive=True):
            if child.name() == "tritonserver":
                return child
        raise AssertionError("no tritonserver process under the worker")

    def statistics(self, model: str) -> dict:
        import tritonclient.http as http

        client = http.InferenceServerClient(self.http_url)
        try:
            stats = client.get_inference_statistics(
                model, headers={"triton-access-token": self.token})
        finally:
            client.close()
        return stats["model_stats"][0]

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
        with contextlib.suppress(queue.Empty):
            while True:
                self.lines.append(self._queue.get_nowait())
        return "".join(self.lines)


def start_serving(engine_dir: Path, state_dir: Path, *extra: str,
                  engines: tuple[str, ...] = ("image_embedder", "text_embedder", "detector"),
                  bind_host: str = "127.0.0.1") -> ServedEngines:
    """``hidemo serve-engines`` on free ports; returns once it printed ``ready``."""
    grpc_port, http_port = free_ports(2)
    process = subprocess.Popen(
        [sys.executable, "-m", "hidemo", "serve-engines", "--engine-dir", str(engine_dir),
         "--engines", *engines, "--bind", f"{bind_host}:{grpc_port}",
         "--http-port", str(http_port), "--state-dir", str(state_dir),
         "--env-root", str(SERVE_ENV), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    served = ServedEngines(process, grpc_port, http_port, state_dir)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            served._queue.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:
        served.wait_for_line(READY, READY_TIMEOUT_S)
    except BaseException:
        served.stop()
        raise
    return served


@contextlib.contextmanager
def serving(engine_dir: Path, state_dir: Path, *extra: str, **options: object
            ) -> Iterator[ServedEngines]:
    served = start_serving(engine_dir, state_dir, *extra, **options)  # type: ignore[arg-type]
    try:
        yield served
    except BaseException:
        print(served.stop())  # the server's own account, shown beside the failure
        raise
    finally:
        served.stop()


def engines_with_another_onnx(engine_dir: Path, copy: Path, name: str = "image_embedder"
                              ) -> Path:
    """A copy of ``engine_dir`` whose ``name`` engine is a different (still verified) ONNX
    file: a metadata property added, the manifest's sha256 updated. Its identity differs
    from the original's; locally it is a valid engine."""
    import shutil

    import onnx

    from engines.manifest import read_manifest, sha256_file

    shutil.copytree(engine_dir, copy)
    manifest = read_manifest(copy, name)
    model = onnx.load(copy / manifest.onnx_file)
    onnx.helper.set_model_props(model, {"hidemo-test": "another engine"})
    onnx.save(model, copy / manifest.onnx_file)
    manifest.model_copy(update={"onnx_sha256": sha256_file(copy / manifest.onnx_file)}
                        ).write(copy)
    return copy
