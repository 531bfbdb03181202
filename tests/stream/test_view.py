"""The live terminal view renders what a user watches: stages, streams, events."""

from __future__ import annotations

import io

from rich.console import Console

from stream.prediction import FrameCounts, Prediction, Slots, Window
from stream.run.view import RichView
from stream.transport.status import Counters, Health, StageStatus


def test_rich_view_shows_stages_streams_latency_and_restarts() -> None:
    console = Console(file=io.StringIO(), record=True, width=200, force_terminal=True)
    view = RichView(console)
    classify = StageStatus("classify", 0, 303, Health.RUNNING, counters=Counters(
        received=40, processed=40, busy_s=0.2),
        extra={"streams": {"demo0": {"latency_ms": {"p50": 168.0, "p95": 183.0},
                                     "rates": {"frames": 10.0, "image": 2.0, "keypoints": 10.0},
                                     "dropped": 7, "lost": 2}}})
    features = StageStatus("features", 1, 202, Health.STALLED,
                           counters=Counters(received=12, sent=11, processed=11, busy_s=1.1,
                                             dropped_in=3))
    view.prediction(Prediction(
        stream="demo0", seq=0, person=1, generation=1, frame_seq=9, label="positive",
        probs={"negative": 0.25, "positive": 0.75},
        window=Window(start=0.0, end=3.0, seconds=3.0),
        modalities=["image", "keypoints"], slots=Slots(image=6, keypoints=30, text=0),
        smoothing=0.0, capture_time=1.0, emit_time=1.2, latency_ms={"total": 170.0},
        frames=FrameCounts(received=40, dropped=7, lost=2), detector=None,
        random_weights=True, random_engines=["window_classifier"]))
    view.event({"event": "died", "stage": "features", "index": 1})
    view.update({"classify[0]": classify, "features[1]": features}, {"features[1]": 1})
    view.close()
    text = console.export_text()
    assert "features[1]" in text and "stalled" in text and "100.0" in text  # ms per item
    assert "classify[0]" in text
    row = next(line for line in text.splitlines() if "demo0" in line)
    for cell in ("positive", "(random)", "0.75", "image+keypoints", "168/183", "10.0/2.0/10.0"):
        assert cell in row, (cell, row)
    assert "features[1] died" in text
