"""Join the words of two overlapping pieces of speech so that none is lost or doubled.

Speech without a pause is cut at a *seam* (:mod:`stream.media.speech`): the earlier piece
runs on half the overlap past it and the later one starts as much before it. Each piece
is transcribed on its own, so the words near the seam are heard twice, and a word at a
piece's very edge may be cut in half there: misheard, or missing. The rules:

- a word heard in both pieces (same spelling once case and punctuation are dropped, its
  middle within :data:`MATCH_S` in both) counts once: on the earlier side when the earlier
  piece puts its middle before the seam, else on the later side;
- a word heard in one piece only counts on its piece's side of the seam (the earlier
  piece's before it, the later piece's after it), where that piece is furthest from its
  edge. On the far side it counts only near the seam (within half of half the overlap)
  when the other piece heard nothing at that moment (no word of it spans the word's
  middle): a word one piece dropped there is kept from the other, and a half-word
  misheard at a piece's edge never counts.

:class:`Stitcher` applies them as the pieces come, one after the other: a piece's words
up to a little before its seam go out at once, the rest wait for the next piece, so the
words go out in time order. A transcript line is the words of one Whisper segment that go
out together, so the segment cut by a seam is two lines.

Example:
    >>> a = [Word(8.0, 8.5, " Come", line=1), Word(10.5, 11.0, " The", line=2),
    ...      Word(11.0, 11.3, " room", 2), Word(11.3, 11.9, " is", 2), Word(11.9, 12.0, " fur", 2)]
    >>> b = [Word(10.6, 11.0, " The", 7), Word(11.0, 11.3, " room", 7),
    ...      Word(11.35, 11.9, " is", 7), Word(11.9, 12.4, " furnished", 7)]
    >>> stitcher = Stitcher(half_s=0.8)
    >>> [w.text for w in stitcher.take(a, seam_after=11.5)]
    [' Come']
    >>> [w.text for w in stitcher.take(b, seam_before=11.5)]
    [' The', ' room', ' is', ' furnished']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from stream.config import WORD_MATCH_S

MATCH_S = WORD_MATCH_S
"""Two pieces' times of one word differ by less than this (Whisper's word times are
rough, most at a segment's first word)."""
SAME_SEAM_S = 1e-6


@dataclass(frozen=True)
class Word:
    """One word on the media clock; ``text`` as Whisper spells it (with its leading space),
    ``line`` the transcript line it belongs to."""

    start: float
    end: float
    text: str
    line: int = 0

    @property
    def middle(self) -> float:
        return (self.start + self.end) / 2

    @property
    def key(self) -> str:
        return normal(self.text)


def normal(text: str) -> str:
    """``text`` lower-cased, letters, digits and apostrophes only: how two hearings of one
    word are compared."""
    return "".join(c for c in text.lower() if c.isalnum() or c == "'")


def pair_words(before: Sequence[Word], after: Sequence[Word],
               match_s: float = MATCH_S) -> list[tuple[int, int]]:
    """The pairs (i, j) of ``before[i]`` and ``after[j]`` that are one word heard twice: an
    alignment in time order with the most pairs of equal spelling and middles within
    ``match_s``, and of those the closest in time."""
    rows, cols = len(before), len(after)
    # score[i][j]: (pairs, -distance) of the best alignment of before[i:] and after[j:]
    score = [[(0, 0.0)] * (cols + 1) for _ in range(rows + 1)]
    for i in range(rows - 1, -1, -1):
        for j in range(cols - 1, -1, -1):
            best = max(score[i + 1][j], score[i][j + 1])
            gap = abs(before[i].middle - after[j].middle)
            if gap <= match_s and before[i].key and before[i].key == after[j].key:
                pairs, distance = score[i + 1][j + 1]
                best = max(best, (pairs + 1, distance - gap))
            score[i][j] = best
    out, i, j = [], 0, 0
    while i < rows and j < cols:
        gap = abs(before[i].middle - after[j].middle)
        pairs, distance = score[i + 1][j + 1]
        if (gap <= match_s and before[i].key and before[i].key == after[j].key
                and score[i][j] == (pairs + 1, distance - gap)):
            out.append((i, j))
            i, j = i + 1, j + 1
        elif score[i][j] == score[i + 1][j]:
            i += 1
        else:
            j += 1
    return out


def join_at_seam(before: Sequence[Word], after: Sequence[Word], seam: float, half_s: float,
                 match_s: float = MATCH_S) -> tuple[list[Word], list[Word]]:
    """Both pieces' words around ``seam`` (the pieces overlap by ``half_s`` on each side of
    it) -> (the earlier piece's that count, the later piece's that count), by the rules of
    the module. ``before`` need only hold the earlier piece's words from a little before
    the later piece's start."""
    pairs = pair_words(before, after, match_s)
    paired_after = {j: i for i, j in pairs}
    paired_before = {i for i, _ in pairs}
    near = half_s / 2

    def alone(word: Word, other: Sequence[Word]) -> bool:
        return abs(word.middle - seam) < near and not _heard(other, word.middle)

    kept_before = [word for i, word in enumerate(before)
                   if word.middle < seam or (i not in paired_before and alone(word, after))]
    kept_after = [word for j, word in enumerate(after)
                  if (before[paired_after[j]].middle >= seam if j in paired_after
                      else word.middle >= seam or alone(word, before))]
    return kept_before, kept_after


def _heard(words: Sequence[Word], moment: float) -> bool:
    return any(word.start <= moment <= word.end for word in words)


class StitchState(BaseModel):
    """What a :class:`Stitcher` holds between two pieces (kept across a restart)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seam: float | None = None
    tail: list[tuple[float, float, str, int]] = Field(default_factory=list)


class Stitcher:
    """Joins consecutive pieces' words as they come (see the module).

    :meth:`take` is given each piece's words in time order, with the seam it continues
    and the seam it was cut at, and returns the words that count and can go out now: those
    ``reach_s`` or more before its own seam. The rest wait as the tail until the next
    piece (a word never waits longer than that piece takes), and :meth:`finish` lets them
    out when no piece continues the seam (the end of the audio).
    """

    def __init__(self, half_s: float, match_s: float = MATCH_S) -> None:
        self.half_s = half_s
        """Half the overlap: how far each piece runs past the seam."""
        self.match_s = match_s
        self.reach_s = half_s + 2 * match_s
        """How far before its seam a piece's words wait for the next piece: the next
        piece's words reach back that far, and the words go out in time order."""
        self.seam: float | None = None
        self.tail: list[Word] = []

    def take(self, words: Sequence[Word], *, seam_before: float | None = None,
             seam_after: float | None = None) -> list[Word]:
        """The words of one piece (media time, in order) that count and go out now."""
        out = list(words)
        if seam_before is not None and self._continues(seam_before):
            held, out = join_at_seam(self.tail, out, seam_before, self.half_s, self.match_s)
            out = sorted(held + out, key=lambda w: w.middle)
        else:  # no piece continues the one before: what it held counts
            out = self.finish() + out
        self.seam, self.tail = None, []
        if seam_after is not None:
            self.seam = seam_after
            self.tail = [w for w in out if w.middle >= seam_after - self.reach_s]
            out = [w for w in out if w.middle < seam_after - self.reach_s]
        return out

    def finish(self) -> list[Word]:
        """The waiting words, when nothing continues the last seam."""
        tail = self.tail
        self.seam, self.tail = None, []
        return tail

    def _continues(self, seam: float) -> bool:
        return self.seam is not None and abs(self.seam - seam) <= SAME_SEAM_S

    def state(self) -> StitchState:
        return StitchState(seam=self.seam,
                           tail=[(w.start, w.end, w.text, w.line) for w in self.tail])

    def restore(self, state: StitchState) -> None:
        self.seam = state.seam
        self.tail = [Word(*item) for item in state.tail]
