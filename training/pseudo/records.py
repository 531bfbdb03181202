"""The typed records every part of pseudo-labelling shares: what a teacher is shown, what
it must answer, what a labelling call cost, and the key that makes a call happen once.

The verdict a VLM returns is strict JSON ``{label, confidence, reasoning}``; anything else
is invalid output (retried, then recorded as failed), and a model that declines is a
refusal (recorded as such, never retried into an answer).

Example:
    >>> answer = '{"label": "positive", "confidence": 0.8, "reasoning": "smiles"}'
    >>> Verdict.model_validate_json(answer).label
    'positive'
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

LABEL_NAMES = ("negative", "positive")
"""Index = the class id used in training (0 negative / lose, 1 positive / win)."""
REASONING_MAX_CHARS = 20_000


class Verdict(BaseModel):
    """A teacher's answer for one video: the label, how sure, and why."""

    model_config = ConfigDict(extra="forbid")

    label: Literal["negative", "positive"]
    confidence: float = Field(ge=0.0, le=1.0)
    reasoning: str = Field(min_length=1, max_length=REASONING_MAX_CHARS)

    @property
    def class_id(self) -> int:
        return LABEL_NAMES.index(self.label)


VERDICT_SCHEMA: dict = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": list(LABEL_NAMES)},
        "confidence": {"type": "number", "minimum": 0.0, "maximum": 1.0},
        "reasoning": {"type": "string"},
    },
    "required": ["label", "confidence", "reasoning"],
    "additionalProperties": False,
}
"""The JSON schema sent to providers that enforce one (Gemini's response_schema, OpenAI's
json_schema response_format); :class:`Verdict` validates the answer either way."""


class CropMode(StrEnum):
    PERSON = "person"
    """The most prominent person's crop from the perception core (the live path's)."""
    FRAME = "frame"
    """The whole frame."""


@dataclass(frozen=True)
class Sampling:
    """How a video is shown to the teacher: part of the cache key (other frames, another
    answer)."""

    frames: int = 8
    size: int = 448
    """Longest side of each image sent, in pixels."""
    crop: CropMode = CropMode.PERSON
    jpeg_quality: int = 85

    def key(self) -> str:
        return f"frames={self.frames},size={self.size},crop={self.crop},q={self.jpeg_quality}"


@dataclass(frozen=True)
class SampledImage:
    jpeg: bytes
    time_s: float
    """Where in the video it was taken (the prompt tells the model the order and times)."""


@dataclass(frozen=True)
class LabelInput:
    """One video as the teacher sees it."""

    video_id: str
    content_hash: str
    """sha256 of the video file's bytes: the same video under another name or path is
    the same cache entry."""
    images: tuple[SampledImage, ...]
    transcript: str = ""
    sampling: Sampling = field(default_factory=Sampling)


class Status(StrEnum):
    LABELLED = "labelled"
    REFUSED = "refused"
    """The model declined (safety, policy): recorded, not retried, not a label."""
    FAILED = "failed"
    """Transport errors, rate limits or invalid output past the retry cap."""


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None
    """From the provider's price table when known; None for a local server or a teacher."""

    def __add__(self, other: Usage) -> Usage:
        cost = None if self.cost_usd is None and other.cost_usd is None else \
            (self.cost_usd or 0.0) + (other.cost_usd or 0.0)
        return Usage(self.input_tokens + other.input_tokens,
                     self.output_tokens + other.output_tokens, cost)


@dataclass(frozen=True)
class LabelOutcome:
    """What one labelling of one video produced, kept whole in the store."""

    status: Status
    verdict: Verdict | None = None
    """The final answer (after reflection); set only when ``status`` is labelled."""
    provisional: Verdict | None = None
    """The chain-of-thought answer before reflection (None for a one-call teacher)."""
    responses: tuple[str, ...] = ()
    """The raw responses, in call order (chain of thought, reflection), as received."""
    usage: Usage = field(default_factory=Usage)
    """What the calls were billed, refused and unusable answers included. In the store, a
    row that replaced an earlier outcome of the same call (a failure retried by a later
    run, or ``--force``) also carries what that earlier outcome was billed: the store's
    rows add up to everything paid."""
    attempts: int = 0
    """Provider calls made, retries included."""
    error: str | None = None
    """Why it failed or what the refusal said."""
    seconds: float = 0.0
    """Wall time of the whole labelling: the calls and the waits between retries."""
    call_seconds: float | None = None
    """Time spent inside the calls alone (retry waits excluded); None where it was not
    measured (rows stored by an older hidemo)."""


@dataclass(frozen=True)
class LabelKey:
    """What makes two labelling calls the same call: never pay twice for it."""

    content_hash: str
    prompt_version: str
    provider: str
    model: str
    sampling: str

    def as_tuple(self) -> tuple[str, str, str, str, str]:
        return (self.content_hash, self.prompt_version, self.provider, self.model,
                self.sampling)


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class StoredLabel:
    """One row of the label store."""

    key: LabelKey
    video_id: str
    outcome: LabelOutcome
    created: str
    """UTC ISO time the outcome was stored."""


class Labeler(Protocol):
    """A teacher: a VLM behind a chat provider (two calls, chain of thought then
    reflection) or a trained hidemo checkpoint (one forward pass over stored features).
    ``provider``, ``model`` and ``prompt_version`` go into the :class:`LabelKey`."""

    provider: str
    model: str
    prompt_version: str
    needs_images: bool
    """False for a teacher that reads features instead of frames (no video decoding)."""

    def label(self, item: LabelInput) -> LabelOutcome:
        """Label one video; never raises for what the teacher says or fails to say (the
        outcome records refusals and failures)."""
        ...

    def close(self) -> None:
        ...
