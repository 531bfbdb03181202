"""Checks ``hidemo run`` makes before it starts any stage: fail at once, loudly, with the fix.

Without them a refused engine shows up as a stage crash-looping five times, a camera that
is not there as a run of zero frames, a port in use as a classify that cannot bind, and an
ipc address another run holds is silently taken from it (ZeroMQ unlinks the socket file).
:func:`preflight` verifies every engine the run will load (manifest and sha256, as the
stages will), opens every source once, and makes sure no endpoint the pipeline binds is in
use, and that the output folder and the run's private folder have room to start
(:func:`check_disk`). All problems are gathered and raised as one :class:`PreflightError`
(a ``ValueError``: the ``hidemo`` command prints it and exits 2).

Example::

    preflight(config, Endpoints.for_config(config.endpoints, run_dir))  # or raises
"""

from __future__ import annotations

import os
import socket
import stat
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import zmq

from engines.adapters.perception import keypoint_engines_problem
from engines.manifest import EngineRefused, read_manifest, verify
from stream.config import EndpointConfig, RunConfig
from stream.media.sources import probe_source
from stream.stages.placement import detect_processes
from stream.transport.endpoints import LAYOUT, OUTSIDE, PER_WORKER, Endpoints

IPC_PATH_MAX = 107
"""Longest unix socket path (sun_path is 108 bytes with its terminating NUL)."""

CONNECT_TIMEOUT_S = 1.0

OUT_MIN_FREE_BYTES = 16 * 2**20
"""Free space the output folder (``--out``) needs before a run starts. What a run writes
there: ``config.json`` and ``summary.json`` (kilobytes), the stage logs, and the JSONL logs
that grow all run long (``frames.jsonl`` by a line per frame). The first two are small; the
margin is for the JSONL logs, so that a run that starts also has room for its first
minutes rather than failing the moment it begins. A disk that fills later is not fatal:
the sinks count what they could not write and the run's verdict says so."""

PRIVATE_MIN_FREE_BYTES = 1 * 2**20
"""Free space the run's private folder (in the system's temporary folder, ``TMPDIR``)
needs: the run's spec, the stages' small memories (rewritten whole, so twice their size at
a time) and ipc socket files."""

OUT_FIX = "free space there, or choose another folder with --out DIR (or out: in the config)"
PRIVATE_FIX = "free space there, or point TMPDIR at another folder"


@dataclass(frozen=True)
class Problem:
    """One reason the run cannot start: what (``engine classifier``, ``source file0 (a.mp4)``,
    ``endpoint tcp://...``) and the message, which says what to do."""

    subject: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject}: {self.message}".replace("\n", "\n    ")


class PreflightError(ValueError):
    """``hidemo run`` cannot start; ``problems`` lists every reason found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"hidemo run cannot start ({len(problems)} problem(s)), no stage "
                         f"was started:\n{lines}")


def preflight(config: RunConfig, endpoints: Endpoints) -> None:
    """Raise :class:`PreflightError` unless every engine, source and endpoint is usable."""
    problems = [*check_disk(config), *check_engines(config), *check_sources(config),
                *check_endpoints(endpoints, config.endpoints, detect_processes(config))]
    if problems:
        raise PreflightError(problems)


def engines_to_verify(config: RunConfig) -> list[str]:
    """Engines the stages will load besides the keypoint engines: as
    :func:`engines.adapters.finders.make_finder` chooses, the detector under ``auto`` only
    when it has real weights (else MediaPipe runs), and not at all when the keypoint
    engines find the persons; the text embedder because classify loads it when text
    arrives."""
    names = ["image_embedder", "classifier", "text_embedder"]
    if config.keypoints != "engines" and config.detect.detector in ("yolo", "auto"):
        names.insert(0, "detector")
    return names


def check_engines(config: RunConfig) -> list[Problem]:
    """Every engine the run loads, verified; ``keypoints: engines`` needs all keypoint
    engines (one problem naming the missing ones and ``hidemo engines build``)."""
    engine_dir = config.resolved_engine_dir()
    problems = []
    if config.keypoints == "engines":
        refused = keypoint_engines_problem(engine_dir, config.profile)
        if refused is not None:
            problems.append(Problem("keypoints: engines", str(refused)))
    for name in engines_to_verify(config):
        try:
            manifest = read_manifest(engine_dir, name, profile_hint=config.profile)
            auto = name == "detector" and config.detect.detector == "auto"
            if auto and manifest.random_weights:
                continue  # not loaded: MediaPipe finds the persons
            verify(manifest, engine_dir)
        except EngineRefused as error:
            problems.append(Problem(f"engine {name}", str(error)))
    return problems


def check_sources(config: RunConfig) -> list[Problem]:
    """Open every source once, in parallel (a URL may take its ``open_timeout_s``)."""
    if not config.sources:
        return []
    ids = config.stream_ids()
    with ThreadPoolExecutor(max_workers=len(config.sources)) as pool:
        probes = list(pool.map(probe_source, config.sources))
    return [Problem(f"source {stream} ({probe.spec})", probe.problem)
            for stream, probe in zip(ids, probes, strict=True) if probe.problem is not None]


def bound_by_pipeline() -> list[str]:
    """The endpoints a process of the run binds, from :data:`stream.transport.endpoints.LAYOUT`."""
    return [name for name, hop in LAYOUT.items() if OUTSIDE not in hop.bind.opened_by]


def check_endpoints(endpoints: Endpoints, config: EndpointConfig,
                    detects: int = 1) -> list[Problem]:
    """Every endpoint the run binds that another process holds: the run's own, and each
    further fused worker's (``detects`` processes in all, :meth:`Endpoints.for_worker`)."""
    wanted = [(name, getattr(endpoints, name)) for name in bound_by_pipeline()]
    for worker in range(1, detects):
        own = endpoints.for_worker(worker, config)
        wanted += [(f"{name} of fused worker {worker}", getattr(own, name))
                   for name in PER_WORKER]
    problems = []
    for name, endpoint in wanted:
        message = endpoint_in_use(endpoint)
        if message is not None:
            problems.append(Problem(f"endpoint {endpoint} ({name})", message))
    return problems


def endpoint_in_use(endpoint: str) -> str | None:
    """Why the pipeline cannot bind ``endpoint`` now, or None when it can."""
    if endpoint.startswith("tcp://"):
        return _tcp_problem(endpoint)
    if endpoint.startswith("ipc://"):
        return _ipc_problem(endpoint[len("ipc://"):])
    return None


def _tcp_problem(endpoint: str) -> str | None:
    """Bind a throw-away ZeroMQ socket there: the same address parsing and options
    (SO_REUSEADDR) as the stage's own bind, so no false alarm from a port in TIME_WAIT."""
    context = zmq.Context()
    probe = context.socket(zmq.PUB)
    probe.setsockopt(zmq.LINGER, 0)
    try:
        probe.bind(endpoint)
    except zmq.ZMQError as error:
        if error.errno == zmq.EADDRINUSE:
            return "is in use (another hidemo run?): stop it, or choose another port"
        return f"cannot be bound ({error}): check the address"
    finally:
        probe.close(linger=0)
        context.term()  # returns once the listener is closed: the stage can bind it next
    return None


def _ipc_problem(path: str) -> str | None:
    """An ipc address is in use when its socket file accepts a connection: ZeroMQ's bind
    would unlink it and take the address from whoever listens there, without an error."""
    if path.startswith("@"):  # Linux abstract namespace: no file, only a listener
        return _listening("\0" + path[1:])
    if len(os.fsencode(path)) > IPC_PATH_MAX:
        return (f"the path is longer than a unix socket allows ({IPC_PATH_MAX} bytes): use a "
                "shorter endpoints.ipc_dir")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    except OSError as error:
        return f"cannot be checked ({error})"
    if not stat.S_ISSOCK(mode):
        return "a file that is not a socket is in the way: remove it or choose another path"
    return _listening(path)


def _listening(address: str) -> str | None:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.settimeout(CONNECT_TIMEOUT_S)
    try:
        client.connect(address)
    except OSError:
        return None  # refused: a stale socket file left by a run that ended
    finally:
        client.close()
    where = "" if address.startswith("\0") else f" (socket file {Path(address)})"
    return (f"is in use: another process (another hidemo run?) listens there{where}; stop "
            "it, or choose another endpoint")


def check_disk(config: RunConfig) -> list[Problem]:
    """The output folder (``config.out``, or the folder it will be made in) has at least
    :data:`OUT_MIN_FREE_BYTES` free, and the system's temporary folder, where the run's
    private folder goes, :data:`PRIVATE_MIN_FREE_BYTES`."""
    problems = []
    if config.out is not None:
        problem = free_space_problem(config.out, OUT_MIN_FREE_BYTES)
        if problem is not None:
            problems.append(Problem(f"output folder {config.out}",
                                    f"{problem}: {OUT_FIX}"))
    private = Path(tempfile.gettempdir())
    problem = free_space_problem(private, PRIVATE_MIN_FREE_BYTES)
    if problem is not None:
        problems.append(Problem(f"private run folder in {private}",
                                f"{problem}: {PRIVATE_FIX}"))
    return problems


def free_space_problem(folder: Path, needed: int) -> str | None:
    """Why ``folder`` (or its nearest existing parent, where it will be made) has too
    little room for ``needed`` bytes, or None. Counts the space an unprivileged process
    may use (``f_bavail``)."""
    where = folder.absolute()
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        stats = os.statvfs(where)
    except OSError as error:
        return f"its free space cannot be checked ({error.strerror})"
    free = stats.f_bavail * stats.f_frsize
    if free >= needed:
        return None
    return f"{_size(free)} free, a run needs at least {_size(needed)}"


def _size(count: int) -> str:
    if count >= 2**20:
        return f"{count / 2**20:.1f} MiB"
    return f"{count / 2**10:.0f} KiB" if count >= 2**10 else f"{count} bytes"


def write_problem(path: Path, error: OSError, *, private: bool = False) -> Problem:
    """A file the run writes before any stage starts could not be written (the disk
    filled after :func:`check_disk`, a folder without write permission): the problem, with
    the same fix as the check's."""
    needed = PRIVATE_MIN_FREE_BYTES if private else OUT_MIN_FREE_BYTES
    what = "private run folder" if private else "output folder"
    return Problem(f"{what} {path.parent}",
                   f"{path.name} could not be written ({error.strerror or error}); a run "
                   f"needs it writable with at least {_size(needed)} free: "
                   f"{PRIVATE_FIX if private else OUT_FIX}")
