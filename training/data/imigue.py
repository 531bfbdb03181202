"""iMiGUE: its label table, the MiGA-2025 cross-subject split, a manifest, its skeletons.

iMiGUE (359 post-match tennis interviews, 72 players, 25 fps) ships a micro-gesture table,
``labels_20200831.csv``, with one row per annotated gesture clip: many rows per video. The
video's emotion label is its ``win_or_lose`` (Win -> 1 positive, Lose -> 0 negative) and
its player is ``subject_id``; both must agree on every row of a video, or the table is
refused (a mixed-up table would silently mislabel a whole video).

The split is the one the MiGA 2025 challenge and the paper use, by player: the players in
:data:`TEST_SUBJECTS` form the test set (104 videos: 56 win / 48 lose), the others
train + val (255 videos: 202 win / 53 lose). Which 10 of those 255 the challenge held out
for validation is not published with the table; pass ``val_subjects`` to hold some
players out, otherwise they are all ``train``.

Folder layout assumed by :func:`imigue_manifest` (both patterns are arguments):

    ROOT/videos/<video_id>.mp4            the video files
    ROOT/skeletons/<video_id>/            OpenPose 1.3 JSON, <...>_<frame>_keypoints.json

A pattern is a ``str.format`` template relative to ROOT with ``{id}`` (the id as in the
table, e.g. ``371``) and ``{num}`` (the id as an int, for zero-padded names:
``videos/{num:04d}.mp4``).

Example:
    >>> sorted(TEST_SUBJECTS)[:4]
    [1, 3, 7, 8]
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.adapters.openpose_json import read_sequence
from engines.adapters.rates import decimate
from training.data.manifest import ManifestRow

logger = logging.getLogger(__name__)

TEST_SUBJECTS: frozenset[int] = frozenset(
    [1, 3, 7, 8, 11, 16, 19, 24, 26, 27, 32, 33, 34, 37, 40, 45, 49, 50, 51,
     *range(54, 59), 60, *range(63, 73)]
)
"""MiGA 2025 cross-subject test players (subject_id): 1, 3, 7, 8, 11, 16, 19, 24, 26, 27,
32, 33, 34, 37, 40, 45, 49, 50, 51, 54-58, 60, 63-72."""

IMIGUE_FPS = 25.0
"""Frame rate of iMiGUE's videos and of its skeleton frame numbers."""

LABEL_COLUMNS = ("video_id", "subject_id", "win_or_lose")
VIDEO_PATTERN = "videos/{id}.mp4"
SKELETON_PATTERN = "skeletons/{id}"


@dataclass(frozen=True)
class ImigueVideo:
    """One video of the label table: its id, player and label (1 win, 0 lose)."""

    video_id: str
    subject: int
    label: int


def read_labels(labels_csv: Path | str) -> list[ImigueVideo]:
    """One :class:`ImigueVideo` per video of ``labels_20200831.csv``, sorted by id.

    Raises ValueError naming the file and line when a column is missing, a label is not
    Win/Lose, or one video's rows disagree on its label or player.
    """
    path = Path(labels_csv)
    if not path.is_file():
        raise FileNotFoundError(f"iMiGUE label table {path} not found (labels_20200831.csv)")
    videos: dict[str, tuple[ImigueVideo, int]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in LABEL_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: header lacks {missing}; is this iMiGUE's "
                             "labels_20200831.csv?")
        for record in reader:
            line = reader.line_num
            try:
                video = _parse_record(record)
            except ValueError as error:
                raise ValueError(f"{path}: line {line}: {error}") from None
            if video.video_id in videos:
                seen, seen_line = videos[video.video_id]
                if seen != video:
                    raise ValueError(
                        f"{path}: line {line}: video {video.video_id} has subject "
                        f"{video.subject}, label {video.label}, but line {seen_line} says "
                        f"subject {seen.subject}, label {seen.label}"
                    )
            else:
                videos[video.video_id] = (video, line)
    return sorted((v for v, _ in videos.values()), key=lambda v: _sort_key(v.video_id))


def _parse_record(record: dict[str, str]) -> ImigueVideo:
    video_id = (record.get("video_id") or "").strip()
    if not video_id:
        raise ValueError("empty video_id")
    try:
        subject = int((record.get("subject_id") or "").strip())
    except ValueError:
        raise ValueError(f"subject_id {record.get('subject_id')!r} is not a number") from None
    outcome = (record.get("win_or_lose") or "").strip()
    if outcome.lower() not in ("win", "lose"):
        raise ValueError(f"win_or_lose is {outcome!r}; expected Win or Lose")
    return ImigueVideo(video_id, subject, 1 if outcome.lower() == "win" else 0)


def _sort_key(video_id: str) -> tuple[int, str]:
    return (int(video_id), "") if video_id.isdigit() else (1 << 62, video_id)


def split_of(subject: int, val_subjects: Iterable[int] = ()) -> str:
    """``test`` for a MiGA test player, ``val`` for one in ``val_subjects``, else ``train``."""
    if subject in TEST_SUBJECTS:
        return "test"
    return "val" if subject in set(val_subjects) else "train"


def imigue_manifest(root: Path | str, labels_csv: Path | str, *,
                    video_pattern: str = VIDEO_PATTERN,
                    skeleton_pattern: str = SKELETON_PATTERN,
                    val_subjects: Sequence[int] = ()) -> list[ManifestRow]:
    """A manifest row per video of the label table, with the files found under ``root``.

    ``path`` / ``skeleton_dir`` are filled only where that file / folder exists (a row with
    neither is kept: extraction reports it, so a missing video is seen, not lost). A
    warning says how many were not found and where they were looked for.
    """
    root = Path(root).expanduser().resolve()
    overlap = TEST_SUBJECTS & set(val_subjects)
    if overlap:
        raise ValueError(f"val_subjects {sorted(overlap)} are MiGA test players")
    rows = []
    no_video = no_skeleton = 0
    for video in read_labels(labels_csv):
        video_path = root / _fill(video_pattern, video.video_id)
        skeleton_dir = root / _fill(skeleton_pattern, video.video_id)
        no_video += not video_path.is_file()
        no_skeleton += not skeleton_dir.is_dir()
        rows.append(ManifestRow(
            video_id=video.video_id,
            path=str(video_path) if video_path.is_file() else "",
            label=video.label, subject=str(video.subject),
            split=split_of(video.subject, val_subjects),
            skeleton_dir=str(skeleton_dir) if skeleton_dir.is_dir() else "",
        ))
    if no_video:
        logger.warning("%d of %d iMiGUE videos not found as %s", no_video, len(rows),
                       root / video_pattern)
    if no_skeleton:
        logger.warning("%d of %d iMiGUE skeleton folders not found as %s", no_skeleton,
                       len(rows), root / skeleton_pattern)
    return rows


def _fill(pattern: str, video_id: str) -> str:
    number = int(video_id) if video_id.isdigit() else -1
    try:
        return pattern.format(id=video_id, num=number)
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(f"path pattern {pattern!r} is not a template of {{id}} and {{num}} "
                         f"({error})") from None


def read_skeletons(folder: Path | str, keypoint_rate: float,
                   fps: float = IMIGUE_FPS) -> tuple[np.ndarray, np.ndarray]:
    """An OpenPose skeleton folder as ``(times, keypoints)`` at ``keypoint_rate``.

    Frame ``n`` (from the file name) is at ``n / fps`` seconds, the same clock as the
    video's frames; frames are then decimated with :func:`engines.adapters.rates.decimate`,
    exactly as extraction decimates decoded video. Returns (N,) float64 seconds and
    (N, 137, 3) float32 pixel keypoints of the main person (zeros where nobody is seen).
    """
    if not fps > 0:
        raise ValueError(f"skeleton fps is {fps}; it must be positive")
    keypoints, frames = read_sequence(folder)
    times = frames.astype(np.float64) / fps
    keep = decimate(times, keypoint_rate)
    return times[keep], keypoints[keep]
