"""iMiGUE on its real formats: the label table and split, the manifest, the skeletons."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from engines.adapters.openpose_json import read_sequence
from engines.adapters.rates import slot_of
from training.data.imigue import (
    TEST_SUBJECTS,
    imigue_manifest,
    read_labels,
    read_skeletons,
    split_of,
)

HEADER = ("video_id,label_id,start_time,start_frame,end_time,end_frame,class,subject_id,"
          "subject_gender,subject_nationality,win_or_lose\n")


@pytest.fixture(scope="module")
def labels_csv(fixtures_dir: Path) -> Path:
    return fixtures_dir / "imigue" / "labels_20200831.csv"


def test_real_table_gives_the_miga_split(labels_csv: Path) -> None:
    videos = read_labels(labels_csv)
    assert len(videos) == 359
    assert len({v.subject for v in videos}) == 72
    counts = Counter((split_of(v.subject), v.label) for v in videos)
    assert counts[("train", 1)] == 202 and counts[("train", 0)] == 53  # train + val: 255
    assert counts[("test", 1)] == 56 and counts[("test", 0)] == 48  # test: 104


def test_real_manifest_has_every_video_without_files(labels_csv: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    rows = imigue_manifest(tmp_path, labels_csv)
    assert len(rows) == 359 and all(r.path == "" and r.skeleton_dir == "" for r in rows)
    train = {r.subject for r in rows if r.split == "train"}
    test = {r.subject for r in rows if r.split == "test"}
    assert not train & test
    assert {int(s) for s in test} == set(TEST_SUBJECTS)
    assert "359 of 359 iMiGUE videos not found" in caplog.text


def test_manifest_finds_files_by_pattern(tmp_path: Path) -> None:
    table = tmp_path / "labels.csv"
    table.write_text(HEADER + "7,1,0,0,1,25,3,2,M,X,Win\n"
                              "7,2,2,50,3,75,4,2,M,X,Win\n"
                              "12,1,0,0,1,25,3,1,F,Y,Lose\n"
                              "30,1,0,0,1,25,3,5,F,Y,Lose\n")
    (tmp_path / "mp4").mkdir()
    (tmp_path / "mp4" / "0007.mp4").write_bytes(b"")
    (tmp_path / "op" / "12").mkdir(parents=True)
    rows = imigue_manifest(tmp_path, table, video_pattern="mp4/{num:04d}.mp4",
                           skeleton_pattern="op/{id}", val_subjects=[5])
    by_id = {r.video_id: r for r in rows}
    assert [r.video_id for r in rows] == ["7", "12", "30"]
    assert by_id["7"].path == str(tmp_path / "mp4" / "0007.mp4")
    assert by_id["7"].skeleton_dir == "" and by_id["12"].path == ""
    assert by_id["12"].skeleton_dir == str(tmp_path / "op" / "12")
    assert [(r.label, r.subject, r.split) for r in rows] == [
        (1, "2", "train"), (0, "1", "test"), (0, "5", "val")]
    with pytest.raises(ValueError, match="MiGA test players"):
        imigue_manifest(tmp_path, table, val_subjects=[1])
    with pytest.raises(ValueError, match="template"):
        imigue_manifest(tmp_path, table, video_pattern="videos/{video}.mp4")


@pytest.mark.parametrize("rows, message", [
    ("7,1,0,0,1,25,3,2,M,X,Win\n7,2,0,0,1,25,3,2,M,X,Lose\n", "line 3: video 7 has subject 2, "
                                                              "label 0, but line 2 says"),
    ("7,1,0,0,1,25,3,2,M,X,Win\n7,2,0,0,1,25,3,4,M,X,Win\n", "line 3: video 7 has subject 4"),
    ("7,1,0,0,1,25,3,2,M,X,Draw\n", "line 2: win_or_lose is 'Draw'"),
    ("7,1,0,0,1,25,3,two,M,X,Win\n", "line 2: subject_id 'two'"),
])
def test_inconsistent_tables_are_refused(tmp_path: Path, rows: str, message: str) -> None:
    table = tmp_path / "labels.csv"
    table.write_text(HEADER + rows)
    with pytest.raises(ValueError, match=message):
        read_labels(table)


def test_skeletons_at_the_keypoint_rate(fixtures_dir: Path) -> None:
    folder = fixtures_dir / "imigue" / "openpose_298"
    full, frames = read_sequence(folder)
    times, keypoints = read_skeletons(folder, keypoint_rate=5.0)
    assert len(times) == 50 and keypoints.shape == (50, 137, 3)
    np.testing.assert_allclose(times, 200.0 + 0.2 * np.arange(50))  # frame 5000 at 25 fps
    np.testing.assert_array_equal(keypoints, full[::5])
    assert (keypoints[:, 1, 2] > 0).all()  # the neck is seen in every kept frame

    times10, _ = read_skeletons(folder, keypoint_rate=10.0)
    assert len(times10) == 100
    assert [slot_of(t, 10.0) for t in times10] == list(range(2000, 2100))
    every, _ = read_skeletons(folder, keypoint_rate=25.0)
    np.testing.assert_allclose(every, frames / 25.0)


def test_imigue_manifest_command(labels_csv: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    from hidemo.cli import main
    from training.data.manifest import read_manifest

    out = tmp_path / "imigue.csv"
    code = main(["features", "imigue-manifest", "--root", str(tmp_path), "--labels",
                 str(labels_csv), "--out", str(out), "--val-subjects", "2"])
    assert code == 0
    assert "359 videos: train 196 win / 51 lose, val 6 win / 2 lose, test 56 win / 48 lose" \
        in capsys.readouterr().out
    rows = read_manifest(out)
    assert len(rows) == 359 and {r.split for r in rows if r.subject == "2"} == {"val"}
