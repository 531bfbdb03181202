"""Virtual environments of their own for tools whose pins clash with hidemo's.

Some tools cannot share hidemo's environment: the TFLite converter needs a TensorFlow whose
protobuf or numpy pins clash with mediapipe's, and PyTriton's Triton server needs numpy < 2.
Each gets a virtual environment with exactly its pins, created once under a folder named by
the hash of those pins (and the Python version), reused afterwards; changing a pin makes a
new one. Creation needs the package index once; two processes creating the same
environment take turns (a file lock), so they never both run pip.

Example:
    >>> env = ensure_tool_env(Path("envs"), "pytriton", ["numpy<2"])  # doctest: +SKIP
    >>> env.python  # doctest: +SKIP
    PosixPath('envs/pytriton-1a2b3c4d5e6f/bin/python')
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import subprocess
import sys
import venv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from engines.manifest import sha256_json

READY = "hidemo-ready.json"
INSTALL_TIMEOUT_S = 1800


class ToolEnvError(RuntimeError):
    """The environment could not be created; the message carries pip's last lines."""


@dataclass(frozen=True)
class ToolEnv:
    """A ready environment (its folder holds ``bin/python``) and the pins it was made with."""

    root: Path
    pins: tuple[str, ...]

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"


def env_folder(root: Path, name: str, pins: Sequence[str]) -> Path:
    """Where the environment ``name`` with ``pins`` lives under ``root``."""
    tag = sha256_json({"pins": list(pins), "python": list(sys.version_info[:2])})[:12]
    return Path(root) / f"{name}-{tag}"


def ensure_tool_env(root: Path, name: str, pins: Sequence[str], *,
                    say: Callable[[str], None] = lambda _: None,
                    offline_hint: str = "") -> ToolEnv:
    """The environment ``name`` with exactly ``pins`` under ``root``, created on first use.

    Raises :class:`ToolEnvError` with pip's last lines and ``offline_hint`` (the way out)
    when the install fails, usually for want of the package index.
    """
    pins = tuple(pins)
    folder = env_folder(root, name, pins)
    env = ToolEnv(folder, pins)
    with _locked(folder.with_name(folder.name + ".lock")):
        if is_ready(folder, pins):
            return env
        say(f"creating the {name} environment {folder} ({', '.join(pins)}; once, a few "
            "minutes)")
        venv.EnvBuilder(clear=True, with_pip=True).create(folder)
        install = [str(env.python), "-m", "pip", "install", "--quiet",
                   "--disable-pip-version-check", *pins]
        try:
            done = subprocess.run(install, capture_output=True, text=True,
                                  timeout=INSTALL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as error:
            raise ToolEnvError(f"installing the {name} environment took over "
                               f"{INSTALL_TIMEOUT_S} s") from error
        if done.returncode != 0:
            raise ToolEnvError(
                f"could not create the {name} environment {folder}: `pip install "
                f"{' '.join(pins)}` failed:\n{tail(done.stderr)}\n  It needs the package "
                f"index once. {offline_hint}".rstrip())
        (folder / READY).write_text(json.dumps({"pins": list(pins)}))
    return env


def is_ready(folder: Path, pins: Sequence[str]) -> bool:
    """True when ``folder`` holds an environment completely installed with ``pins``."""
    marker = folder / READY
    if not marker.is_file() or not (folder / "bin" / "python").exists():
        return False
    try:
        return json.loads(marker.read_text()).get("pins") == list(pins)
    except (json.JSONDecodeError, AttributeError):
        return False


def tail(text: str, lines: int = 15) -> str:
    """The last ``lines`` lines of a tool's output, indented, for an error message."""
    return "\n".join("  " + line for line in text.strip().splitlines()[-lines:])


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One creator at a time (two commands started together must not both pip install)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
