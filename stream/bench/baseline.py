"""``hidemo bench baseline``: the same models in one process, one frame after another.

What a user writes in a notebook: a loop that takes a frame, finds the person, embeds the
crop, runs the keypoint model, keeps a window of features and classifies it every stride,
then takes the next frame. The engines and adapters are the pipeline's own (the detector
engine or the MediaPipe Pose fallback chosen the same way, the image embedder,
MediaPipe Holistic keypoints, the window classifier through ``build_window``), and so is
the work per frame: the same analysis rates decide which frames get an image embedding or
keypoints, and the same stride decides when to classify. Only the structure differs (no
processes, no overlap between stages, no batching across streams), which is what the
pipeline/baseline ratio measures.

Streams are served round-robin. ``paced``: each stream's next frame is the newest one due
at its frame rate (as a camera gives the latest frame: a loop that falls behind skips
frames, counted as dropped); ``saturated``: every stream's next frame, no waiting.
Latency is from the frame's capture time (paced: when the camera delivered it, its due
time; saturated: when the loop took it) to the end of its processing; for frames that close
a stride, to their prediction.

Example:
    >>> baseline = Baseline.from_run_config(load_config(None, {}))  # doctest: +SKIP
    >>> baseline.run(streams=1, mode="paced", duration_s=10.0)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engines.adapters.classifier import WindowClassifier
from engines.adapters.detector import crop_with_margin, prominence
from engines.adapters.image_embedder import ImageEmbedder
from engines.adapters.rates import RateSampler
from engines.adapters.windows import WindowBatch
from stream.bench.figures import percentiles
from stream.demo import DemoClip
from stream.rings import PersonRing

log = logging.getLogger(__name__)

STEPS = ("capture", "detect", "image", "keypoints", "classify")


@dataclass
class _Stream:
    """One stream's state in the loop: its clock, samplers, keypoint tracker, ring."""

    finder: Any
    keypoints: Any
    image: RateSampler
    keypoint_sampler: RateSampler
    ring: PersonRing
    next_index: int = 0
    next_due: float | None = None
    dropped: int = 0


@dataclass
class _Tally:
    frame_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    frame_t: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})


class Baseline:
    """The sequential loop over the pipeline's engines (see the module docstring)."""

    def __init__(self, finder_factory: Callable[[], Any], embedder: ImageEmbedder,
                 keypoints_factory: Callable[[], Any], classifier: WindowClassifier, *,
                 capture_fps: float, image_rate: float, keypoint_rate: float,
                 stride_s: float = 1.0, crop_margin: float = 0.15, width: int = 640,
                 height: int = 480) -> None:
        self.finder_factory = finder_factory
        self.embedder = embedder
        self.keypoints_factory = keypoints_factory
        self.classifier = classifier
        self.capture_fps = capture_fps
        self.image_rate = image_rate
        self.keypoint_rate = keypoint_rate
        self.stride_s = stride_s
        self.crop_margin = crop_margin
        self.clip = DemoClip(width, height)

    @classmethod
    def from_run_config(cls, config: Any, threads: int = 0) -> Baseline:
        """The engines and rates a :class:`stream.config.RunConfig` gives the pipeline."""
        from stream.stages.detect import PerStreamFinder, make_finder
        from stream.stages.features import keypoints_factory
        from stream.stages.main import open_engine

        engine_dir = config.resolved_engine_dir()
        finder = make_finder(config.detect, engine_dir, config.backend, threads)
        if isinstance(finder, PerStreamFinder):  # one stateful detector per stream
            def finder_factory() -> Any:
                return PerStreamFinder(finder.factory, finder.name)
        else:
            def finder_factory() -> Any:
                return finder
        embedder = ImageEmbedder(*open_engine(config, "image_embedder", threads))
        classifier = WindowClassifier(*open_engine(config, "classifier", threads))
        width, height = ((config.sources[0].width, config.sources[0].height)
                         if config.sources else (640, 480))
        return cls(finder_factory, embedder, keypoints_factory, classifier,
                   capture_fps=config.capture_fps(), image_rate=config.image_rate(),
                   keypoint_rate=config.keypoint_rate(), stride_s=config.classify.stride_s,
                   crop_margin=config.detect.crop_margin, width=width, height=height)

    def use_rates(self, config: Any) -> None:
        """Take the frame and analysis rates of ``config`` (a RunConfig): a saturated run
        analyses every frame, a paced one at the profile's rates, as the pipeline does."""
        self.capture_fps = config.capture_fps()
        self.image_rate = config.image_rate()
        self.keypoint_rate = config.keypoint_rate()

    def _stream(self) -> _Stream:
        return _Stream(self.finder_factory(), self.keypoints_factory(),
                       RateSampler(self.image_rate), RateSampler(self.keypoint_rate),
                       PersonRing(self.classifier.window_seconds))

    def run(self, streams: int, mode: str, duration_s: float,
            warmup_s: float = 2.0) -> dict[str, Any]:
        """Serve ``streams`` demo streams for ``warmup_s + duration_s`` seconds; figures of
        the last ``duration_s``."""
        states = [self._stream() for _ in range(streams)]
        for state in states:  # load MediaPipe's models before the clock starts
            blank = self.clip.frame(0.0)
            state.finder.find(["warmup"], [blank])
            state.keypoints.process(blank[:64, :64])
        tally = _Tally()
        origin = time.monotonic()
        measure_from = origin + warmup_s
        deadline = measure_from + duration_s
        frames = 0
        while time.monotonic() < deadline:
            for index, state in enumerate(states):
                now = time.monotonic()
                if now >= deadline:
                    break
                media_time = self._next_media_time(state, mode, now - origin)
                if media_time is None:
                    continue
                measured = now >= measure_from
                # paced: the frame exists from its due time on (a camera delivered it then)
                due = origin + media_time if mode == "paced" else None
                self._process(f"s{index}", state, media_time, tally if measured else None, due)
                frames += measured
            if mode == "paced":
                self._sleep_until_due(states, origin, deadline)
        elapsed = max(time.monotonic() - measure_from, 1e-9)
        for state in states:
            state.keypoints.close()
        return {
            "streams": streams, "mode": mode, "duration_s": duration_s,
            "capture_fps": self.capture_fps, "measured_s": round(elapsed, 2),
            "frames": frames, "throughput_fps": round(frames / elapsed, 3),
            "dropped": sum(s.dropped for s in states),
            "predictions": len(tally.e2e_ms),
            "e2e_latency_ms": percentiles(tally.e2e_ms),
            "frame_latency_ms": percentiles(tally.frame_ms),
            "step_ms": {step: percentiles(values) for step, values in tally.steps.items()},
            "timeline": {"frame_t": [round(t - measure_from, 3) for t in tally.frame_t],
                         "frame_latency_ms": [round(v, 2) for v in tally.frame_ms]},
        }

    def _next_media_time(self, state: _Stream, mode: str, now_s: float) -> float | None:
        """The media time of this stream's next frame; None when none is due yet (paced)."""
        if mode == "saturated":
            index = state.next_index
        else:
            index = math.floor(now_s * self.capture_fps + 1e-9)
            if index < state.next_index:
                return None
            state.dropped += index - state.next_index  # frames the loop was too slow for
        state.next_index = index + 1
        return index / self.capture_fps

    def _sleep_until_due(self, states: list[_Stream], origin: float, deadline: float) -> None:
        due = origin + min(s.next_index for s in states) / self.capture_fps
        wait = min(due, deadline) - time.monotonic()
        if wait > 0:
            time.sleep(wait)

    def _process(self, stream: str, state: _Stream, media_time: float,
                 tally: _Tally | None, due: float | None = None) -> None:
        """One frame, start to end, as the notebook loop would do it; its latency counts
        from ``due`` (when the camera delivered it) if given, else from now."""
        captured = time.monotonic() if due is None else min(due, time.monotonic())
        frame = self.clip.frame(media_time)
        marks = [("capture", time.monotonic())]
        found = state.finder.find([stream], [frame])[0]
        marks.append(("detect", time.monotonic()))
        image = keypoints = None
        if len(found.xyxy):
            best = int(np.argmax(prominence(np.asarray(found.xyxy), frame.shape[:2], 0.5)))
            crop, offset = crop_with_margin(frame, found.xyxy[best], self.crop_margin)
            if crop.size and state.image.take(media_time):
                image = self.embedder.embed([crop]).cls[0]
            marks.append(("image", time.monotonic()))
            if crop.size and state.keypoint_sampler.take(media_time):
                keypoints = state.keypoints.process(crop, offset)
            marks.append(("keypoints", time.monotonic()))
            state.ring.add(media_time, image, keypoints)
        classified = self._maybe_classify(state, media_time)
        marks.append(("classify", time.monotonic()))
        if tally is None:
            return
        done = marks[-1][1]
        previous = captured
        for step, at in marks:
            tally.steps[step].append(1000.0 * (at - previous))
            previous = at
        tally.frame_ms.append(1000.0 * (done - captured))
        tally.frame_t.append(captured)
        if classified:
            tally.e2e_ms.append(1000.0 * (done - captured))

    def _maybe_classify(self, state: _Stream, media_time: float) -> bool:
        if state.next_due is None:
            state.next_due = media_time + self.stride_s
        if media_time + 1e-9 < state.next_due:
            return False
        while state.next_due <= media_time + 1e-9:
            state.next_due += self.stride_s
        c = self.classifier
        window = state.ring.window(media_time, image_rate=c.image_rate,
                                   keypoint_rate=c.keypoint_rate, image_dim=c.image_dim,
                                   text_dim=c.text_dim, text=None)
        if not window.modalities_present[0]:  # a fully masked window gives NaN: skip
            return False
        c.classify(WindowBatch.stack([window]))
        return True

    def close(self) -> None:
        self.embedder.close()
        self.classifier.close()
