"""A finished run's outputs, read and validated: what ``hidemo run --out DIR`` keeps.

``predictions.jsonl`` (each line a :class:`~stream.prediction.Prediction`), ``frames.jsonl``
(:class:`~stream.prediction.FrameTrace`), ``summary.json``, ``config.json`` and the ASR's
``transcript-STREAM.jsonl``. A run that was killed may lack its summary, and a line may be
cut short by a full disk: what cannot be read is counted and said on the page
(``problems``), never fatal; a folder with neither predictions nor a summary is not a run's
and is refused with the command that makes one.

Example:
    >>> outputs = read_outputs(Path("runs/demo"))  # doctest: +SKIP
    >>> sorted(outputs.persons())  # doctest: +SKIP
    [('demo0', 0), ('demo0', 1)]
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from stream.config import SourceConfig
from stream.prediction import FrameTrace, Prediction

Model = TypeVar("Model", bound=BaseModel)


class TranscriptLine(BaseModel):
    """One line of ``transcript-STREAM.jsonl``: the words and their span on the source's
    media clock (the clock the predictions' windows are on)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    stream: str
    text: str
    media_start: float
    media_end: float


@dataclass
class RunOutputs:
    """Everything read from one run folder."""

    folder: Path
    predictions: list[Prediction] = field(default_factory=list)
    frames: list[FrameTrace] = field(default_factory=list)
    transcripts: dict[str, list[TranscriptLine]] = field(default_factory=dict)
    summary: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    def streams(self) -> list[str]:
        """Every stream the run had (configuration order), then any other seen."""
        seen = self._configured_streams()
        for stream in (self.summary or {}).get("streams", {}):
            if stream not in seen:
                seen.append(stream)
        for record in [*self.predictions, *self.frames]:
            if record.stream not in seen:
                seen.append(record.stream)
        for stream in self.transcripts:
            if stream not in seen:
                seen.append(stream)
        return seen

    def _configured_streams(self) -> list[str]:
        """The stream ids of the saved configuration (as :meth:`RunConfig.stream_ids`
        names them); none when it cannot be read."""
        try:
            sources = [SourceConfig.model_validate(s)
                       for s in (self.config or {}).get("sources") or []]
        except (ValidationError, TypeError):
            return []
        return [s.id or f"{s.kind}{i}" for i, s in enumerate(sources)]

    def persons(self) -> dict[tuple[str, int], list[Prediction]]:
        """Each (stream, person) with its predictions in window order."""
        out: dict[tuple[str, int], list[Prediction]] = {}
        for record in self.predictions:
            out.setdefault((record.stream, record.person), []).append(record)
        for records in out.values():
            records.sort(key=lambda r: (r.window.end, r.seq))
        return out

    def random_engines(self) -> list[str]:
        """Engines with random weights, by the summary's engine identities and by the
        predictions' own ``random_engines``."""
        names = {e.get("engine", "?") for e in (self.summary or {}).get("engines", [])
                 if str(e.get("random_weights", "")).lower() == "true"}
        for record in self.predictions:
            if record.random_weights:
                names.update(record.random_engines)
        return sorted(names)


def read_outputs(folder: Path) -> RunOutputs:
    """The outputs in ``folder``, or FileNotFoundError naming what is missing."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (give the --out folder of a "
                                f"`hidemo run`)")
    has = {name: (folder / name).is_file() for name in
           ("predictions.jsonl", "summary.json", "config.json", "frames.jsonl")}
    if not has["predictions.jsonl"] and not has["summary.json"]:
        raise FileNotFoundError(f"{folder} holds neither predictions.jsonl nor summary.json: "
                                f"it is not the output of a run (make one with `hidemo run "
                                f"--source ... --out {folder}`)")
    outputs = RunOutputs(folder)
    outputs.predictions = _jsonl(folder / "predictions.jsonl", Prediction, outputs.problems)
    outputs.frames = _jsonl(folder / "frames.jsonl", FrameTrace, outputs.problems)
    for path in sorted(folder.glob("transcript-*.jsonl")):
        lines = _jsonl(path, TranscriptLine, outputs.problems)
        for line in lines:
            outputs.transcripts.setdefault(line.stream, []).append(line)
    for lines in outputs.transcripts.values():
        lines.sort(key=lambda line: line.media_start)
    outputs.summary = _json(folder / "summary.json", outputs.problems,
                            "the run did not finish (killed?), so there is no verdict, "
                            "latency or drop summary")
    outputs.config = _json(folder / "config.json", outputs.problems,
                           "the run's configuration is unknown")
    return outputs


def _jsonl(path: Path, model: type[Model], problems: list[str]) -> list[Model]:
    if not path.is_file():
        problems.append(f"{path.name} is missing")
        return []
    records, bad = [], 0
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            if not line.strip():
                continue
            try:
                records.append(model.model_validate_json(line))
            except ValidationError:
                bad += 1
    if bad:
        problems.append(f"{path.name}: {bad} line(s) could not be read and were left out")
    return records


def _json(path: Path, problems: list[str], meaning: str) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{path.name} is missing: {meaning}")
        return None
    except (OSError, ValueError) as error:
        problems.append(f"{path.name} could not be read ({error}): {meaning}")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path.name} does not hold an object: {meaning}")
        return None
    return data
