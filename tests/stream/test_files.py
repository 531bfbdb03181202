"""Files written whole or not at all: JSONL logs cut back to their last whole line, and
documents replaced atomically, on a disk that fills up at any byte.

The property tests inject the failure at a chosen byte (a writer that writes up to a budget
with the real ``os.write``, a short write included, then raises ``ENOSPC`` as the kernel
does); the others fill a real small file system (:mod:`small_disk`).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from small_disk import fill, small_disk

from stream.files import LineAppender, write_document

LINE = st.binary(max_size=300).map(lambda raw: raw.replace(b"\n", b" "))
"""Any bytes but a newline: what a line may hold (JSON, text in any encoding)."""


class FillingDisk:
    """``os.write`` on a disk with ``budget`` bytes left: a write larger than what is left
    writes the part that fits (a short write), the next one raises ``ENOSPC``. ``refill``
    gives space back (another program deleted a file)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def __call__(self, fd: int, data: memoryview, /) -> int:
        if self.budget <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = os.write(fd, data[:self.budget])
        self.budget -= written
        return written


def whole_lines(path: Path) -> list[bytes]:
    """The file's lines, asserting it is nothing but whole lines (empty, or ends in \\n)."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"a partial last line: {data[-40:]!r}"
    return data.split(b"\n")[:-1]


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture],
          deadline=None)
@given(lines=st.lists(LINE, max_size=20), budget=st.integers(0, 4000))
def test_a_log_is_always_a_prefix_of_whole_lines(tmp_path: Path, lines: list[bytes],
                                                 budget: int) -> None:
    path = tmp_path / "log.jsonl"
    path.unlink(missing_ok=True)
    disk = FillingDisk(budget)
    log = LineAppender(path, write=disk)
    written = []
    for line in lines:
        try:
            log.append(line)
        except OSError as error:
            assert error.errno == errno.ENOSPC
            continue  # the caller may go on: the next line may be shorter, or fail too
        written.append(line)
    log.close()
    fits = 0  # the lines that fit in the budget, whole: exactly those are in the file
    while fits < len(lines) and sum(len(x) + 1 for x in lines[:fits + 1]) <= budget:
        fits += 1
    assert whole_lines(path) == written == lines[:fits]


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture],
          deadline=None)
@given(lines=st.lists(LINE, min_size=1, max_size=20), budget=st.integers(0, 2000),
       refill_at=st.integers(0, 19), refill=st.integers(0, 2000))
def test_space_that_comes_back_mid_log_leaves_whole_lines_in_order(
        tmp_path: Path, lines: list[bytes], budget: int, refill_at: int, refill: int) -> None:
    path = tmp_path / "log.jsonl"
    path.unlink(missing_ok=True)
    disk = FillingDisk(budget)
    log = LineAppender(path, write=disk)
    written = []
    for i, line in enumerate(lines):
        if i == refill_at:
            disk.budget += refill
        try:
            log.append(line)
        except OSError:
            continue
        written.append(line)
    log.close()
    assert whole_lines(path) == written  # the lines that succeeded, in order, nothing else


def test_a_partial_last_line_left_by_a_killed_writer_is_cut_at_open(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b'{"seq":0}\n{"seq":1}\n{"se')
    log = LineAppender(path)
    log.append(b'{"seq":2}')
    log.close()
    assert [json.loads(line) for line in whole_lines(path)] == \
        [{"seq": 0}, {"seq": 1}, {"seq": 2}]
    assert log.truncated == len(b'{"se')
    path.write_bytes(b"no newline at all " * 10000)  # longer than one tail block
    LineAppender(path).close()
    assert path.read_bytes() == b""


def test_a_line_with_a_newline_is_refused(tmp_path: Path) -> None:
    log = LineAppender(tmp_path / "log.jsonl")
    with pytest.raises(ValueError, match="newline"):
        log.append(b"two\nlines")
    log.close()
    assert (tmp_path / "log.jsonl").read_bytes() == b""


def test_a_log_on_a_real_disk_that_fills_keeps_whole_lines(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 64) as disk:
        path = disk / "predictions.jsonl"
        log = LineAppender(path)
        appended = 0
        with pytest.raises(OSError) as full:
            for seq in range(100_000):
                log.append(json.dumps({"seq": seq, "pad": "x" * (seq % 97)}).encode())
                appended += 1
        assert full.value.errno == errno.ENOSPC
        log.close()
        records = [json.loads(line) for line in whole_lines(path)]
        assert [r["seq"] for r in records] == list(range(appended)) and appended > 10


def test_a_document_on_a_full_disk_keeps_its_old_content_and_leaves_no_temp(
        tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", 64) as disk:
        path = disk / "summary.json"
        write_document(path, json.dumps({"run": 1}))
        fill(disk)
        with pytest.raises(OSError) as full:
            write_document(path, json.dumps({"run": 2, "pad": "x" * 100_000}))
        assert full.value.errno == errno.ENOSPC
        assert json.loads(path.read_text()) == {"run": 1}
        assert sorted(p.name for p in disk.iterdir()) == ["filler", "summary.json"]
        with pytest.raises(OSError):
            write_document(disk / "config.json", "{}" + " " * 100_000)
        assert not (disk / "config.json").exists()
        (disk / "filler").unlink()
        write_document(path, json.dumps({"run": 3}))
        assert json.loads(path.read_text()) == {"run": 3}


@settings(max_examples=50, suppress_health_check=[HealthCheck.function_scoped_fixture],
          deadline=None)
@given(old=st.binary(max_size=3000), new=st.binary(max_size=3000))
def test_a_document_is_replaced_whole(tmp_path: Path, old: bytes, new: bytes) -> None:
    path = tmp_path / "doc.json"
    write_document(path, old)
    write_document(path, new, durable=False)
    assert path.read_bytes() == new
    assert [p.name for p in tmp_path.iterdir()] == ["doc.json"]
