"""A source's audio through PyAV (FFmpeg): found, probed, decoded to 16 kHz mono blocks.

Where the audio is (:func:`audio_input`): a video file's or stream URL's own audio track,
or, for any source, a capture device named in the source's ``audio`` field as
``FORMAT:DEVICE`` (an FFmpeg input format and its device: ``alsa:default``,
``pulse:default``, ``avfoundation::0``, ``dshow:audio=Microphone``); the demo clip and a bare
camera index have none. :func:`probe_audio` opens the input once and says whether it has
an audio stream (and what), or what is wrong. :class:`AudioReader` decodes it to the blocks
the speech segmenter takes.

Media time: a file's audio is timed like its frames, seconds from the start of the video
track (the capture numbers frames from 0 there), so a word lands beside the frame it was
said over. A live input's blocks are timed from its first sample; the ASR stage anchors
that to the monotonic clock the frames are stamped with.

Example:
    >>> reader = AudioReader(AudioInput("talk.mp4", live=False))  # doctest: +SKIP
    >>> for block in reader.blocks(): ...  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from engines.adapters.transcriber import SAMPLE_RATE
from stream.config import SourceConfig

if TYPE_CHECKING:
    from av.audio.stream import AudioStream
    from av.container import InputContainer

log = logging.getLogger(__name__)

GAP_S = 0.5
"""A jump in the audio's timestamps larger than this starts a new run of blocks."""
MAX_BAD_PACKETS = 200
"""Consecutive undecodable packets after which the audio is given up as corrupt."""


@dataclass(frozen=True)
class AudioInput:
    """Where one source's audio is read: ``target`` (a path, URL or device name), the FFmpeg
    input ``format`` for a device (None: guessed from the target), whether it is ``live``
    (timed on arrival, never ends by itself) and the timeouts of a network or device open."""

    target: str
    live: bool
    format: str | None = None
    timeout_s: tuple[float, float] | None = None

    def describe(self) -> str:
        return f"{self.format}:{self.target}" if self.format else self.target


def audio_input(source: SourceConfig) -> AudioInput | None:
    """The audio a source carries or names; None for the demo and a camera with no
    ``audio`` device named."""
    timeouts = (source.open_timeout_s, source.read_timeout_s)
    if source.audio:
        fmt, sep, device = source.audio.partition(":")
        if not sep or not fmt or not device:
            raise ValueError(f"source {source.spec}: audio {source.audio!r} is not FORMAT:DEVICE "
                             "(e.g. alsa:default, pulse:default, avfoundation::0)")
        return AudioInput(device, live=True, format=fmt, timeout_s=timeouts)
    if source.kind == "file":
        return AudioInput(source.spec, live=False)
    if source.kind == "url":
        return AudioInput(source.spec, live=True, timeout_s=timeouts)
    return None


@dataclass(frozen=True)
class AudioProbe:
    """What opening an input once found: ``stream`` describes its first audio stream (codec,
    rate, channels) or is None; ``problem`` says why it could not be read (None: it could)."""

    input: AudioInput
    stream: str | None = None
    problem: str | None = None

    @property
    def has_audio(self) -> bool:
        return self.stream is not None and self.problem is None


def _open(input: AudioInput) -> InputContainer:
    import av

    return av.open(input.target, format=input.format, timeout=input.timeout_s)


def probe_audio(input: AudioInput) -> AudioProbe:
    """Open ``input`` and look for an audio stream; never raises for a bad input."""
    import av

    try:
        container = _open(input)
    except (av.FFmpegError, OSError, ValueError) as error:
        return AudioProbe(input, problem=f"cannot be opened for audio ({error})")
    try:
        if not container.streams.audio:
            return AudioProbe(input)
        stream = container.streams.audio[0]
        codec = stream.codec_context
        channels = getattr(codec, "channels", 0) or 0
        return AudioProbe(input, f"{codec.name} {codec.sample_rate} Hz {channels} ch")
    finally:
        container.close()


@dataclass(frozen=True)
class AudioBlock:
    """Consecutive samples (16 kHz mono float32) and the media time of the first one."""

    start: float
    samples: np.ndarray

    @property
    def end(self) -> float:
        return self.start + len(self.samples) / SAMPLE_RATE


@dataclass
class DecodeFigures:
    """What decoding met: blocks out, packets that could not be decoded (dropped), runs
    (a new one after a gap in the timestamps)."""

    blocks: int = 0
    seconds: float = 0.0
    bad_packets: int = 0
    runs: int = 0


class AudioCorrupt(RuntimeError):
    """The audio could not be decoded (too many bad packets in a row, or no stream)."""


class AudioReader:
    """Decodes an input's first audio stream to :class:`AudioBlock` s of about ``block_s``.

    A packet that fails to decode is dropped and counted (a glitch in a long file must not
    end its transcript); :data:`MAX_BAD_PACKETS` in a row raise :class:`AudioCorrupt`.
    """

    def __init__(self, input: AudioInput, block_s: float = 0.5) -> None:
        self.input = input
        self.block_samples = max(1, round(block_s * SAMPLE_RATE))
        self.figures = DecodeFigures()

    def blocks(self) -> Iterator[AudioBlock]:
        import av

        try:
            container = _open(self.input)
        except (av.FFmpegError, OSError, ValueError) as error:
            raise AudioCorrupt(f"cannot be opened for audio ({error})") from error
        try:
            if not container.streams.audio:
                raise AudioCorrupt("has no audio stream")
            stream = container.streams.audio[0]
            origin = 0.0 if self.input.live else _video_origin(container)
            yield from self._decode(container, stream, origin)
        finally:
            container.close()

    def _decode(self, container: InputContainer, stream: AudioStream,
                origin: float) -> Iterator[AudioBlock]:
        import av

        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        pending: list[np.ndarray] = []
        pending_n = 0
        run_start: float | None = None  # media time of the first pending sample
        bad_in_row = 0
        first: float | None = None
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except (av.FFmpegError, ValueError) as error:
                bad_in_row += 1
                self.figures.bad_packets += 1
                if bad_in_row >= MAX_BAD_PACKETS:
                    raise AudioCorrupt(f"{bad_in_row} audio packets in a row could not be "
                                       f"decoded ({error})") from error
                continue
            bad_in_row = 0
            for frame in frames:
                when = frame.time
                if when is not None:
                    first = when if first is None else first
                    when -= first if self.input.live else origin
                if when is not None and run_start is not None and \
                        abs(when - (run_start + pending_n / SAMPLE_RATE)) > GAP_S:
                    if pending_n:  # a jump in the timestamps: what came before ends here
                        yield self._block(run_start, pending)
                    pending, pending_n, run_start = [], 0, None
                if run_start is None:
                    run_start = max(0.0, when or 0.0)
                    self.figures.runs += 1
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
                    pending.append(samples)
                    pending_n += len(samples)
                while pending_n >= self.block_samples:
                    block, pending, pending_n = _take(pending, self.block_samples)
                    yield self._block(run_start, [block])
                    run_start += len(block) / SAMPLE_RATE
        for out in resampler.resample(None):
            pending.append(out.to_ndarray().reshape(-1).astype(np.float32, copy=False))
        if pending and sum(len(p) for p in pending):
            yield self._block(run_start or 0.0, pending)

    def _block(self, start: float, parts: list[np.ndarray]) -> AudioBlock:
        samples = np.concatenate(parts) if len(parts) > 1 else parts[0]
        self.figures.blocks += 1
        self.figures.seconds += len(samples) / SAMPLE_RATE
        return AudioBlock(start, samples)


def _take(parts: list[np.ndarray], n: int) -> tuple[np.ndarray, list[np.ndarray], int]:
    """The first ``n`` samples of ``parts`` and what is left (with its length)."""
    joined = np.concatenate(parts)
    rest = joined[n:]
    return joined[:n], ([rest] if len(rest) else []), len(rest)


def _video_origin(container: InputContainer) -> float:
    """Seconds at which the video track starts (frame 0 of the capture); 0 without one."""
    if not container.streams.video:
        return 0.0
    video = container.streams.video[0]
    if video.start_time is None or video.time_base is None:
        return 0.0
    return float(video.start_time * video.time_base)
