"""The dataset manifest: one CSV row per video, the input of ``hidemo features extract``.

A manifest decouples "which videos, with which labels and splits" from any dataset's own
folder layout: :mod:`training.data.imigue` writes one for iMiGUE, and anyone with another
dataset writes the same few columns by hand or with a spreadsheet.

Columns (a header row is required; column order is free):

- ``video_id`` (required): unique; names the video's file in the feature store, so only
  letters, digits, ``.``, ``_`` and ``-``.
- ``path`` (required, may be empty): the video file. Empty for a keypoints-only row.
- ``label`` (required, may be empty): ``negative``/``lose``/``0`` or ``positive``/``win``/``1``
  (any case); empty when unknown (unlabelled videos for pseudo-labelling).
- ``subject`` (required, may be empty): who is in the video; splits are by subject.
- ``split`` (required): ``train``, ``val`` or ``test``.
- ``transcript`` (optional): the text itself, or the path of a ``.txt`` file.
- ``skeleton_dir`` (optional): a folder of OpenPose JSON frames for this video.

Relative paths are relative to the manifest's own folder (resolved when read), so a
manifest can travel with its dataset.

Example:
    >>> row = ManifestRow("v1", "videos/v1.mp4", label=parse_label("Win"), split="test")
    >>> row.label
    1
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path

REQUIRED_COLUMNS = ("video_id", "path", "label", "subject", "split")
OPTIONAL_COLUMNS = ("transcript", "skeleton_dir")
COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
SPLITS = ("train", "val", "test")
LABELS = {"negative": 0, "lose": 0, "0": 0, "positive": 1, "win": 1, "1": 1}
"""Accepted spellings of the two classes (compared lower-case). 0 = negative / lose."""
LABEL_NAMES = ("negative", "positive")
"""How labels are written back (the classifier's class names)."""
VIDEO_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
"""A video id becomes a file name in the feature store: no separators, no leading dot."""
TRANSCRIPT_SUFFIX = ".txt"


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class ManifestRow:
    """One video. Paths are strings (``""`` = none), made absolute by :func:`read_manifest`."""

    video_id: str
    path: str = ""
    label: int | None = None
    subject: str = ""
    split: str = "train"
    transcript: str = ""
    skeleton_dir: str = ""


def parse_label(value: str) -> int | None:
    """``"Win"`` -> 1, ``"negative"`` -> 0, ``""`` -> None; anything else raises ValueError."""
    text = value.strip().lower()
    if not text:
        return None
    if text not in LABELS:
        raise ValueError(f"unknown label {value!r}; use one of {sorted(LABELS)} or leave it "
                         "empty when unknown")
    return LABELS[text]


def check_row(row: ManifestRow) -> None:
    """Raise ValueError unless ``row`` has a usable id, label and split."""
    if not VIDEO_ID.fullmatch(row.video_id):
        raise ValueError(f"video_id {row.video_id!r} must be non-empty and use only letters, "
                         "digits, '.', '_' and '-' (it names a file in the feature store)")
    if row.split not in SPLITS:
        raise ValueError(f"split {row.split!r} must be one of {list(SPLITS)}")
    if row.label not in (None, 0, 1):
        raise ValueError(f"label {row.label!r} must be 0 (negative), 1 (positive) or None")


def _resolve(value: str, base: Path) -> str:
    """A relative path made relative to ``base``; empty stays empty."""
    if not value:
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else base / path)


def _is_transcript_file(value: str) -> bool:
    return value.strip().lower().endswith(TRANSCRIPT_SUFFIX) and "\n" not in value


def read_manifest(path: Path | str) -> list[ManifestRow]:
    """Read and check a manifest CSV; relative paths are resolved against its folder.

    Raises :class:`ManifestError` naming the file and line for a missing column, an unknown
    label or split, a bad or repeated video id.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest {path} not found")
    base = path.resolve().parent
    rows: list[ManifestRow] = []
    first_line: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in REQUIRED_COLUMNS if name not in header]
        if missing:
            raise ManifestError(f"{path}: line 1 (header) lacks column(s) {missing}; a "
                                f"manifest needs {list(REQUIRED_COLUMNS)} (and may have "
                                f"{list(OPTIONAL_COLUMNS)})")
        reader.fieldnames = header
        for record in reader:
            line = reader.line_num
            if None in record:
                raise ManifestError(f"{path}: line {line} has more fields than the header")
            values = {name: (record.get(name) or "").strip() for name in COLUMNS}
            try:
                transcript = values["transcript"]
                if _is_transcript_file(transcript):
                    transcript = _resolve(transcript, base)
                row = ManifestRow(
                    video_id=values["video_id"], path=_resolve(values["path"], base),
                    label=parse_label(values["label"]), subject=values["subject"],
                    split=values["split"].lower(), transcript=transcript,
                    skeleton_dir=_resolve(values["skeleton_dir"], base),
                )
                check_row(row)
            except ValueError as error:
                raise ManifestError(f"{path}: line {line}: {error}") from None
            if row.video_id in first_line:
                raise ManifestError(f"{path}: line {line}: video_id {row.video_id!r} repeats "
                                    f"line {first_line[row.video_id]}")
            first_line[row.video_id] = line
            rows.append(row)
    return rows


def write_manifest(path: Path | str, rows: Iterable[ManifestRow]) -> Path:
    """Write ``rows`` as a manifest CSV (labels as ``negative``/``positive``), checking each."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in fields(ManifestRow)]
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for row in rows:
            check_row(row)
            record = asdict(row)
            record["label"] = "" if row.label is None else LABEL_NAMES[row.label]
            writer.writerow(record)
    tmp.replace(path)
    return path


def load_transcript(row: ManifestRow) -> str | None:
    """The row's transcript text: read from its ``.txt`` file, or the text itself; None if none.

    A named ``.txt`` file that does not exist raises FileNotFoundError (a typo in a path
    must not silently become the transcript "talk_12.txt").
    """
    value = row.transcript
    if not value.strip():
        return None
    if _is_transcript_file(value):
        file = Path(value)
        if not file.is_file():
            raise FileNotFoundError(f"transcript file {file} (video {row.video_id}) not found")
        return file.read_text(encoding="utf-8").strip() or None
    return value
