"""``hidemo serve-engines``: a real Triton server for the verified engines, supervised.

The server is NVIDIA Triton Inference Server as PyTriton ships it (its Python backend runs
each engine on onnxruntime; Triton's dynamic batcher joins the requests of every client).
PyTriton needs numpy < 2, so it runs in an environment of its own
(:mod:`engines.toolenv`), created once and reused; :mod:`engines.serving.worker` is the
process started there. hidemo's side verifies every engine's manifest first, writes the
worker's plan, then supervises:

- **health**: the worker's process and Triton's readiness (with the token) every second;
- **restart** with a backoff when the worker dies or stops answering;
- **cleanup** of what a dead server leaves: every process of its group (Python backend
  stubs and helpers), the ``/dev/shm`` segments its processes had mapped, and its
  workspace and temporary folders (given to it under the state folder).

Access: loopback by default. Triton's restricted APIs take an access token (a file of mode
0600 in the state folder, made once and reused): on loopback, shared memory, statistics and
the repository APIs need it; on any other address inference and model configuration need
it too (only health and metadata answer without it): such a server is never open.

Example:
    >>> serve(ServeOptions(engine_dir=Path("artifacts/engines/edge")))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from engines.manifest import EngineRefused, read_manifest, verify
from engines.serving.identity import batched, identity_parameters, model_name, triton_dims
from engines.serving.settings import BatchingPolicy
from engines.toolenv import ToolEnv, ensure_tool_env

log = logging.getLogger(__name__)

SERVE_PINS = ("nvidia-pytriton==0.7.0", "onnxruntime==1.32.0", "numpy==1.26.4")
"""The serving environment, exactly (checked together on Python 3.11)."""
ENV_NAME = "pytriton"
WORKER = Path(__file__).with_name("worker.py")
ADMIN_APIS = ("shared-memory", "model-repository", "statistics", "trace", "logging")
OFF_LOOPBACK_APIS = ("inference", "model-config", *ADMIN_APIS)
"""Behind the token off loopback: everything but health and metadata (liveness, readiness
and model names, which PyTriton's own loader and an orchestrator's probes read without it)."""
HEALTH_PERIOD_S = 1.0
HEALTH_TIMEOUT_S = 5.0
"""How long one health check waits for an answer: a server busy computing on every core
still answers within it; a hung one does not."""
UNHEALTHY_AFTER = 3
"""Consecutive failed health checks (one a second) after which a live server is restarted."""
START_TIMEOUT_S = 180.0
STOP_GRACE_S = 10.0
RESTART_BACKOFF_MAX_S = 30.0
READY = "serve-engines: ready:"
READY_AGAIN = "serve-engines: ready again:"
"""How each announcement begins, for whoever waits on this command's output (other lines
also contain the word: "did not become ready")."""


class ServeError(RuntimeError):
    """The server cannot be started as asked; the message says why and what to do."""


class ServeOptions(BaseModel):
    """What ``hidemo serve-engines`` was asked for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine_dir: Path
    engines: tuple[str, ...] = ()
    """Engine names to serve (empty: every engine with a manifest in the folder)."""
    bind: str = "127.0.0.1:8001"
    """gRPC ``HOST:PORT``; HTTP listens on the same host, on ``http_port``."""
    http_port: int = Field(8000, ge=1, le=65535)
    metrics_bind: str | None = None
    """Triton's own Prometheus metrics ``HOST:PORT`` (null: off)."""
    metrics_public: bool = False
    """Allow a non-loopback metrics address (Triton's metrics endpoint has no access control)."""
    model_prefix: str = ""
    policy: BatchingPolicy = Field(default_factory=BatchingPolicy)
    threads: int = Field(0, ge=0)
    """onnxruntime threads per model instance (0: onnxruntime's choice)."""
    state_dir: Path = Path("artifacts/serve")
    token_file: Path | None = None
    """The access token (null: ``state_dir/token``, made once with mode 0600)."""
    env_root: Path = Path("artifacts/serve-env")
    max_restarts: int | None = None
    """Give up after this many restarts (null: never)."""


def split_host_port(text: str, what: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServeError(f"{what} {text!r} must be HOST:PORT, e.g. 127.0.0.1:8001")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def ensure_token(path: Path) -> str:
    """The token in ``path``; made (32 random bytes, mode 0600) when the file is absent."""
    if path.is_file():
        token = path.read_text().strip()
        if not token:
            raise ServeError(f"token file {path} is empty; remove it to make a new one")
        if path.stat().st_mode & 0o077:
            raise ServeError(f"token file {path} is readable by others; chmod 600 {path}")
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def model_plans(options: ServeOptions) -> list[dict[str, Any]]:
    """Each engine verified (refused with its fix otherwise), as the worker's model entry."""
    from engines.cli import engine_names

    names = list(options.engines) or engine_names(options.engine_dir)
    if not names:
        raise ServeError(f"no engines in {options.engine_dir}; build them first: hidemo "
                         "engines build --profile PROFILE")
    plans = []
    for name in names:
        manifest = read_manifest(options.engine_dir, name)
        verify(manifest, options.engine_dir)
        is_batched = batched(manifest.signature)
        policy = options.policy
        plans.append({
            "name": model_name(name, options.model_prefix),
            "onnx": str((options.engine_dir / manifest.onnx_file).resolve()),
            "max_batch_size": policy.max_batch_size if is_batched else 0,
            "preferred_batch_sizes": list(policy.preferred_batch_sizes),
            "max_queue_delay_us": policy.max_queue_delay_us,
            "instances": policy.instances,
            "parameters": identity_parameters(manifest),
            "inputs": [{"name": t.name, "dtype": t.dtype,
                        "dims": triton_dims(t.shape, batched=is_batched)}
                       for t in manifest.signature.inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype,
                         "dims": triton_dims(t.shape, batched=is_batched)}
                        for t in manifest.signature.outputs],
        })
    return plans


def check_ports_free(host: str, ports: list[int]) -> None:
    """Refuse now, with the port named, rather than let Triton fail in its log."""
    for port in ports:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                raise ServeError(f"cannot listen on {host}:{port} ({error.strerror}); another "
                                 "server holds it: stop it or choose other ports (--bind, "
                                 "--http-port, --metrics-bind)") from None


class Server:
    """One supervised Triton worker process (its process group), restarted when it dies."""

    def __init__(self, options: ServeOptions, env: ToolEnv, token: str,
                 say: Callable[[str], None] = print) -> None:
        self.options = options
        self.env = env
        self.token = token
        self.say = say
        self.host, self.grpc_port = split_host_port(options.bind, "--bind")
        self.metrics = None if options.metrics_bind is None else \
            split_host_port(options.metrics_bind, "--metrics-bind")
        self.models = model_plans(options)
        self.restarts = 0
        self.process: subprocess.Popen[str] | None = None
        self._start_count = 0
        self._ready = threading.Event()
        self._died = threading.Event()
        self._leftovers: set[str] = set()
        self._stop = threading.Event()

    # -- one life of the worker ---------------------------------------------------------
    def _plan(self, scratch: Path) -> Path:
        restricted = ADMIN_APIS if is_loopback(self.host) else OFF_LOOPBACK_APIS
        plan = {
            "grpc_address": self.host, "grpc_port": self.grpc_port,
            "http_address": self.host, "http_port": self.options.http_port,
            "metrics_address": self.metrics[0] if self.metrics else None,
            "metrics_port": self.metrics[1] if self.metrics else None,
            "token": self.token, "restricted": list(restricted),
            "workspace": str(scratch / "workspace"), "threads": self.options.threads,
            "models": self.models,
        }
        path = scratch / "plan.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds the token
        with os.fdopen(fd, "w") as handle:
            json.dump(plan, handle)
        return path

    def start(self) -> None:
        """Start one worker in a new process group; its output goes to the log."""
        self._start_count += 1
        # short, under the system's temporary folder: the server's unix sockets live in its
        # workspace and TMPDIR, and a socket path must fit in 108 bytes
        scratch = Path(tempfile.mkdtemp(prefix=f"hidemo-triton-{self._start_count}-"))
        (scratch / "tmp").mkdir(mode=0o700)
        self.scratch = scratch
        env = dict(os.environ)
        libdir = sysconfig.get_config_var("LIBDIR") or ""
        # Triton's Python backend stub loads libpython: the interpreter's own, not the system's
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (libdir, env.get("LD_LIBRARY_PATH", "")) if p)
        env["TMPDIR"] = str(scratch / "tmp")
        env["PYTHONUNBUFFERED"] = "1"
        # fresh events per life: a late word from the last worker cannot touch this one's
        self._ready, self._died = threading.Event(), threading.Event()
        self._leftovers = set()
        # the worker's events come on a pipe of their own: tritonserver writes its log to the
        # same stdout, and a line of it can land in the middle of an event line
        events_read, events_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [str(self.env.python), str(WORKER), str(self._plan(scratch)),
                 str(events_write)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                start_new_session=True, pass_fds=(events_write,))
        finally:
            os.close(events_write)
        threading.Thread(target=self._copy_log, args=(self.process,), daemon=True).start()
        threading.Thread(target=self._read_events, args=(events_read, self._ready, self._died),
                         daemon=True).start()

    def _copy_log(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        with open(self.options.state_dir / "triton.log", "a") as log_file:
            for line in process.stdout:
                log_file.write(line)
                log_file.flush()

    @staticmethod
    def _read_events(events_read: int, ready: threading.Event, died: threading.Event) -> None:
        """The worker's JSON event lines; the pipe's end means the worker is gone."""
        with os.fdopen(events_read) as events:
            for line in events:
                with contextlib.suppress(json.JSONDecodeError, AttributeError):
                    event = json.loads(line).get("event")
                    if event == "ready":
                        ready.set()
                    elif event == "died":
                        died.set()
        died.set()

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> bool:
        """True once the worker said ready and Triton itself says every model is ready."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stop.is_set():
            if self.process is None or self.process.poll() is not None:
                return False
            if self._ready.wait(0.2) and self.healthy():
                return True
        return False

    def healthy(self) -> bool:
        """Triton answers, is ready, and so is every model (asked with the token)."""
        import tritonclient.http as http

        client = http.InferenceServerClient(f"{self._client_host()}:{self.options.http_port}",
                                            connection_timeout=HEALTH_TIMEOUT_S,
                                            network_timeout=HEALTH_TIMEOUT_S)
        headers = {"triton-access-token": self.token}
        try:
            return bool(client.is_server_ready(headers=headers)) and all(
                client.is_model_ready(m["name"], headers=headers) for m in self.models)
        except Exception:  # noqa: BLE001 - any failure to answer is "not healthy"
            return False
        finally:
            with contextlib.suppress(Exception):
                client.close()

    def _client_host(self) -> str:
        if self.host in ("0.0.0.0", "::"):
            return "127.0.0.1"
        return f"[{self.host}]" if ":" in self.host else self.host

    def note_leftovers(self) -> None:
        """Remember the ``/dev/shm`` segments the worker's processes map, and the model
        folders Triton's Python backend made for its stubs (``/tmp/folderXXXXXX``, named on
        each stub's command line), to remove them if the worker dies: a killed server
        never removes its own."""
        if self.process is None:
            return
        temp = Path(tempfile.gettempdir())
        for pid in group_pids(self.process.pid):
            with contextlib.suppress(OSError, ValueError, IndexError):
                for arg in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0"):
                    if arg.startswith(f"{temp}/folder"):
                        self._leftovers.add(str(temp / Path(arg).relative_to(temp).parts[0]))
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
                    fields = line.split(maxsplit=5)  # address perms offset dev inode path
                    path = fields[5] if len(fields) == 6 else ""
                    if path.startswith("/dev/shm/"):
                        self._leftovers.add(path.removesuffix(" (deleted)"))

    def stop_worker(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM to the worker, then SIGKILL to its whole group; then clean up."""
        process = self.process
        if process is None:
            return
        self.note_leftovers()
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        self.cleanup(process.pid)
        self.process = None

    def cleanup(self, pid: int) -> list[str]:
        """Remove what the dead worker left: its group's stragglers, shm segments, scratch."""
        removed = []
        for straggler in group_pids(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(straggler, signal.SIGKILL)
        deadline = time.monotonic() + 5.0  # SIGKILLed processes take a moment to go
        while group_pids(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        segments = set(self._leftovers)
        segments.update(str(p) for p in Path("/dev/shm").glob(f"pytrtion{pid}-*"))
        for segment in sorted(segments):
            path = Path(segment)
            with contextlib.suppress(FileNotFoundError):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(segment)
        shutil.rmtree(self.scratch, ignore_errors=True)
        return removed

    # -- the supervision loop -------------------------------------------------------------
    def serve(self) -> int:
        """Start, announce ``ready``, watch, restart; return the exit code at the end."""
        backoff = 1.0
        announced = False
        while not self._stop.is_set():
            self.start()
            if not self.wait_ready():
                if self._stop.is_set():
                    break
                self.say(f"serve-engines: Triton did not become ready; see "
                         f"{self.options.state_dir / 'triton.log'}")
                self.stop_worker(grace_s=2.0)
                if not self._may_restart():
                    return 1
                self._stop.wait(backoff)
                backoff = min(backoff * 2, RESTART_BACKOFF_MAX_S)
                continue
            backoff = 1.0
            self._announce(again=announced)
            announced = True
            reason = self._watch()
            if self._stop.is_set():
                break
            self.say(f"serve-engines: Triton {reason}; restarting (restart {self.restarts + 1})")
            self.stop_worker(grace_s=2.0)
            if not self._may_restart():
                return 1
        self.stop_worker()
        self.say("serve-engines: stopped")
        return 0

    def _may_restart(self) -> bool:
        self.restarts += 1
        limit = self.options.max_restarts
        if limit is not None and self.restarts > limit:
            self.say(f"serve-engines: giving up after {limit} restarts")
            return False
        return True

    def _watch(self) -> str:
        """Until the worker dies or stops answering (or we are told to stop): why it ended."""
        failures = 0
        while not self._stop.wait(HEALTH_PERIOD_S):
            if self.process is None or self.process.poll() is not None or self._died.is_set():
                code = None if self.process is None else self.process.poll()
                return f"exited (code {code})"
            self.note_leftovers()
            failures = 0 if self.healthy() else failures + 1
            if failures >= UNHEALTHY_AFTER:
                return f"did not answer {UNHEALTHY_AFTER} health checks"
        return "stopped"

    def _announce(self, *, again: bool) -> None:
        names = ", ".join(m["name"] for m in self.models)
        metrics = f", metrics {self.options.metrics_bind}" if self.metrics else ""
        token = self.options.token_file or self.options.state_dir / "token"
        self.say(f"{READY_AGAIN if again else READY} {len(self.models)} "
                 f"models ({names}) on {self.options.bind} (grpc), "
                 f"{self.host}:{self.options.http_port} (http){metrics}; pid {os.getpid()}")
        if not again:
            self.say(f"  pipelines: hidemo run --set backend=triton --set triton.url="
                     f"{self.options.bind} --set triton.token_file={token}")

    def request_stop(self) -> None:
        self._stop.set()


def group_pids(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (zombies, already dead, left out)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = (entry / "stat").read_text()
                fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "
                if int(fields[2]) == pgid and fields[0] != "Z":
                    pids.append(int(entry.name))
    return pids


def serve(options: ServeOptions, say: Callable[[str], None] = print) -> int:
    """``hidemo serve-engines``: verify, set up, serve until SIGTERM/SIGINT. Exit code 0 on
    a requested stop, 1 when the server could not be kept up, 2 for a refused request."""
    host, port = split_host_port(options.bind, "--bind")
    ports = [port, options.http_port]
    if options.metrics_bind is not None:
        metrics_host, metrics_port = split_host_port(options.metrics_bind, "--metrics-bind")
        if not is_loopback(metrics_host) and not options.metrics_public:
            raise ServeError(f"--metrics-bind {options.metrics_bind} is not loopback: Triton's "
                             "metrics endpoint has no access control; add --metrics-public to "
                             "publish it anyway, or scrape it through a proxy")
        ports.append(metrics_port)
    if len(set(ports)) != len(ports):
        raise ServeError(f"ports must differ: grpc {port}, http {options.http_port}"
                         + (f", metrics {ports[2]}" if len(ports) > 2 else ""))
    options.state_dir.mkdir(parents=True, exist_ok=True)
    token = ensure_token(options.token_file or options.state_dir / "token")
    check_ports_free(host, ports)
    try:
        env = ensure_tool_env(options.env_root, ENV_NAME, SERVE_PINS, say=say,
                              offline_hint="Offline: create it on a connected machine with "
                                           "these pins and pass its parent with --env-root.")
    except RuntimeError as error:
        raise ServeError(str(error)) from error
    server = Server(options, env, token, say=say)

    def _stop(signum: int, _frame: object) -> None:
        server.request_stop()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        return server.serve()
    finally:
        server.stop_worker()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def serve_command(args: Any) -> int:
    """The ``hidemo serve-engines`` command line, parsed by :mod:`hidemo.cli`."""
    try:
        policy = BatchingPolicy(
            max_batch_size=args.max_batch_size,
            preferred_batch_sizes=tuple(args.preferred_batch_sizes),
            max_queue_delay_us=args.max_queue_delay_us, instances=args.instances)
        options = ServeOptions(
            engine_dir=args.engine_dir, engines=tuple(args.engines or ()), bind=args.bind,
            http_port=args.http_port, metrics_bind=args.metrics_bind,
            metrics_public=args.metrics_public, model_prefix=args.model_prefix,
            policy=policy, threads=args.threads, state_dir=args.state_dir,
            token_file=args.token_file, env_root=args.env_root,
            max_restarts=args.max_restarts)
        return serve(options, say=lambda line: print(line, flush=True))
    except (ServeError, EngineRefused) as error:
        print(f"hidemo serve-engines: error: {error}", file=sys.stderr)
        return 2
