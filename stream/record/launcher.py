"""Starts the recorder's process beside the pipeline and keeps it up, apart from it.

The recorder is not a stage (:class:`stream.side_process.SideProcess`):
:class:`RecorderProcess` starts ``python -m stream.record.process SPEC PART`` and restarts
it with backoff when it dies, at most ``max_restarts`` times. A restarted recorder cannot
append to a file its predecessor never closed: part ``N`` writes ``NAME.partN.mp4``. Its
log goes to ``recorder.log`` beside the stages' logs; each part leaves its figures in
``record-stats-PART.json`` in the run's private folder, which
:meth:`RecorderProcess.report` gathers for ``summary.json``.

Example:
    >>> record_paths(Path("talk.mp4"), ["file0"])
    {'file0': PosixPath('talk.mp4')}
    >>> record_paths(Path("talk.mp4"), ["cam0", "cam1"], part=1)["cam1"]
    PosixPath('talk.cam1.part1.mp4')
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from stream.config import EndpointConfig
from stream.side_process import SideProcess
from stream.strictjson import JsonDict
from stream.transport.endpoints import Endpoints

STOP_TIMEOUT_S = 20.0
"""How long a stopping recorder may take to draw and encode the frames it holds and close
its files before it is killed (which leaves them unplayable)."""


class RecorderSpec(BaseModel):
    """What the recorder process needs (written by ``hidemo run``): the file, the streams,
    what to subscribe to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path
    streams: list[str]
    fps: float = Field(gt=0)
    """The video's frame rate: ``record.fps``, else the run's analysis rate."""
    codec: str
    delay_s: float = Field(ge=0)
    endpoints: Endpoints
    endpoint_config: EndpointConfig
    stats_dir: Path
    publishers: int = Field(1, ge=1)
    """How many processes publish record frames (fused placement: one per worker, each on
    its own endpoint, :meth:`stream.transport.endpoints.Endpoints.for_worker`)."""


def check_record(path: Path, codec: str) -> str:
    """The encoder ``record.codec`` resolves to, once the folder of ``path`` is made and
    writable; else ValueError naming the path and the fix (``hidemo`` exits 2 before
    anything starts)."""
    from stream.record.writer import choose_codec

    folder = path.resolve().parent
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--record {path}: {folder} is a file, not a folder; choose another "
                         f"path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"--record {path}: cannot make {folder} ({error.strerror or error}); "
                         f"choose another path") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--record {path}: {folder} is not writable; choose another path")
    return choose_codec(codec)


def stats_path(stats_dir: Path, part: int) -> Path:
    return stats_dir / f"record-stats-{part}.json"


def record_paths(path: Path, streams: Sequence[str], part: int = 0) -> dict[str, Path]:
    """Each stream's file: ``path`` itself for one stream, else ``NAME.STREAM.mp4``;
    ``.partN`` before the suffix for part ``N`` > 0 (a restarted recorder)."""
    out = {}
    for stream in streams:
        name = path.stem
        if len(streams) > 1:
            name += "." + re.sub(r"[^A-Za-z0-9._-]", "_", stream)
        if part:
            name += f".part{part}"
        out[stream] = path.with_name(name + path.suffix)
    return out


class RecorderProcess(SideProcess):
    """The recorder process, restarted (as a new part) when it dies, stopped with the run."""

    def __init__(self, spec_path: Path, spec: RecorderSpec, log_path: Path,
                 max_restarts: int = 2) -> None:
        super().__init__("the recorder", log_path, max_restarts=max_restarts,
                         stop_timeout_s=STOP_TIMEOUT_S)
        self.spec_path = spec_path
        self.spec = spec
        self.part = 0

    def command(self) -> list[str]:
        return [sys.executable, "-m", "stream.record.process", str(self.spec_path),
                str(self.part)]

    def restart_note(self) -> str:
        return f" as part {self.part + 1}"

    def before_restart(self) -> None:
        self.part += 1

    def killed_consequence(self) -> str:
        return "its last file is not playable"

    def report(self) -> JsonDict:
        """The recorder's part of ``summary.json``: per stream the files written, frames
        written, received and dropped on the way (over every part); the predictions and
        transcript lines it took, the messages it refused (``topic:reason``); restarts,
        exit codes, the log."""
        streams: JsonDict = {s: {"files": [], "frames": 0, "received": 0, "dropped": 0,
                                 "seconds": 0.0} for s in self.spec.streams}
        missing = []
        codec = None
        taken = {"predictions": 0, "transcript_lines": 0}
        rejected: dict[str, int] = {}
        for part in range(self.part + 1):
            try:
                stats = json.loads(stats_path(self.spec.stats_dir, part).read_text())
            except (OSError, ValueError):
                missing.append(part)
                continue
            for key in taken:
                taken[key] += int(stats.get(key, 0))
            for reason, count in stats.get("rejected", {}).items():
                rejected[reason] = rejected.get(reason, 0) + int(count)
            for stream, figures in stats.get("streams", {}).items():
                if stream not in streams:
                    continue
                mine = streams[stream]
                if figures.get("path"):
                    mine["files"].append(figures["path"])
                for key in ("frames", "received", "dropped"):
                    mine[key] += int(figures.get(key, 0))
                mine["seconds"] = round(mine["seconds"] + float(figures.get("seconds", 0.0)), 3)
                codec = figures.get("codec") or codec
        if missing:
            self.warn(f"the recorder left no figures for part(s) {missing}: its file(s) may "
                       f"be unplayable (log: {self.log_path})")
        return {"path": str(self.spec.path), "codec": codec, "fps": self.spec.fps,
                "streams": streams, **taken, "rejected": rejected, "restarts": self.restarts,
                "exit_codes": list(self.exit_codes), "log": str(self.log_path),
                "warnings": list(self.warnings)}
