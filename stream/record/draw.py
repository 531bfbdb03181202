"""Drawing one recorded frame: persons, their labels, the transcript line, the time.

Each person gets a colour of its own (by track id): the box, the skeleton (when detect made
keypoints) and a tag ``#ID label p=0.73`` whose probability is p(positive). Tags are placed
above their box and moved down where they would cover another tag. The transcript line is
a subtitle at the bottom, wrapped to at most :data:`SUBTITLE_LINES` lines; a corner says the
stream and its media time, and ``RANDOM WEIGHTS`` in red when the predictions say an engine
had random weights. Text is drawn with OpenCV's Hershey fonts, so characters outside ASCII
are transliterated (``é`` -> ``e``) or left out.

Example:
    >>> image = np.zeros((240, 320, 3), np.uint8)
    >>> person = Person(track_id=3, score=0.9, box=(40.0, 40.0, 120.0, 200.0))
    >>> labels = {3: Tag("positive", 0.73)}
    >>> annotate(image, [person], None, labels, "hello", "demo0 00:01.0").shape
    (240, 320, 3)
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from engines.adapters.openpose_layout import BODY_25_EDGES, SKELETON_EDGES
from stream.transport.wire import Person

PALETTE = ((80, 175, 76), (243, 150, 33), (54, 67, 244), (0, 193, 255), (176, 39, 156),
           (136, 150, 0), (34, 87, 255), (212, 188, 0), (96, 125, 139), (99, 30, 233))
"""BGR colours, one per track id (modulo its length)."""
SUBTITLE_LINES = 3
MIN_CONFIDENCE = 0.1
"""A keypoint below this confidence is not drawn (nor its bones)."""
FONT = cv2.FONT_HERSHEY_SIMPLEX
RED = (40, 40, 230)


@dataclass(frozen=True)
class Tag:
    """What a person's tag says: the label and p(positive)."""

    label: str
    positive: float


def colour(track_id: int) -> tuple[int, int, int]:
    return PALETTE[track_id % len(PALETTE)]


def ascii_text(text: str) -> str:
    """``text`` in the characters a Hershey font has."""
    flat = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c if c.isprintable() else " " for c in flat)


def annotate(image: np.ndarray, persons: Sequence[Person], keypoints: np.ndarray | None,
             tags: Mapping[int, Tag], subtitle: str | None, caption: str,
             warning: str | None = None) -> np.ndarray:
    """A copy of ``image`` (BGR) with everything drawn on it."""
    out = np.ascontiguousarray(image).copy()
    width = out.shape[1]
    scale = max(0.4, min(1.2, width / 1100))
    thick = 1 if width < 800 else 2
    for person in persons:
        if keypoints is not None and person.keypoints >= 0:
            _skeleton(out, keypoints[person.keypoints], colour(person.track_id), thick)
    placed: list[tuple[int, int, int, int]] = []
    for person in persons:
        x0, y0, x1, y1 = (round(v) for v in person.box)
        cv2.rectangle(out, (x0, y0), (x1, y1), colour(person.track_id), thick + 1)
        tag = tags.get(person.track_id)
        text = f"#{person.track_id}" if tag is None else \
            f"#{person.track_id} {tag.label} p={tag.positive:.2f}"
        _tag(out, text, (x0, y0), colour(person.track_id), scale, placed)
    _label(out, ascii_text(caption), (4, 4), (30, 30, 30), scale)
    if warning:
        (w, _), _ = cv2.getTextSize(warning, FONT, scale, 1)
        _label(out, warning, (width - w - 12, 4), RED, scale)
    if subtitle:
        _subtitle(out, ascii_text(subtitle), scale, thick)
    return out


def _skeleton(out: np.ndarray, points: np.ndarray, bgr: tuple[int, int, int],
              thick: int) -> None:
    seen = points[:, 2] >= MIN_CONFIDENCE
    body = len(BODY_25_EDGES)
    for index, (a, b) in enumerate(SKELETON_EDGES):
        if seen[a] and seen[b]:
            pa = (int(points[a, 0]), int(points[a, 1]))
            pb = (int(points[b, 0]), int(points[b, 1]))
            cv2.line(out, pa, pb, bgr, thick + 1 if index < body else 1, cv2.LINE_AA)


def _tag(out: np.ndarray, text: str, corner: tuple[int, int], bgr: tuple[int, int, int],
         scale: float, placed: list[tuple[int, int, int, int]]) -> None:
    """``text`` on a filled tag whose bottom-left is at ``corner`` (above a box), moved
    down until it covers no tag already placed, kept inside the frame."""
    (w, h), base = cv2.getTextSize(text, FONT, scale, 1)
    tw, th = w + 8, h + base + 6
    height, width = out.shape[:2]
    x = min(max(0, corner[0]), max(0, width - tw))
    y = max(0, corner[1] - th)
    for _ in range(len(placed) + 1):
        hit = next((r for r in placed if x < r[2] and r[0] < x + tw and y < r[3]
                    and r[1] < y + th), None)
        if hit is None:
            break
        y = hit[3] + 1
    y = min(y, max(0, height - th))
    placed.append((x, y, x + tw, y + th))
    _label(out, text, (x, y), bgr, scale)


def _label(out: np.ndarray, text: str, corner: tuple[int, int], bgr: tuple[int, int, int],
           scale: float) -> None:
    (w, h), base = cv2.getTextSize(text, FONT, scale, 1)
    x, y = corner
    cv2.rectangle(out, (x, y), (x + w + 8, y + h + base + 6), bgr, cv2.FILLED)
    cv2.putText(out, text, (x + 4, y + h + 3), FONT, scale, (255, 255, 255), 1, cv2.LINE_AA)


def _subtitle(out: np.ndarray, text: str, scale: float, thick: int) -> None:
    height, width = out.shape[:2]
    lines = wrap(text, width - 24, scale)
    if len(lines) > SUBTITLE_LINES:
        lines = lines[:SUBTITLE_LINES]
        lines[-1] = lines[-1].rstrip(". ") + "..."
    (_, h), base = cv2.getTextSize("Ag", FONT, scale, 1)
    step = h + base + 6
    top = height - step * len(lines) - 10
    band = out[max(0, top - 4):height]
    band[:] = (band * 0.45).astype(np.uint8)  # a dark band under the words
    for i, line in enumerate(lines):
        (w, _), _ = cv2.getTextSize(line, FONT, scale, 1)
        at = ((width - w) // 2, top + i * step + h + 2)
        cv2.putText(out, line, at, FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)


def wrap(text: str, width: int, scale: float) -> list[str]:
    """``text`` in lines of at most ``width`` pixels (a word longer than that alone)."""
    lines: list[str] = []
    line = ""
    for word in text.split():
        candidate = f"{line} {word}" if line else word
        if line and cv2.getTextSize(candidate, FONT, scale, 1)[0][0] > width:
            lines.append(line)
            line = word
        else:
            line = candidate
    if line:
        lines.append(line)
    return lines
