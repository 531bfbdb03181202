"""The dataset manifest: roundtrip, relative paths, transcripts, and rows it must refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.data.manifest import (
    ManifestError,
    ManifestRow,
    load_transcript,
    parse_label,
    read_manifest,
    write_manifest,
)

HEADER = "video_id,path,label,subject,split\n"


def test_roundtrip(tmp_path: Path) -> None:
    rows = [
        ManifestRow("371", str(tmp_path / "v" / "371.mp4"), 1, "1", "test",
                    "We played well, I think.", str(tmp_path / "s" / "371")),
        ManifestRow("a-2.b_c", "", None, "", "train"),
        ManifestRow("x", str(tmp_path / "x.avi"), 0, "7", "val", "line one\nline two, \"quoted\""),
    ]
    path = write_manifest(tmp_path / "m.csv", rows)
    assert read_manifest(path) == rows
    assert path.read_text().splitlines()[0] == ("video_id,path,label,subject,split,transcript,"
                                                "skeleton_dir")


def test_relative_paths_follow_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t1.txt").write_text("  Tough match.\n")
    (tmp_path / "data" / "m.csv").write_text(
        HEADER.strip() + ",transcript,skeleton_dir\n"
        "v1,videos/v1.mp4,Win,3,train,t1.txt,skeletons/v1\n"
        "v2,,LOSE,4,test,missing.txt,\n")
    first, second = read_manifest(tmp_path / "data" / "m.csv")
    assert first.path == str(tmp_path / "data" / "videos" / "v1.mp4")
    assert first.skeleton_dir == str(tmp_path / "data" / "skeletons" / "v1")
    assert (first.label, second.label, second.path) == (1, 0, "")
    assert load_transcript(first) == "Tough match."
    with pytest.raises(FileNotFoundError, match=r"missing\.txt"):
        load_transcript(second)
    assert load_transcript(ManifestRow("v3")) is None


@pytest.mark.parametrize("value, label", [("win", 1), ("Positive", 1), ("1", 1), ("Lose", 0),
                                          ("negative", 0), ("0", 0), ("", None), (" ", None)])
def test_label_spellings(value: str, label: int | None) -> None:
    assert parse_label(value) == label


@pytest.mark.parametrize("body, message", [
    ("v1,a.mp4,win,1,train\nv2,b.mp4,draw,1,train\n", r"line 3: unknown label 'draw'"),
    ("v1,a.mp4,win,1,holdout\n", r"line 2: split 'holdout'"),
    ("v1,a.mp4,win,1,train\nv1,b.mp4,win,1,train\n", r"line 3: video_id 'v1' repeats line 2"),
    ("../v1,a.mp4,win,1,train\n", r"line 2: video_id '../v1'"),
    (",a.mp4,win,1,train\n", r"line 2: video_id ''"),
    ("v1,a.mp4,win,1,train,extra\n", r"line 2 has more fields"),
])
def test_bad_rows_name_the_file_and_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + body)
    with pytest.raises(ManifestError, match=message) as error:
        read_manifest(path)
    assert str(path) in str(error.value)


def test_a_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("video_id,path,label,subject\nv1,a.mp4,win,1\n")
    with pytest.raises(ManifestError,
                       match=r"m\.csv: line 1 \(header\) lacks column\(s\) \['split'\]"):
        read_manifest(path)


def test_a_missing_manifest_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        read_manifest(tmp_path / "nope.csv")


def test_write_refuses_a_bad_row(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        write_manifest(tmp_path / "m.csv", [ManifestRow("v1", split="dev")])
