"""Voice activity: where speech is in a stretch of audio (Silero VAD, shipped in faster-whisper).

Whisper transcribes silence into invented words and needs utterances, not an endless
stream; the VAD finds them. Silero's ONNX model comes inside the faster-whisper wheel (no
download) and runs on onnxruntime with one thread: about 16 ms of CPU per second of audio
here, a fifth of what tiny.en costs.

Example:
    >>> SileroVad()(audio_16k_mono)  # doctest: +SKIP
    [(12672, 81024)]
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from engines.adapters.transcriber import SAMPLE_RATE


class Vad(Protocol):
    """Speech spans of a 16 kHz mono float32 array, as (start, end) sample indices, in order."""

    def __call__(self, audio: np.ndarray) -> list[tuple[int, int]]: ...


class SileroVad:
    """faster-whisper's Silero VAD with live-friendly settings: an utterance ends after
    ``min_silence_s`` of silence (Whisper's own default, 2 s, would hold a line back), and
    each span is padded by ``pad_s`` so the first and last sounds are not clipped."""

    def __init__(self, *, threshold: float = 0.5, min_silence_s: float = 0.5,
                 pad_s: float = 0.2, min_speech_s: float = 0.25) -> None:
        from faster_whisper.vad import VadOptions

        self.options = VadOptions(threshold=threshold,
                                  min_silence_duration_ms=round(min_silence_s * 1000),
                                  speech_pad_ms=round(pad_s * 1000),
                                  min_speech_duration_ms=round(min_speech_s * 1000))

    def __call__(self, audio: np.ndarray) -> list[tuple[int, int]]:
        from faster_whisper.vad import get_speech_timestamps

        if len(audio) == 0:
            return []
        spans = get_speech_timestamps(np.ascontiguousarray(audio, np.float32), self.options,
                                      sampling_rate=SAMPLE_RATE)
        return [(int(span["start"]), int(span["end"])) for span in spans]
