"""Cut a stream of audio into utterances as it arrives, so a long file never waits for its end.

Whisper wants whole utterances (a sentence cut in two is misheard at both ends) and no
silence (it invents words for it). :class:`SpeechSegmenter` keeps the audio since the last
cut; every ``step_s`` seconds of new audio it asks the VAD where speech is, hands out each
utterance that has ended (followed by ``min_silence_s`` of silence) and drops what it has
handed out or found silent. Memory and the VAD's work stay bounded: nothing older than the
current utterance is kept, and an utterance that runs past ``max_utterance_s`` (Whisper's
window is 30 s) is cut there.

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


@dataclass(frozen=True)
class Speech:
    """One utterance: the media time of its first sample, and its 16 kHz mono samples."""

    start: float
    samples: np.ndarray

    @property
    def end(self) -> float:
        return self.start + len(self.samples) / SAMPLE_RATE


class SpeechSegmenter:
    """Utterances out of consecutive :class:`~stream.media.audio.AudioBlock` s (see the module)."""

    def __init__(self, vad: Vad, *, step_s: float = 2.0, min_silence_s: float = 0.5,
                 max_utterance_s: float = 20.0) -> None:
        self.vad = vad
        self.step = max(1, round(step_s * SAMPLE_RATE))
        self.guard = round(min_silence_s * SAMPLE_RATE)
        self.limit = round(max_utterance_s * SAMPLE_RATE)
        self._parts: list[np.ndarray] = []
        self._length = 0
        self._start = 0.0
        self._new = 0
        self.passes = 0
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
        self._length += len(block.samples)
        self._new += len(block.samples)
        if self._new >= self.step or self._length >= self.limit:
            out += self._pass(final=False)
        return out

    def flush(self) -> list[Speech]:
        """The end of the audio: every utterance still held, ended or not."""
        out = self._pass(final=True) if self._length else []
        self._parts, self._length, self._new = [], 0, 0
        return out

    def _pass(self, *, final: bool) -> list[Speech]:
        audio = np.concatenate(self._parts) if len(self._parts) > 1 else self._parts[0]
        self._new = 0
        self.passes += 1
        self.vad_seconds += len(audio) / SAMPLE_RATE
        spans = [(max(0, s), min(len(audio), e)) for s, e in self.vad(audio) if e > s]
        n = len(audio)
        full = final or n >= self.limit
        closed = [span for span in spans if full or span[1] <= n - self.guard]
        out = [Speech(self._start + s / SAMPLE_RATE, audio[s:e]) for s, e in closed]
        if full:
            cut = n
        elif closed:
            cut = closed[-1][1]
        elif spans:  # speech still going on: keep it from its start
            cut = spans[0][0]
        else:
            cut = max(0, n - round(KEEP_SILENCE_S * SAMPLE_RATE))
        rest = audio[cut:]
        self._parts = [rest] if len(rest) else []
        self._length = len(rest)
        self._start += cut / SAMPLE_RATE
        return out


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
