"""A small, real file system for full-disk tests, and a way to fill it.

Not a test module. :func:`small_disk` mounts a size-limited tmpfs (root, as in CI); where
mounting a tmpfs is not permitted, a size-limited ext2 image in a loop device; where
neither works, the test is skipped with the reason. :func:`fill` then takes every free
byte, as another program filling the disk would: writes after it fail with ``ENOSPC``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(command), capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def small_disk(where: Path, size_kib: int) -> Iterator[Path]:
    """A file system of about ``size_kib`` KiB mounted at ``where`` (made); unmounted after."""
    where.mkdir(parents=True, exist_ok=True)
    tmpfs = _run("mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs",
                 str(where))
    if tmpfs.returncode != 0:
        image = where.with_name(where.name + ".img")
        made = _run("mkfs.ext2", "-q", "-F", "-m", "0", str(image), f"{size_kib}k")
        loop = _run("mount", "-o", "loop", str(image), str(where)) if made.returncode == 0 \
            else made
        if loop.returncode != 0:
            pytest.skip("cannot mount a small file system to fill (needs root: mount -t "
                        f"tmpfs, or a loop device): tmpfs: {tmpfs.stderr.strip()}; loop "
                        f"ext2: {loop.stderr.strip()}")
    try:
        yield where
    finally:
        if _run("umount", str(where)).returncode != 0:
            _run("umount", "-l", str(where))


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def fill(folder: Path, name: str = "filler") -> Path:
    """Write ``folder/name`` until the disk refuses (``ENOSPC``): the file system is full."""
    path = folder / name
    chunk = b"\0" * 65536
    with path.open("ab", buffering=0) as filler:
        for size in (65536, 4096, 1):
            while True:
                try:
                    if filler.write(chunk[:size]) == 0:
                        break
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    break
    return path
