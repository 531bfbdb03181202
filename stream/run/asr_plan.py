"""Which sources get an ASR process (``asr.mode``), and why: decided before any stage starts.

``auto``: each source whose audio opens and has an audio stream (:mod:`stream.media.audio`),
when faster-whisper and the model are installed; a source without audio gets none, and a
missing model is a one-line warning (the run goes on without transcripts). ``on``: the
same, but a missing model, or no source with audio, stops the run before it starts
(:class:`~stream.run.preflight.PreflightError`, exit 2) with the fix. ``off``: none. The
choice per source and its reason are printed and saved in ``config.json``
(``reasons.asr``, ``asr.streams``).

Example:
    >>> config, plan = resolve_asr(config)  # doctest: +SKIP
    >>> plan.reason  # doctest: +SKIP
    'file0: on (audio aac 44100 Hz 2 ch; tiny.en, 1 thread)'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from engines.adapters.transcriber import (
    PACKAGED_NAME,
    TranscriberUnavailable,
    model_problem,
    packaged_model_path,
)
from stream.config import RunConfig, SourceConfig
from stream.media.audio import AudioInput, AudioProbe, audio_input, probe_audio
from stream.run.preflight import PreflightError, Problem

NO_AUDIO = {"demo": "the demo clip has no audio",
            "camera": "a camera index has no audio; name a microphone with the source's "
                      "audio: FORMAT:DEVICE (e.g. alsa:default)"}


@dataclass(frozen=True)
class AsrChoice:
    """One source's decision: ``on`` (an ASR process) or not, and why."""

    stream: str
    index: int
    on: bool
    reason: str

    def __str__(self) -> str:
        return f"{self.stream}: {'on' if self.on else 'none'} ({self.reason})"


@dataclass(frozen=True)
class AsrPlan:
    """Every source's :class:`AsrChoice`, and a ``warning`` when ``auto`` found audio but
    no usable model."""

    choices: list[AsrChoice] = field(default_factory=list)
    warning: str | None = None

    @property
    def streams(self) -> list[int]:
        return [choice.index for choice in self.choices if choice.on]

    @property
    def reason(self) -> str:
        return "; ".join(str(choice) for choice in self.choices) or "no source"


Prober = Callable[[AudioInput], AudioProbe]


def resolve_asr(config: RunConfig, probe: Prober = probe_audio) -> tuple[RunConfig, AsrPlan]:
    """``config`` with ``asr.streams`` and ``reasons.asr`` resolved, and the plan; raises
    :class:`PreflightError` where ``asr.mode: on`` (or a given ``asr.model_path``) cannot
    be honoured."""
    asr = config.asr
    ids = config.stream_ids()
    if asr.mode == "off":
        plan = AsrPlan([AsrChoice(s, i, False, "asr off") for i, s in enumerate(ids)])
        return _resolved(config, plan), plan
    explicit = asr.mode == "on"
    audio = [_audio(source, probe) for source in config.sources]
    problems = [Problem(f"asr {ids[i]} ({config.sources[i].spec})", why)
                for i, (has, why) in enumerate(audio) if not has]
    if explicit and len(problems) == len(audio):  # asked for transcripts: none is possible
        raise PreflightError(problems)
    path, model_error = _model(config.asr.model_path)
    if model_error is not None and any(has for has, _ in audio):
        if explicit or config.asr.model_path is not None:
            raise PreflightError([Problem("asr model", model_error)])
        plan = AsrPlan([AsrChoice(s, i, False, "no speech model" if has else why)
                        for i, (s, (has, why)) in enumerate(zip(ids, audio, strict=True))],
                       warning=f"no live transcripts: {model_error}")
        return _resolved(config, plan), plan
    model = f"{path.name if config.asr.model_path else PACKAGED_NAME}, {asr.threads} thread(s)"
    plan = AsrPlan([AsrChoice(s, i, has, f"{why}; {model}" if has else why)
                    for i, (s, (has, why)) in enumerate(zip(ids, audio, strict=True))])
    return _resolved(config, plan), plan


def _audio(source: SourceConfig, probe: Prober) -> tuple[bool, str]:
    """Whether ``source`` has audio to transcribe, and what (or why not)."""
    try:
        input = audio_input(source)
    except ValueError as error:
        return False, str(error)
    if input is None:
        return False, NO_AUDIO.get(source.kind, "no audio")
    found = probe(input)
    if found.problem is not None:
        return False, f"audio {found.problem}"
    if found.stream is None:
        return False, "no audio track"
    return True, f"audio {found.stream}"


def _model(given: Path | None) -> tuple[Path, str | None]:
    if given is not None:
        return given, model_problem(given)
    try:
        path = packaged_model_path()
    except TranscriberUnavailable as error:
        return Path(), str(error)
    return path, model_problem(path)


def _resolved(config: RunConfig, plan: AsrPlan) -> RunConfig:
    return config.model_copy(update={
        "asr": config.asr.model_copy(update={"streams": plan.streams}),
        "reasons": config.reasons.model_copy(update={"asr": plan.reason})})
