"""A video whose audio track speaks known sentences at known times (espeak-ng + ffmpeg).

Not a test module: the ASR tests and ``scripts/measure_asr.py`` share it. The speech is
synthetic (espeak-ng's formant voice), which Whisper hears worse than a person: a word
error rate measured on it is an upper bound for clear speech, not a promise.
"""

from __future__ import annotations

import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.media.demo import write_demo_video

SPEECH_RATE = 16_000
"""What the ASR reads: 16 kHz mono."""

SENTENCES = (
    "I am happy with how I played today.",
    "The match was hard but we won in the end.",
    "My serve felt strong and my legs were fresh.",
    "I want to thank the crowd for their support.",
)


@dataclass(frozen=True)
class Spoken:
    """One sentence of the track: its words and where they are (seconds from the start)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class SpeechVideo:
    path: Path
    spoken: list[Spoken]
    seconds: float


def missing_tools() -> str | None:
    """Why a speech video cannot be made here (None: it can)."""
    missing = [tool for tool in ("espeak-ng", "ffmpeg") if shutil.which(tool) is None]
    if missing:
        return (f"{' and '.join(missing)} not installed (Debian: apt-get install espeak-ng "
                "ffmpeg; .ci/run installs them)")
    return None


def speak(text: str, path: Path, *, words_per_minute: int | None = None
          ) -> tuple[np.ndarray, int]:
    """espeak-ng's rendering of ``text``: int16 samples and their rate."""
    speed = [] if words_per_minute is None else ["-s", str(words_per_minute)]
    subprocess.run(["espeak-ng", *speed, "-w", str(path), text], check=True,
                   capture_output=True)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        samples = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
    return samples, rate


def make_speech_video(folder: Path, sentences: tuple[str, ...] = SENTENCES, *,
                      lead_s: float = 1.0, gap_s: float = 2.0, tail_s: float = 2.0,
                      fps: float = 10.0, size: tuple[int, int] = (320, 240),
                      audio_codec: str = "aac", name: str = "talk.mkv",
                      silence_after: tuple[int, float] | None = None) -> SpeechVideo:
    """The demo clip with ``sentences`` spoken one after another (``gap_s`` of silence
    between them; ``silence_after`` (i, s): s seconds after sentence i instead), muxed
    into Matroska with ``audio_codec`` (aac, pcm_s16le, ...)."""
    folder.mkdir(parents=True, exist_ok=True)
    parts: list[np.ndarray] = []
    spoken: list[Spoken] = []
    rate = 22050
    at = 0.0
    for index, text in enumerate(sentences):
        samples, rate = speak(text, folder / f"s{index}.wav")
        pause = lead_s if index == 0 else gap_s
        if silence_after is not None and index == silence_after[0] + 1:
            pause = silence_after[1]
        silence = np.zeros(round(pause * rate), np.int16)
        parts += [silence, samples]
        at += len(silence) / rate
        spoken.append(Spoken(text, at, at + len(samples) / rate))
        at += len(samples) / rate
    parts.append(np.zeros(round(tail_s * rate), np.int16))
    seconds = at + tail_s
    audio = folder / "speech.wav"
    with wave.open(str(audio), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.concatenate(parts).tobytes())
    video = write_demo_video(folder / "video.avi", seconds, fps=fps, width=size[0],
                             height=size[1])
    out = folder / name
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(video),
                    "-i", str(audio), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                    "-c:a", audio_codec, str(out)], check=True, capture_output=True)
    return SpeechVideo(out, spoken, seconds)


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words) between two texts, case and punctuation ignored: the
    numerator and denominator of the word error rate."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1,
                                           previous + (word != other))
    return row[-1], len(ref)


def _words(text: str) -> list[str]:
    return "".join(c.lower() if c.isalnum() or c in " '" else " " for c in text).split()


CONTINUOUS = (
    "The old house on the hill is furnished with dark wooden chairs",
    "children walk along the river to reach the school near the bridge",
    "I want to thank the crowd for their support",
    "we planted tomatoes and beans in the garden last spring",
    "please close the window when you leave the room",
    "she bought a new bicycle for her long ride to work",
    "the library is open every day except sunday",
    "my sister plays the piano while our father reads the newspaper",
)
"""Sentences Whisper tiny.en hears well from espeak-ng at 140 words a minute, one by one."""


def continuous_speech(folder: Path, sentences: tuple[str, ...] = CONTINUOUS, *,
                      margin_s: float = 0.5) -> tuple[Path, np.ndarray]:
    """``sentences`` spoken without a pause between them (each one's own leading and
    trailing silence cut off), ``margin_s`` of silence before and after: a 16 kHz mono WAV
    and its float32 samples."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = [np.zeros(round(margin_s * SPEECH_RATE), np.float32)]
    for index, text in enumerate(sentences):
        samples, rate = speak(text, folder / f"c{index}.wav", words_per_minute=140)
        sound = samples.astype(np.float32) / 32768
        loud = np.flatnonzero(np.abs(sound) > 0.01)
        sound = sound[loud[0]:loud[-1] + 1]
        count = round(len(sound) * SPEECH_RATE / rate)
        parts.append(np.interp(np.arange(count) * rate / SPEECH_RATE, np.arange(len(sound)),
                               sound).astype(np.float32))
    parts.append(parts[0])
    audio = np.concatenate(parts)
    path = folder / "continuous.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SPEECH_RATE)
        wav.writeframes((audio * 32767).astype(np.int16).tobytes())
    return path, audio


def words_of(text: str) -> list[str]:
    """Lower-cased words without punctuation: how transcripts are compared."""
    return _words(text)
