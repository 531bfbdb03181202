"""Cut a stream of audio into utterances as it arrives, so a long file never waits for its end.

Whisper wants whole utterances (a sentence cut in two is misheard at both ends) and no
silence (it invents words for it). :class:`SpeechSegmenter` keeps the audio since the last
cut; every ``step_s`` seconds of new audio it asks the VAD where speech is, hands out each
utterance that has ended (followed by ``min_silence_s`` of silence) and drops what it has
handed out or found silent. Memory and the VAD's work stay bounded: nothing older than the
current utterance is kept.

Speech that runs on past ``max_utterance_s`` (Whisper's window is 30 s) without such a
pause is cut: at the quietest moment of its last few seconds (the *seam*; short-time
energy, so most often between two words), and the two pieces overlap by ``overlap_s``,
half on each side of the seam. A word on the seam is then whole in both pieces, and
:mod:`stream.media.stitch` keeps it once by the words' times. Each piece says where it
was cut (``seam_after``) and where it continues a cut (``seam_before``).

Example:
    >>> segmenter = SpeechSegmenter(SileroVad())  # doctest: +SKIP
    >>> for block in reader.blocks():  # doctest: +SKIP
    ...     for speech in segmenter.feed(block): transcribe(speech.samples)
    >>> segmenter.flush()  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.adapters.transcriber import SAMPLE_RATE
from engines.adapters.vad import Vad
from stream.media.audio import GAP_S, AudioBlock

KEEP_SILENCE_S = 0.5
"""Silence kept at the end of the buffer when no speech was found: a word starting right
at the edge is then whole at the next pass."""


CUT_SEARCH_S = 3.0
"""A forced cut falls at the quietest moment of this many seconds before the limit."""
QUIET_FRAME_S = 0.01
QUIET_SMOOTH = 5
"""Frames the energy is averaged over (50 ms): a dip between two words, not one quiet
sample inside a vowel."""


@dataclass(frozen=True)
class Speech:
    """One utterance: the media time of its first sample, and its 16 kHz mono samples.
    ``seam_after``: the media time where speech going on was cut (the next piece takes
    over there; this one runs on past it by half the overlap); ``seam_before``: the seam
    this piece continues (it starts half the overlap before it)."""

    start: float
    samples: np.ndarray
    seam_before: float | None = None
    seam_after: float | None = None

    @property
    def end(self) -> float:
        return self.start + len(self.samples) / SAMPLE_RATE


class SpeechSegmenter:
    """Utterances out of consecutive :class:`~stream.media.audio.AudioBlock` s (see the module)."""

    def __init__(self, vad: Vad, *, step_s: float = 2.0, min_silence_s: float = 0.5,
                 max_utterance_s: float = 20.0, overlap_s: float = 2.0) -> None:
        if overlap_s < 0 or 4 * overlap_s > max_utterance_s:
            raise ValueError(f"overlap_s ({overlap_s:g}) must be between 0 and a quarter of "
                             f"max_utterance_s ({max_utterance_s:g})")
        self.vad = vad
        self.step = max(1, round(step_s * SAMPLE_RATE))
        self.guard = round(min_silence_s * SAMPLE_RATE)
        self.limit = round(max_utterance_s * SAMPLE_RATE)
        self.half = round(overlap_s * SAMPLE_RATE / 2)
        self._parts: list[np.ndarray] = []
        self._length = 0
        self._start = 0.0
        self._new = 0
        self._block = 0
        """The latest block's length: the next one is taken to be as long."""
        self._seam: float | None = None
        """The seam the buffer's first sample continues (it starts ``half`` before it)."""
        self.passes = 0
        self.forced_cuts = 0
        self.vad_seconds = 0.0
        """Audio seconds the VAD looked at in all: about the audio's length, not a multiple."""

    @property
    def buffered_s(self) -> float:
        return self._length / SAMPLE_RATE

    def feed(self, block: AudioBlock) -> list[Speech]:
        """Take ``block``; the utterances that ended (possibly none)."""
        out: list[Speech] = []
        if self._length and abs(block.start - (self._start + self.buffered_s)) > GAP_S:
            out += self.flush()  # a gap in the audio ends whatever was being said
        if not self._length:
            self._start = block.start
        self._parts.append(np.asarray(block.samples, np.float32))
        self._block = len(block.samples)
        self._length += self._block
        self._new += self._block
        if self._new >= self.step or self._length + self._block > self.limit:
            out += self._pass(final=False)  # (before the next block overfills it)
        return out

    def flush(self) -> list[Speech]:
        """The end of the audio: every utterance still held, ended or not."""
        out = self._pass(final=True) if self._length else []
        self._parts, self._length, self._new, self._seam = [], 0, 0, None
        return out

    def _pass(self, *, final: bool) -> list[Speech]:
        audio = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        self._new = 0
        self.passes += 1
        self.vad_seconds += len(audio) / SAMPLE_RATE
        n = len(audio)
        spans = self._continued([(max(0, s), min(n, e)) for s, e in self.vad(audio) if e > s],
                                n)
        closed = [span for span in spans if final or span[1] <= n - self.guard]
        out = [self._speech(audio, s, e) for s, e in closed]
        forced = None
        if not final and len(closed) < len(spans):
            start = spans[len(closed)][0]
            if n - start + self._block > self.limit:  # the next block would overfill it
                forced = start, self._quietest(audio, start, min(n, start + self.limit))
        if forced is not None:  # speech going on too long: cut it, overlapping the next
            start, seam = forced
            seam_time = self._start + seam / SAMPLE_RATE
            out.append(self._speech(audio, start, seam + self.half, seam_after=seam_time))
            self.forced_cuts += 1
            cut = seam - self.half
        elif final:
            cut = n
        elif closed:
            cut = closed[-1][1]
        elif spans:  # speech still going on: keep it from its start
            cut = spans[0][0]
        else:
            cut = max(0, n - round(KEEP_SILENCE_S * SAMPLE_RATE))
        if cut > 0:  # the first sample is gone: it no longer continues a seam
            self._seam = None
        if forced is not None:
            self._seam = seam_time
        rest = audio[cut:]
        self._parts = [rest] if len(rest) else []
        self._length = len(rest)
        self._start += cut / SAMPLE_RATE
        return out

    def _continued(self, spans: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
        """After a forced cut the buffer starts half the overlap before the seam: its first
        span starts there and reaches at least the end of the piece before (which ran on
        half the overlap past the seam), however the VAD heard the seam's quiet moment.
        Speech the VAD heard starting before that end (after a short pause) joins the
        first span: two pieces may overlap only at a seam, where the stitcher expects it."""
        if self._seam is None:
            return spans
        reach = min(n, 2 * self.half)
        if spans and spans[0][0] <= reach + self.guard:
            first, rest = (0, max(spans[0][1], reach)), spans[1:]
        elif reach:
            first, rest = (0, reach), spans
        else:
            return spans
        while rest and rest[0][0] <= first[1]:
            first, rest = (0, max(first[1], rest[0][1])), rest[1:]
        return [first, *rest]

    def _speech(self, audio: np.ndarray, start: int, end: int, *,
                seam_after: float | None = None) -> Speech:
        return Speech(self._start + start / SAMPLE_RATE, audio[start:end],
                      seam_before=self._seam if start == 0 else None, seam_after=seam_after)

    def _quietest(self, audio: np.ndarray, start: int, end: int) -> int:
        """The seam of speech running from ``start`` to ``end`` (samples): the quietest
        moment (lowest short-time energy; the latest of equals) of its last
        :data:`CUT_SEARCH_S`, leaving half the overlap after it for the piece's end, the
        piece at least half its length before it, and the buffer room for the next block."""
        high = end - self.half
        room = len(audio) + self._block + self.half - self.limit
        low = max(high - round(CUT_SEARCH_S * SAMPLE_RATE), start + (high - start) // 2, room)
        return quietest(audio, min(low, high), high)


def quietest(audio: np.ndarray, low: int, high: int) -> int:
    """The sample index in [low, high] at the centre of the quietest :data:`QUIET_FRAME_S`
    frame, energy averaged over :data:`QUIET_SMOOTH` frames; the latest of equals."""
    frame = max(1, round(QUIET_FRAME_S * SAMPLE_RATE))
    count = (high - low) // frame
    if count <= 0:
        return high
    frames = np.asarray(audio[low:low + count * frame], np.float64).reshape(count, frame)
    raw = (frames ** 2).mean(axis=1)
    width = min(QUIET_SMOOTH, count)
    padded = np.pad(raw, (width // 2, (width - 1) // 2), mode="edge")
    smooth = np.convolve(padded, np.ones(width) / width, mode="valid")  # one per frame
    scale = max(float(smooth.max()), 1e-12)  # equal up to rounding: the quieter frame wins
    order = np.lexsort((-np.arange(count), raw, np.round(smooth / scale, 6)))
    return low + int(order[0]) * frame + frame // 2


JOIN_GAP_S = 0.2
"""Silence put between joined utterances, so Whisper hears where one ends."""


class JoinedSpeech:
    """Several utterances joined into one stretch for one Whisper call, and the way back
    from a time in that stretch to media time.

    Whisper encodes a fixed 30 s window whatever it is given, so each call costs about the
    same (tiny.en, one thread: 0.9 s of CPU for 4 s of speech, 1.1 s for 9 s): a file's
    utterances are transcribed a few at a time (``asr.batch_s``), not one by one.
    """

    def __init__(self, pieces: list[Speech], gap_s: float = JOIN_GAP_S) -> None:
        if not pieces:
            raise ValueError("nothing to join")
        gap = np.zeros(round(gap_s * SAMPLE_RATE), np.float32)
        parts: list[np.ndarray] = []
        self.pieces = pieces
        self.offsets: list[float] = []
        at = 0
        for index, piece in enumerate(pieces):
            if index:
                parts.append(gap)
                at += len(gap)
            self.offsets.append(at / SAMPLE_RATE)
            parts.append(piece.samples)
            at += len(piece.samples)
        self.samples = np.concatenate(parts) if len(parts) > 1 else parts[0]

    def piece_at(self, t: float) -> int:
        """The index of the piece ``t`` seconds into the joined stretch falls in (or in
        the gap after)."""
        return max((i for i, offset in enumerate(self.offsets) if offset <= t), default=0)

    def media_time(self, t: float, *, end: bool = False) -> float:
        """The media time of ``t`` seconds into the joined stretch (inside the gap after a
        piece: that piece's end, or with ``end`` False the next piece's start)."""
        index = 0
        for i, offset in enumerate(self.offsets):
            if offset < t or (offset <= t and not end):
                index = i
        piece = self.pieces[index]
        into = t - self.offsets[index]
        length = piece.end - piece.start
        if into > length and not end and index + 1 < len(self.pieces):
            return self.pieces[index + 1].start
        return piece.start + min(max(0.0, into), length)
