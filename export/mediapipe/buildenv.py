"""The conversion environment: TensorFlow + tf2onnx in a virtual environment of their own.

tf2onnx imports TensorFlow, and no TensorFlow can share hidemo's environment: 2.20 and later
need protobuf >= 5, which mediapipe 0.10.21 forbids, and 2.19 pins numpy < 2.2. So the build
creates (once) a separate virtual environment with exactly :data:`PINS`, under a folder
named by their hash, and runs :mod:`export.mediapipe.convert_worker` there as a subprocess,
on the model with its DENSIFY ops already folded here
(:mod:`engines.backends.tflite_densify`).
A later build reuses it; changing a pin makes a new one. It needs the package index once
(252 MB for tensorflow-cpu); offline, create it elsewhere and pass its folder.

Example:
    >>> env = ensure_convert_env(Path("artifacts/build-env"))  # doctest: +SKIP
    >>> env.convert(Path("pose_detection.tflite"), Path("out.onnx"), opset=17)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engines import toolenv
from engines.backends.tflite_densify import DensifyError, densify
from engines.toolenv import tail as _tail

PINS = ("tensorflow-cpu==2.19.1", "tf2onnx==1.17.0", "numpy==2.1.3", "protobuf==4.25.9",
        "onnx==1.19.1")
"""What the conversion runs on, exactly (checked together on Python 3.11)."""

DEFAULT_ROOT = Path("artifacts/build-env")
WORKER = Path(__file__).with_name("convert_worker.py")
ENV_NAME = "tflite2onnx"
CONVERT_TIMEOUT_S = 600


class ConvertEnvError(RuntimeError):
    """The conversion environment could not be created, or a conversion in it failed."""


@dataclass(frozen=True)
class Conversion:
    """What one conversion reports: DENSIFY ops replaced and the tool versions used."""

    densified: int
    versions: dict[str, str]


@dataclass(frozen=True)
class ConvertEnv:
    """A ready conversion environment (its folder holds ``bin/python``)."""

    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def convert(self, tflite: Path, onnx_path: Path, opset: int) -> Conversion:
        """Convert ``tflite`` to ``onnx_path`` in this environment, its DENSIFY ops folded
        first (here, with hidemo's TFLite runtime: tf2onnx cannot convert them)."""
        try:
            dense, folded = densify(tflite.read_bytes())
        except (OSError, DensifyError) as error:
            raise ConvertEnvError(f"converting {tflite} failed: {error}") from error
        with tempfile.TemporaryDirectory() as scratch:
            source = tflite
            if folded:
                source = Path(scratch) / f"{tflite.stem}.dense.tflite"
                source.write_bytes(dense)
            done = self._run_worker(tflite, source, onnx_path, opset)
        report = _last_json_line(done.stdout)
        if done.returncode != 0 or report is None or not onnx_path.is_file():
            raise ConvertEnvError(
                f"converting {tflite} to ONNX failed (exit {done.returncode}):\n"
                + _tail(done.stderr or done.stdout))
        versions = {f"convert:{k}": str(report[k]) for k in ("tensorflow", "tf2onnx", "onnx")}
        return Conversion(folded, versions)

    def _run_worker(self, tflite: Path, source: Path, onnx_path: Path,
                    opset: int) -> subprocess.CompletedProcess[str]:
        command = [str(self.python), str(WORKER), str(source), str(onnx_path),
                   "--opset", str(opset)]
        try:
            return subprocess.run(command, capture_output=True, text=True,
                                  timeout=CONVERT_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired as error:
            raise ConvertEnvError(f"converting {tflite} took over {CONVERT_TIMEOUT_S} s"
                                  ) from error


def _last_json_line(text: str) -> dict[str, object] | None:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(json.JSONDecodeError):
            data = json.loads(line)
            if isinstance(data, dict):
                return data
    return None


def env_folder(root: Path) -> Path:
    """Where the environment for the current :data:`PINS` lives under ``root``."""
    return toolenv.env_folder(root, ENV_NAME, PINS)


def ensure_convert_env(root: Path = DEFAULT_ROOT,
                       say: Callable[[str], None] = lambda _: None) -> ConvertEnv:
    """The conversion environment under ``root``, created on first use.

    Raises :class:`ConvertEnvError` with pip's last lines and the way out when the install
    fails (usually: no access to the package index).
    """
    try:
        env = toolenv.ensure_tool_env(
            root, ENV_NAME, PINS, say=say,
            offline_hint="Offline: create it on a connected machine with these pins and "
                         "pass its parent folder with --convert-env, or skip the keypoint "
                         "engines (--only with the other engines).")
    except toolenv.ToolEnvError as error:
        raise ConvertEnvError(str(error)) from error
    return ConvertEnv(env.root)


def _is_ready(folder: Path) -> bool:
    return toolenv.is_ready(folder, PINS)
