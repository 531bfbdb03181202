"""Starts the web view's process beside the pipeline and keeps it up, apart from it.

The view is not a stage: the supervisor neither waits for it nor fails the run because of
it. :class:`UiProcess` starts ``python -m stream.ui.server`` and a watcher thread restarts
it with backoff when it dies (at most ``max_restarts`` times, then it stays down with a
warning while the pipeline goes on). Its log goes to ``ui.log`` beside the stages' logs.

Example:
    >>> ui = UiProcess(spec_path, log_path, token=None)  # doctest: +SKIP
    >>> ui.start(); ...; ui.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from stream.config import EndpointConfig
from stream.strictjson import JsonDict
from stream.transport.endpoints import Endpoints
from stream.ui.access import TOKEN_ENV

log = logging.getLogger(__name__)

BACKOFF_S = 0.5
BACKOFF_MAX_S = 8.0
STOP_TIMEOUT_S = 5.0


class UiSpec(BaseModel):
    """What the web server needs (written by ``hidemo run``, read by
    :mod:`stream.ui.server`): where to listen, what to subscribe to, for which streams.
    The token never goes in here (it travels in the server's environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: int = Field(ge=1, le=65535)
    streams: list[str]
    history_s: float = Field(gt=0)
    max_clients: int = Field(ge=1)
    endpoints: Endpoints
    """The run's addresses, with the stream ids its publishers admit and its internal keys."""
    endpoint_config: EndpointConfig
    stats_path: Path | None = None
    preview_publishers: int = Field(1, ge=1)
    """How many processes publish previews (fused placement: one per worker, each on its
    own endpoint, :meth:`stream.transport.endpoints.Endpoints.for_worker`)."""
    media_streams: list[str] = Field(default_factory=list)
    """Streams read from a file: their transcript is shown on the media clock (seconds into
    the source); the others' on the wall clock."""
    person_timeout_s: float = Field(3.0, gt=0)
    """Persons not seen for this long (classify's ``person_timeout_s``) fold into the
    page's "N earlier"."""


class UiProcess:
    """The web server process, restarted when it dies, stopped with the run."""

    def __init__(self, spec_path: Path, log_path: Path, token: str | None,
                 max_restarts: int = 5) -> None:
        self.spec_path = spec_path
        self.log_path = log_path
        self.token = token
        self.max_restarts = max_restarts
        self.restarts = 0
        self.exit_codes: list[int] = []
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def _spawn(self) -> None:
        env = dict(os.environ)
        env.pop(TOKEN_ENV, None)
        if self.token is not None:
            env[TOKEN_ENV] = self.token
        env["PYTHONUNBUFFERED"] = "1"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "stream.ui.server", str(self.spec_path)],
                stdout=log_file, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)  # Ctrl-C is for hidemo run, which stops it in order

    def start(self) -> None:
        with self._lock:
            self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="ui-watch", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while True:
            process = self.process
            if process is None:
                return
            code = process.wait()
            if self._stopping.is_set():
                return
            self.exit_codes.append(code)
            if self.restarts >= self.max_restarts:
                log.warning("the web view exited (%s) after %d restarts; the pipeline goes "
                            "on without it (log: %s)", code, self.restarts, self.log_path)
                return
            backoff = min(BACKOFF_MAX_S, BACKOFF_S * 2 ** self.restarts)
            log.warning("the web view exited (%s); restarting in %.1f s (log: %s)", code,
                        backoff, self.log_path)
            if self._stopping.wait(backoff):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.restarts += 1
                self._spawn()

    def stop(self) -> None:
        """SIGTERM, wait up to :data:`STOP_TIMEOUT_S`, then SIGKILL."""
        self._stopping.set()
        with self._lock:
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.returncode is not None:
            self.exit_codes.append(process.returncode)
        if self._watcher is not None:
            self._watcher.join(STOP_TIMEOUT_S)

    def report(self) -> JsonDict:
        return {"restarts": self.restarts, "exit_codes": list(self.exit_codes),
                "log": str(self.log_path)}


def check_port(host: str, port: int) -> str | None:
    """Why the page cannot listen on ``host:port`` now, or None."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as error:
        return (f"--ui-bind {host}:{port}: {error.strerror}; choose another port "
                f"(--ui-bind {host}:PORT)")
    finally:
        probe.close()
    return None
