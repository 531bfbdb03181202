"""Joining overlapping pieces' words (:mod:`stream.media.stitch`): a property test over
random word timelines, cuts and overlaps, where each piece hears the words inside it (with
rough times), and at its edges may miss a word or hear it garbled, and where both hear a
word whole either may hear it as another word, or near the cut (within a quarter of the
overlap) miss it. Every word must come out once (in either hearing), in order.

Words are drawn from a small vocabulary, so most repeat, but never within three words of
themselves: a word said twice in a row (under a second apart, within the times' matching
tolerance) where each piece missed a different one of them is ambiguous from the words
alone, and is not claimed."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.media.stitch import Stitcher, StitchState, Word, join_at_seam, pair_words

VOCABULARY = ["the", "a", "is", "furnished", "with", "dark", "wooden", "chairs", "and", "we"]
JITTER_S = 0.03
"""Timing error of a heard word's start and end (words are at least 0.2 s long)."""


@dataclass(frozen=True)
class Spoken:
    start: float
    end: float
    text: str


@st.composite
def timelines(draw: st.DrawFn) -> tuple[list[Spoken], list[float], float]:
    """Words said one after another (no pause needed), the seams, half the overlap."""
    words: list[Spoken] = []
    at = draw(st.floats(0.0, 1.0))
    for _ in range(draw(st.integers(1, 40))):
        at += draw(st.floats(0.0, 0.3))
        length = draw(st.floats(0.2, 0.6))
        recent = {word.text for word in words[-3:]}  # see the module: a word said twice
        text = draw(st.sampled_from([w for w in VOCABULARY if f" {w}" not in recent]))
        words.append(Spoken(at, at + length, f" {text}"))
        at += length
    half = draw(st.floats(0.6, 1.5))  # at least the longest word
    seams: list[float] = []
    edge = 0.0
    for _ in range(draw(st.integers(0, 6))):
        seam = edge + 2 * half + draw(st.floats(0.5, 6.0))
        if seam + 2 * half + 0.5 > at:
            break
        seams.append(seam)
        edge = seam
    return words, seams, half


def heard(draw: st.DrawFn, words: list[Spoken], low: float, high: float, missed: set[int],
          other: set[int], tag: str) -> list[Word]:
    """One piece's hearing of the words said in [low, high], in lines (Whisper's
    segments) of one or more words. A line's first word may be timed from the word before
    it, or the piece's start, as Whisper does (over words it dropped, too)."""
    out = []
    line = 0
    stretch = draw(st.booleans())
    for index, word in enumerate(words):
        if word.end <= low or word.start >= high or index in missed:
            continue
        start = max(low, word.start + draw(st.floats(-JITTER_S, JITTER_S)))
        end = min(high, word.end + draw(st.floats(-JITTER_S, JITTER_S)))
        text = word.text + ("q" if index in other else "")  # heard as another word
        if word.start < low or word.end > high:  # cut in half at the piece's edge
            fate = draw(st.sampled_from(["missed", "garbled", "heard"]))
            if fate == "missed":
                continue
            if fate == "garbled":
                text = f" zq{tag}{index}"
        new_line = not out or draw(st.booleans())
        line += new_line
        if stretch and new_line:  # timed from the word before, or the piece's start
            start = out[-1].end if out else low
        out.append(Word(start, max(start, end), text, line=int(tag) * 1000 + line,
                        first=new_line))
    return out


@settings(max_examples=150, deadline=None)
@given(timeline=timelines(), data=st.data())
def test_every_word_comes_out_once_in_order_whatever_the_cuts(
        timeline: tuple[list[Spoken], list[float], float], data: st.DataObject) -> None:
    words, seams, half = timeline
    edges = [0.0, *seams, words[-1].end + 1.0]
    # near each seam, either piece may miss a word that both hold whole (not both), or
    # hear it as another word; anywhere, a piece may hear a whole word as another
    missed: list[set[int]] = [set() for _ in range(len(edges) - 1)]
    other: list[set[int]] = [set() for _ in range(len(edges) - 1)]
    for k, seam in enumerate(seams):
        for index, word in enumerate(words):
            # where the stitcher places it, safely inside the zone whatever the jitter
            near = abs(word.end - 0.1 - seam) < half / 2 - 2 * JITTER_S
            inside_both = word.start >= seam - half and word.end <= seam + half
            fate = data.draw(st.sampled_from(["heard", "missed", "other"]), label="fate")
            if inside_both and fate == "other":
                other[k + data.draw(st.integers(0, 1), label="which")].add(index)
            elif near and inside_both and fate == "missed":
                missed[k + data.draw(st.integers(0, 1), label="which")].add(index)
    restart = data.draw(st.integers(0, len(edges) - 1), label="restart before piece")
    stitcher = Stitcher(half_s=half)
    out: list[Word] = []
    for k in range(len(edges) - 1):
        if k == restart:  # a restarted ASR goes on from the saved state
            saved = StitchState.model_validate_json(stitcher.state().model_dump_json())
            stitcher = Stitcher(half_s=half)
            stitcher.restore(saved)
        low = edges[k] - (half if k else 0.0)
        high = edges[k + 1] + (half if k + 1 < len(edges) - 1 else 0.0)
        piece = heard(data.draw, words, low, high, missed[k], other[k], str(k))
        out += stitcher.take(piece, seam_before=seams[k - 1] if k else None,
                             seam_after=seams[k] if k < len(seams) else None)
    out += stitcher.finish()
    assert [w.text.removesuffix("q") for w in out] == [w.text for w in words]
    assert [w.at for w in out] == sorted(w.at for w in out)


def test_pairs_are_one_word_heard_twice_in_time_order() -> None:
    a = [Word(0.0, 0.3, " the"), Word(0.3, 0.6, " the"), Word(0.6, 0.9, " cat")]
    b = [Word(0.32, 0.58, " The"), Word(0.62, 0.88, " cat.")]
    assert pair_words(a, b) == [(1, 0), (2, 1)]  # the nearer "the"
    assert pair_words(a, [Word(5.0, 5.3, " cat")]) == []  # too far apart to be one word


def test_a_garbled_half_word_at_an_edge_is_not_kept_and_a_dropped_one_is() -> None:
    before = [Word(9.0, 9.4, " is"), Word(9.4, 9.9, " furnished"), Word(10.4, 10.5, " wi")]
    after = [Word(9.0, 9.4, " is"), Word(9.4, 9.9, " furnished"), Word(9.9, 10.3, " with"),
             Word(10.3, 10.6, " dark")]
    kept_before, kept_after = join_at_seam(before, after, seam=9.6, half_s=1.2)
    assert [w.text for w in kept_before] == [" is"]
    assert [w.text for w in kept_after] == [" furnished", " with", " dark"]
    # the later piece missed "with": the earlier piece's counts although past the seam
    kept_before, kept_after = join_at_seam([*before[:2], Word(9.8, 10.1, " with")],
                                           after[:2] + after[3:], seam=9.6, half_s=1.2)
    joined = sorted(kept_before + kept_after, key=lambda w: w.at)
    assert [w.text for w in joined] == [" is", " furnished", " with", " dark"]
