"""Reader for OpenPose 1.3 JSON keypoint files (one file per frame), as iMiGUE ships them.

Each file looks like ``{"version": 1.3, "people": [{"pose_keypoints_2d": [75 floats],
"face_keypoints_2d": [210], "hand_left_keypoints_2d": [63], "hand_right_keypoints_2d": [63],
...}]}`` with flat x, y, confidence triplets in pixel coordinates. Every person becomes one
(137, 3) float32 array in the layout of :mod:`engines.adapters.openpose_layout`.

An array that is absent or empty (OpenPose writes ``[]`` when face or hands were disabled)
gives zeros, i.e. missing points. Anything else that does not fit the format raises a
``ValueError`` naming the file, because silently padding a truncated list would shift every
later keypoint into the wrong slot.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from engines.adapters.openpose_layout import (
    BODY,
    DTYPE,
    FACE,
    LEFT_HAND,
    NUM_CHANNELS,
    RIGHT_HAND,
    empty_keypoints,
)

logger = logging.getLogger(__name__)

PART_KEYS: tuple[tuple[str, slice], ...] = (
    ("pose_keypoints_2d", BODY),
    ("face_keypoints_2d", FACE),
    ("hand_left_keypoints_2d", LEFT_HAND),
    ("hand_right_keypoints_2d", RIGHT_HAND),
)
"""JSON key -> rows of the (137, 3) array it fills."""

FRAME_NUMBER = re.compile(r"(\d+)_keypoints\.json$")
"""File names end in ``<frame>_keypoints.json`` (e.g. ``298_000000005000_keypoints.json``)."""

MIN_CONFIDENCE = 0.05
"""Points below this confidence do not count when measuring or matching a person."""

TRACK_RADIUS = 0.5
"""A person counts as the previous frame's person if their body centres are closer than
this fraction of the previous person's body size."""


def parse_person(person: Mapping[str, Any], source: str = "<person>") -> np.ndarray:
    """Convert one entry of ``people`` into a (137, 3) float32 array.

    ``source`` names the input in error messages (file name and person index).
    """
    if not isinstance(person, Mapping):
        raise ValueError(f"{source}: a person must be a JSON object, got {type(person).__name__}")
    keypoints = empty_keypoints()
    for key, rows in PART_KEYS:
        values = person.get(key)
        if values is None or (isinstance(values, list) and len(values) == 0):
            continue  # part not estimated: stays missing
        expected = (rows.stop - rows.start) * NUM_CHANNELS
        if not isinstance(values, list) or len(values) != expected:
            found = len(values) if isinstance(values, list) else type(values).__name__
            raise ValueError(
                f"{source}: {key!r} has {found} values; expected {expected} "
                f"({expected // NUM_CHANNELS} points x (x, y, confidence)) or an empty list"
            )
        try:
            part = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {key!r} holds non-numeric values ({error})") from None
        if not np.all(np.isfinite(part)):
            raise ValueError(f"{source}: {key!r} holds NaN or infinite values")
        keypoints[rows] = part.reshape(-1, NUM_CHANNELS).astype(DTYPE)
    return keypoints


def parse_frame(data: Any, source: str = "<frame>") -> list[np.ndarray]:
    """Convert a decoded OpenPose frame (the JSON object) into one array per person."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{source}: top level must be a JSON object with a 'people' list")
    people = data.get("people")
    if not isinstance(people, list):
        raise ValueError(
            f"{source}: 'people' is {type(people).__name__ if people is not None else 'missing'}"
            "; expected a list (OpenPose 1.3 format)"
        )
    return [parse_person(person, f"{source}: people[{i}]") for i, person in enumerate(people)]


def read_frame(path: str | Path) -> list[np.ndarray]:
    """Read one OpenPose JSON file; return a (137, 3) float32 array per person (maybe none)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ValueError(f"{path}: cannot read the OpenPose file ({error})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from None
    return parse_frame(data, str(path))


def _confident_body(keypoints: np.ndarray) -> np.ndarray:
    body = keypoints[BODY]
    return body[body[:, 2] >= MIN_CONFIDENCE]


def body_centre_and_size(keypoints: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Centre (x, y) and size (bounding-box diagonal, pixels) of the confident body points.

    Returns None when fewer than two body points are confident.
    """
    points = _confident_body(keypoints)
    if len(points) < 2:
        return None
    low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    return (low + high) / 2.0, float(math.hypot(*(high - low)))


def person_score(keypoints: np.ndarray) -> float:
    """How likely a person is the main subject: summed body confidence times body size.

    Confidence favours a fully visible person; size favours the one nearest the camera
    (a press-conference speaker over people in the background).
    """
    points = _confident_body(keypoints)
    measured = body_centre_and_size(keypoints)
    if measured is None:
        return float(points[:, 2].sum())
    return float(points[:, 2].sum()) * max(measured[1], 1.0)


def main_person(people: Sequence[np.ndarray], previous: np.ndarray | None = None) -> np.ndarray:
    """Choose the main person of a frame.

    With ``previous`` (last frame's choice), the person whose body centre is within
    ``TRACK_RADIUS`` body sizes of it wins, so that the choice does not flicker between two
    similar people; otherwise the highest :func:`person_score` wins. No people gives an
    all-zero (137, 3) array.
    """
    if len(people) == 0:
        return empty_keypoints()
    if len(people) == 1:
        return people[0]
    if previous is not None:
        anchor = body_centre_and_size(previous)
        if anchor is not None:
            centre, size = anchor
            best_distance, best = math.inf, None
            for person in people:
                measured = body_centre_and_size(person)
                if measured is None:
                    continue
                distance = float(np.linalg.norm(measured[0] - centre))
                if distance < best_distance:
                    best_distance, best = distance, person
            if best is not None and best_distance <= TRACK_RADIUS * max(size, 1.0):
                return best
    return max(people, key=person_score)


def frame_number(path: str | Path) -> int:
    """Frame number from a file name like ``298_000000005000_keypoints.json`` (-> 5000)."""
    match = FRAME_NUMBER.search(Path(path).name)
    if match is None:
        raise ValueError(
            f"{path}: file name does not end in '<frame number>_keypoints.json', "
            "so its frame number is unknown"
        )
    return int(match.group(1))


def _sorted_frames(files: Iterable[Path]) -> list[tuple[int, Path]]:
    numbered = sorted((frame_number(path), path) for path in files)
    for (number, first), (next_number, second) in pairwise(numbered):
        if number == next_number:
            raise ValueError(f"{first} and {second} have the same frame number {number}")
    return numbered


def read_sequence(folder: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read every ``*_keypoints.json`` in ``folder`` as one person's track.

    Returns ``(keypoints, frame_indices)``: a (T, 137, 3) float32 array of the main person
    per frame (chosen with :func:`main_person`, following the previous frame's choice) and
    the (T,) int64 frame numbers parsed from the file names, in ascending order. Frames
    with nobody give all-zero rows; gaps in the numbering are kept as they are (the frame
    numbers say where they are).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a folder of OpenPose JSON files")
    frames = _sorted_frames(folder.glob("*_keypoints.json"))
    if not frames:
        raise ValueError(f"{folder}: no '*_keypoints.json' files found")
    sequence = np.zeros((len(frames), *empty_keypoints().shape), dtype=DTYPE)
    previous: np.ndarray | None = None
    empty = crowded = 0
    for t, (_, path) in enumerate(frames):
        people = read_frame(path)
        empty += len(people) == 0
        crowded += len(people) > 1
        chosen = main_person(people, previous)
        sequence[t] = chosen
        if body_centre_and_size(chosen) is not None:
            previous = chosen
    logger.debug(
        "%s: %d frames, %d without a person, %d with several", folder, len(frames), empty, crowded
    )
    indices = np.array([number for number, _ in frames], dtype=np.int64)
    return sequence, indices
