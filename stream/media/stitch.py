"""Join the words of two overlapping pieces of speech so that none is lost or doubled.

Speech without a pause is cut at a *seam* (:mod:`stream.media.speech`): the earlier piece
runs on half the overlap past it and the later one starts as much before it. Each piece
is transcribed on its own, so the words near the seam are heard twice, and a word at a
piece's very edge may be cut in half there: misheard, or missing.

A word is placed just before its end (Whisper's word ends are steadier than its starts,
which it often stretches back over the silence or speech before). Then:

- a word heard in both pieces (the same or a similar spelling once case and punctuation
  are dropped, the two hearings within :data:`MATCH_S` of each other) counts once: on the
  earlier side when the earlier piece places it before the seam, else on the later side;
- two pieces' different words for one stretch of speech (between the same two words both
  heard, each placed inside the other: a word heard two ways) count on one side only, as
  a word heard in both;
- a word heard in one piece only counts on its piece's side of the seam (the earlier
  piece's before it, the later piece's after it), and on the far side near the seam
  (within half of half the overlap): a word one piece dropped there is kept from the
  other.

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
from difflib import SequenceMatcher

from pydantic import BaseModel, ConfigDict, Field

from stream.config import WORD_MATCH_S

MATCH_S = WORD_MATCH_S
"""Two pieces' hearings of one word overlap in time, or leave at most this between them
(their starts are rough)."""
SAME_SEAM_S = 1e-6
SIMILAR = 0.6
"""Two spellings this alike (difflib's ratio) may be one word heard two ways
("except", "accept")."""
AT_END_S = 0.1
"""A word is placed this long before its end (inside its :attr:`Word.core`)."""
LONG_WORD_S = 0.8
"""A word said in more than this is taken to be timed too early: its last this much
counts."""
FIRST_WORD_S = 0.4
"""The same for the first word of a line, whose start is the least sure."""


@dataclass(frozen=True)
class Word:
    """One word on the media clock; ``text`` as Whisper spells it (with its leading space),
    ``line`` the transcript line it belongs to."""

    start: float
    end: float
    text: str
    line: int = 0
    first: bool = False
    """The first word of its line: Whisper often times it from the end of the speech
    before, or from the start of the audio."""

    @property
    def core(self) -> float:
        """Where the word is sure to start: its start, but no earlier than
        :data:`LONG_WORD_S` before its end (:data:`FIRST_WORD_S` for a line's first word)."""
        return max(self.start, self.end - (FIRST_WORD_S if self.first else LONG_WORD_S))

    @property
    def at(self) -> float:
        """The moment the word is placed at: just before its end (Whisper's ends are
        steadier than its starts), inside its core."""
        return max(self.core, self.end - AT_END_S)

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
    alignment in time order of words placed within ``match_s`` of each other and spelled
    alike, with the most pairs (one of equal spelling worth two of similar spelling), and
    of those the closest in time."""
    rows, cols = len(before), len(after)
    # score[i][j]: (worth, -distance) of the best alignment of before[i:] and after[j:]
    score = [[(0, 0.0)] * (cols + 1) for _ in range(rows + 1)]
    for i in range(rows - 1, -1, -1):
        for j in range(cols - 1, -1, -1):
            best = max(score[i + 1][j], score[i][j + 1])
            match = _match(before[i], after[j], match_s)
            if match is not None:
                worth, distance = score[i + 1][j + 1]
                best = max(best, (worth + match[0], distance - match[1]))
            score[i][j] = best
    out, i, j = [], 0, 0
    while i < rows and j < cols:
        match = _match(before[i], after[j], match_s)
        worth, distance = score[i + 1][j + 1]
        if match is not None and score[i][j] == (worth + match[0], distance - match[1]):
            out.append((i, j))
            i, j = i + 1, j + 1
        elif score[i][j] == score[i + 1][j]:
            i += 1
        else:
            j += 1
    return out


def _match(a: Word, b: Word, match_s: float) -> tuple[int, float] | None:
    """Whether two words can be one word heard twice (None: not): its worth (2: the same
    spelling, 1: a similar one, as Whisper hears one word two ways) and how far apart they
    are (the gap between their spans, which a hearing's rough times do not widen, then
    their places)."""
    if not a.key or not b.key:
        return None
    if a.key == b.key:
        worth = 2
    elif SequenceMatcher(None, a.key, b.key).ratio() >= SIMILAR:
        worth = 1
    else:
        return None
    gap = _apart_s(a, b)
    return None if gap > match_s else (worth, gap + abs(a.at - b.at) / 1000)


def join_at_seam(before: Sequence[Word], after: Sequence[Word], seam: float, half_s: float,
                 match_s: float = MATCH_S) -> tuple[list[Word], list[Word]]:
    """Both pieces' words around ``seam`` (the pieces overlap by ``half_s`` on each side of
    it) -> (the earlier piece's that count, the later piece's that count), by the rules of
    the module. ``before`` need only hold the earlier piece's words from a little before
    the later piece's start."""
    pairs = pair_words(before, after, match_s)
    keep_before = [False] * len(before)
    keep_after = [False] * len(after)
    for i, j in pairs:
        if before[i].at < seam:
            keep_before[i] = True
        else:
            keep_after[j] = True
    near = half_s / 2
    for group_before, group_after in _rivals(before, after, pairs):
        if group_before and group_after:  # one stretch heard as different words: one side
            earlier = sum(before[i].at for i in group_before) / len(group_before) < seam
            for i in group_before:
                keep_before[i] = earlier
            for j in group_after:
                keep_after[j] = not earlier
            continue
        for i in group_before:  # heard by one piece only: its side, or near the seam
            keep_before[i] = before[i].at < seam or before[i].at - seam < near
        for j in group_after:
            keep_after[j] = after[j].at >= seam or seam - after[j].at < near
    return ([w for w, keep in zip(before, keep_before, strict=True) if keep],
            [w for w, keep in zip(after, keep_after, strict=True) if keep])


def _rivals(before: Sequence[Word], after: Sequence[Word],
            pairs: list[tuple[int, int]]) -> list[tuple[list[int], list[int]]]:
    """The words neither piece shares, grouped: between the same two shared words, those
    of one piece with those of the other placed inside them (indices into ``before``, into
    ``after``; one side may be empty)."""
    gap_before = _gaps(len(before), [i for i, _ in pairs])
    gap_after = _gaps(len(after), [j for _, j in pairs])
    paired_before = {i for i, _ in pairs}
    paired_after = {j for _, j in pairs}
    nodes = [("b", i) for i in range(len(before)) if i not in paired_before]
    nodes += [("a", j) for j in range(len(after)) if j not in paired_after]
    root = {node: node for node in nodes}

    def find(node: tuple[str, int]) -> tuple[str, int]:
        while root[node] != node:
            node = root[node]
        return node

    for i in (i for kind, i in nodes if kind == "b"):
        for j in (j for kind, j in nodes if kind == "a"):
            if gap_before[i] == gap_after[j] and _in_place(before[i], after[j]):
                root[find(("b", i))] = find(("a", j))
    groups: dict[tuple[str, int], tuple[list[int], list[int]]] = {}
    for kind, index in nodes:
        group = groups.setdefault(find((kind, index)), ([], []))
        group[0 if kind == "b" else 1].append(index)
    return list(groups.values())


def _gaps(count: int, shared: list[int]) -> list[int]:
    """For each word, which stretch between shared words it is in (the shared before it)."""
    out, seen, shared_set = [], 0, set(shared)
    for index in range(count):
        out.append(seen)
        seen += index in shared_set
    return out


def _in_place(a: Word, b: Word) -> bool:
    """Whether two words are two hearings of one stretch of speech: each is placed inside
    the other."""
    return a.core <= b.at <= a.end and b.core <= a.at <= b.end


def _apart_s(a: Word, b: Word) -> float:
    return max(0.0, a.core - b.end, b.core - a.end)


class StitchState(BaseModel):
    """What a :class:`Stitcher` holds between two pieces (kept across a restart)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seam: float | None = None
    tail: list[tuple[float, float, str, int, bool]] = Field(default_factory=list)


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
            out = sorted(held + out, key=lambda w: w.at)
        else:  # no piece continues the one before: what it held counts
            out = self.finish() + out
        self.seam, self.tail = None, []
        if seam_after is not None:
            self.seam = seam_after
            self.tail = [w for w in out if w.at >= seam_after - self.reach_s]
            out = [w for w in out if w.at < seam_after - self.reach_s]
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
                           tail=[(w.start, w.end, w.text, w.line, w.first)
                                 for w in self.tail])

    def restore(self, state: StitchState) -> None:
        self.seam = state.seam
        self.tail = [Word(*item) for item in state.tail]
