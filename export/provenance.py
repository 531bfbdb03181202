"""Facts recorded beside every artifact: library versions, git commit, time, machine."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import platform
import subprocess
from pathlib import Path

TRACKED = ("hidemo", "torch", "onnx", "onnxruntime", "onnxscript", "ultralytics",
           "transformers", "tokenizers", "numpy", "tensorrt")


def library_versions(names: tuple[str, ...] = TRACKED) -> dict[str, str]:
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


def machine() -> str:
    return f"{platform.system()} {platform.machine()} {platform.processor() or ''}".strip()
