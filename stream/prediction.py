"""The prediction record (``hidemo.prediction/2``): what every sink and subscriber receives.

One typed model builds every record (so classify cannot emit a record its own schema
refuses), and the same model publishes the JSON Schema in ``docs/prediction.schema.json``
for subscribers in any language. Regenerate that file after changing the model::

    python -m stream.prediction > docs/prediction.schema.json

A test keeps the file equal to the model and validates real pipeline output against it.

Example:
    >>> Prediction.model_json_schema()["properties"]["schema"]["const"]
    'hidemo.prediction/2'
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from stream.transport.wire import Tally

SCHEMA = "hidemo.prediction/2"

Finite = Annotated[float, Field(allow_inf_nan=False)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Count = Tally
"""A count in a record: saturated at :data:`stream.transport.wire.MAX_COUNT` (exact in a float64, as
JSON readers use), the bound the published schema states."""


class _Record(BaseModel):
    """Strict: a reader (the supervisor's view) gets exactly the types the schema states,
    never ``true`` taken for the count 1 or ``"3"`` for 3."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class Window(_Record):
    """The window on the source's own timeline (seconds); ``seconds`` is its length, the
    floor of reaction time."""

    start: Finite
    end: Finite
    seconds: Annotated[float, Field(gt=0.0)]


class Slots(_Record):
    """Filled grid slots per modality in the window."""

    image: Count
    keypoints: Count
    text: Count


class FrameCounts(_Record):
    """The stream's running counts: received, ``dropped`` on purpose by latest-wins hops,
    ``lost`` (a crash, a dead peer)."""

    received: Count
    dropped: Count
    lost: Count


class Prediction(_Record):
    """One hidden-emotion prediction for one person of one stream."""

    model_config = ConfigDict(title="hidemo prediction", extra="forbid", frozen=True,
                              allow_inf_nan=False, strict=True)

    schema_: Literal["hidemo.prediction/2"] = Field(SCHEMA, alias="schema")
    stream: Annotated[str, Field(min_length=1, max_length=64)]
    seq: Annotated[Count, Field(description="this stream's predictions, without gaps, for "
                                            "the whole run (restarts included)")]
    person: Annotated[int, Field(ge=0, le=2**31, description="the person's track id")]
    generation: Count
    frame_seq: Count
    label: Literal["negative", "positive"]
    probs: dict[Literal["negative", "positive"], Probability]
    window: Window
    modalities: list[Literal["image", "keypoints", "text"]]
    slots: Slots
    smoothing: Annotated[float, Field(ge=0.0, lt=1.0)]
    capture_time: Finite
    emit_time: Finite
    latency_ms: dict[str, Finite] = Field(
        description="per stage (its own work), 'queues' (waiting and transport), 'total' "
                    "(capture to prediction), for the newest frame of the window")
    frames: FrameCounts
    detector: str | None
    keypoints: Literal["mediapipe", "engines"] | None = Field(
        None, description="where the keypoints came from: MediaPipe Holistic on the person's "
                    "crop, or the keypoint engines of the perception core (absent in "
                    "records made before it was added)")
    random_weights: bool
    random_engines: list[str]


class FrameTrace(BaseModel):
    """One line of ``frames.jsonl``: a frame that reached the classifier, with its age on
    arrival (in source frames) and every stage's stamps ``[stage, arrived, t_in, t_out]``,
    from which the bench splits a frame's latency into work and waiting. Counts saturate
    (:data:`Count`); a non-finite time is written as null (pydantic's JSON default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stream: str
    seq: Count
    generation: Count
    capture_time: float
    arrival: float
    age_frames: float
    dropped: Count
    lost: Count
    persons: Count
    latency_ms: dict[str, float]
    stamps: list[tuple[str, float, float, float]]


def schema_text() -> str:
    """The published JSON Schema of :class:`Prediction`, as written to the docs."""
    return json.dumps(Prediction.model_json_schema(by_alias=True), indent=2) + "\n"


if __name__ == "__main__":
    sys.stdout.write(schema_text())
