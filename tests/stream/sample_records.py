"""Valid records for tests that need one (a sink, a view), built by the real models."""

from __future__ import annotations

from stream.prediction import FrameCounts, Prediction, Slots, Window


def prediction(seq: int, stream: str = "s", pad: int = 0) -> Prediction:
    """A valid prediction; ``pad`` characters make its line longer (a long engine name)."""
    return Prediction(
        stream=stream, seq=seq, person=0, generation=1, frame_seq=seq, label="negative",
        probs={"negative": 0.5, "positive": 0.5}, window=Window(start=0.0, end=3.0, seconds=3.0),
        modalities=["image"], slots=Slots(image=1, keypoints=0, text=0), smoothing=0.0,
        capture_time=1.0, emit_time=1.5, latency_ms={"total": 500.0},
        frames=FrameCounts(received=seq + 1, dropped=0, lost=0), detector=None,
        random_weights=bool(pad), random_engines=["x" * pad] if pad else [])
