"""A process beside the pipeline that is not a stage: started, kept up, stopped with the run.

The web view and the recorder run apart from the stages: the supervisor neither waits for
them nor fails the run because of them. :class:`SideProcess` starts one, and a watcher
thread restarts it with backoff when it dies, at most ``max_restarts`` times; after that
the run goes on without it, with a warning. Its output goes to its own log file beside the
stages' logs. Subclasses say what to run (:meth:`SideProcess.command`), with which
environment (:meth:`SideProcess.environment`) and what changes on a restart
(:meth:`SideProcess.before_restart`,
:meth:`SideProcess.restart_note`).
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
from pathlib import Path

log = logging.getLogger(__name__)

BACKOFF_S = 0.5
BACKOFF_MAX_S = 8.0


class SideProcess:
    """One side process (``name`` says what it is in warnings), restarted when it dies."""

    def __init__(self, name: str, log_path: Path, *, max_restarts: int,
                 stop_timeout_s: float) -> None:
        self.name = name
        self.log_path = log_path
        self.max_restarts = max_restarts
        self.stop_timeout_s = stop_timeout_s
        self.restarts = 0
        self.exit_codes: list[int] = []
        self.warnings: list[str] = []
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    # -- what a subclass says ---------------------------------------------------------------
    def command(self) -> list[str]:
        """The command line of the next start."""
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        """The next start's environment: this process's, unbuffered output."""
        return dict(os.environ, PYTHONUNBUFFERED="1")

    def restart_note(self) -> str:
        """Words added to the warning that announces the next restart."""
        return ""

    def before_restart(self) -> None:
        """Called (under the lock) right before a restart's start."""

    def killed_consequence(self) -> str:
        """What a SIGKILL at stop leaves behind, for the warning (empty: nothing)."""
        return ""

    # -- the life cycle ---------------------------------------------------------------------
    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.process = subprocess.Popen(
                self.command(), stdout=log_file, stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True)  # Ctrl-C is for hidemo run, which stops it in order

    def start(self) -> None:
        with self._lock:
            self._spawn()
        self._watcher = threading.Thread(target=self._watch, name=f"{self.name}-watch",
                                         daemon=True)
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
                self.warn(f"{self.name} exited ({code}) after {self.restarts} restart(s); the "
                          f"run goes on without it (log: {self.log_path})")
                return
            backoff = min(BACKOFF_MAX_S, BACKOFF_S * 2 ** self.restarts)
            self.warn(f"{self.name} exited ({code}); restarting in {backoff:.1f} s"
                      f"{self.restart_note()} "
                      f"(log: {self.log_path})")
            if self._stopping.wait(backoff):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.restarts += 1
                self.before_restart()
                self._spawn()

    def warn(self, message: str) -> None:
        log.warning("%s", message)
        self.warnings.append(message)

    def stop(self) -> None:
        """SIGTERM, wait up to ``stop_timeout_s``, then SIGKILL."""
        self._stopping.set()
        with self._lock:
            process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                consequence = self.killed_consequence()
                self.warn(f"{self.name} did not stop within {self.stop_timeout_s:g} s and was "
                          f"killed{': ' + consequence if consequence else ''} "
                          f"(log: {self.log_path})")
        if process is not None and process.returncode is not None:
            self.exit_codes.append(process.returncode)
        if self._watcher is not None:
            self._watcher.join(self.stop_timeout_s)
