"""The published prediction schema is the model's, and it refuses what it should."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from stream.prediction import schema_text

PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "prediction.schema.json"

RECORD = {
    "schema": "hidemo.prediction/2", "stream": "demo0", "seq": 12, "person": 1,
    "generation": 1, "frame_seq": 131, "label": "positive",
    "probs": {"negative": 0.43, "positive": 0.57},
    "window": {"start": 5.1, "end": 13.1, "seconds": 8.0},
    "modalities": ["image", "keypoints"], "slots": {"image": 16, "keypoints": 80, "text": 0},
    "smoothing": 0.0, "capture_time": 12431.18, "emit_time": 12431.35,
    "latency_ms": {"capture": 0.05, "detect": 14.2, "queues": 90.4, "total": 167.9},
    "frames": {"received": 131, "dropped": 13, "lost": 0},
    "detector": "mediapipe-pose", "keypoints": "mediapipe", "random_weights": True,
    "random_engines": ["classifier", "image_embedder"],
}


def published() -> dict:
    return json.loads(PUBLISHED.read_text())


def test_the_published_file_is_the_models_schema() -> None:
    assert PUBLISHED.read_text() == schema_text(), (
        "docs/prediction.schema.json is stale: python -m stream.prediction > "
        "docs/prediction.schema.json")


def test_the_readme_example_is_valid() -> None:
    jsonschema.validate(RECORD, published())


@pytest.mark.parametrize("change", [
    {"label": "maybe"}, {"seq": -1}, {"probs": {"negative": 1.5, "positive": 0.1}},
    {"schema": "hidemo.prediction/1"}, {"extra_field": 1},
    {"keypoints": "openpose"}, {"window": {"start": 0.0}},
])
def test_it_refuses_records_that_break_the_contract(change: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**RECORD, **change}, published())
