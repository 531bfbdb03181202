"""Files a run writes, whole or not at all, even when the disk fills up.

Two shapes of file: a *document* (``config.json``, ``summary.json``, a stage's memory, the
web view's counters) is replaced as a whole by :func:`write_document`: written to a
temporary file in the same folder, flushed to the disk, then renamed over the old one, so a
reader sees the old document or the new one, never a part. A *log* (``predictions.jsonl``,
``frames.jsonl``, a transcript) grows by whole lines through :class:`LineAppender`: a line
that a full disk (``ENOSPC``) cut short is truncated back, so the file stays a sequence of
complete lines that each parse.

Example::

    write_document(out / "summary.json", text)           # or raises OSError, old file kept
    log = LineAppender(out / "predictions.jsonl")
    log.append(b'{"seq":0}')                              # or raises OSError, file unchanged
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Protocol

TAIL_BLOCK = 64 * 1024
"""Bytes read at a time from a log's end when looking for its last whole line."""


def write_document(path: Path, data: str | bytes, *, durable: bool = True,
                   mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically: a temporary file next to it (the same
    file system, so the rename is atomic), written in full, then :func:`os.replace`. On any
    error (``ENOSPC``, ``EDQUOT``, ``EIO``) the temporary file is removed, ``path`` keeps
    its old content (or stays absent) and the error is raised.

    ``durable`` fsyncs the file before the rename and the folder after it, so the document
    survives a power cut too: what a run leaves behind. A stage's memory in the run's
    private folder only has to survive the stage's own crash (the folder does not outlive
    the run), which the rename alone gives: ``durable=False`` spares a disk flush per batch.
    """
    raw = data.encode() if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, mode)
            _write_all(fd, raw)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable; best effort (some file systems refuse a folder's
    fsync, and the document is already complete either way)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class _Writer(Protocol):
    def __call__(self, fd: int, data: memoryview, /) -> int: ...


def _write_all(fd: int, data: bytes, write: _Writer = os.write) -> None:
    """``os.write`` until every byte is out: a write may take only part (a signal, a pipe,
    the last free block of a disk); the next one then raises the reason."""
    view = memoryview(data)
    while view:
        written = write(fd, view)
        view = view[written:]


class LineAppender:
    """Appends whole lines to one file.

    Each :meth:`append` remembers where the file ended, writes the line and its newline
    with unbuffered ``os.write`` (so a crashed process loses nothing it wrote), and when a
    write fails part-way truncates the file back to that end (``os.ftruncate``) before
    raising: the file is always a sequence of whole lines. Opening also cuts a partial
    last line left by a process killed in the middle of a write, so lines appended after a
    restart never join onto it. Lines are not fsynced one by one: the disk cache survives
    a process crash, and a sync per line would cost more than the line.
    """

    def __init__(self, path: Path, write: _Writer = os.write) -> None:
        self.path = path
        self._write = write
        self.truncated = 0
        """Bytes cut from the end: partial lines of failed writes, or one found at open."""
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._cut_partial_tail()
        except BaseException:
            os.close(self._fd)
            raise

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def append(self, line: bytes) -> None:
        """Write ``line`` and a newline, whole or not at all (``OSError`` then)."""
        if self._fd < 0:
            raise ValueError(f"{self.path} is closed")
        if b"\n" in line:
            raise ValueError("a line must not contain a newline")
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            _write_all(self._fd, line + b"\n", self._write)
        except OSError:
            self._truncate(start)
            raise

    def close(self) -> None:
        """Close the file; never raises (nothing is buffered here)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)

    def _truncate(self, size: int) -> None:
        """Cut the file back to ``size`` bytes. Shrinking a file needs no free space, so
        this works on a full disk; should it fail all the same, the next open cuts the
        partial line (:meth:`_cut_partial_tail`)."""
        with contextlib.suppress(OSError):
            end = os.fstat(self._fd).st_size
            if end > size:
                os.ftruncate(self._fd, size)
                self.truncated += end - size

    def _cut_partial_tail(self) -> None:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return
        try:
            whole = _whole_lines_end(self.path, size)
        except OSError:  # unreadable (a device, no read permission): nothing to repair
            return
        if whole < size:
            os.ftruncate(self._fd, whole)
            self.truncated += size - whole


def _whole_lines_end(path: Path, size: int) -> int:
    """Where the last whole line of the first ``size`` bytes of ``path`` ends (0: none)."""
    with path.open("rb") as reader:
        end = size
        while end > 0:
            start = max(0, end - TAIL_BLOCK)
            reader.seek(start)
            newline = reader.read(end - start).rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            end = start
    return 0
