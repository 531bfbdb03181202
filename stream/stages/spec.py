"""What each stage process of a run is given: :class:`StageSpec`.

The run writes one spec file to its private folder before any stage starts; every stage
process (``python -m stream.stages.main STAGE INDEX SPEC``) reads it back, validated, so a
stage never runs on a half-read or hand-edited settings file.

Example:
    >>> StageSpec.read(path).config.profile  # doctest: +SKIP
    'edge'
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from stream.config import RunConfig
from stream.transport.endpoints import Endpoints


class StageSpec(BaseModel):
    """The resolved run every stage process builds itself from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    config: RunConfig
    """The run's configuration, with ``auto`` choices (keypoints, placement) resolved."""
    endpoints: Endpoints
    """Every address of the run, and its internal CURVE keys."""
    out: Path | None = None
    """The run's output folder (predictions, frames and transcripts); None: none kept."""
    state_dir: Path | None = None
    """The run's private folder: state a restarted stage resumes from."""

    def text(self) -> str:
        """The spec file's content (JSON; a non-finite number written as null)."""
        return self.model_dump_json()

    @classmethod
    def read(cls, path: Path) -> StageSpec:
        return cls.model_validate_json(path.read_bytes())
