"""``hidemo bench baseline``: the same models in one process, one frame after another.

What a user writes in a notebook: a loop that takes a frame, finds the person, embeds the
crop, runs the keypoint model, keeps a window of features and classifies it every stride,
then takes the next frame. The engines and adapters are the pipeline's own (the run's
perception core, opened as the detect stage opens it, with the keypoint strategy the
features stage pairs with it; the image embedder; the window classifier through
``build_window``), and so is the work per frame: the core's most prominent person, the same
analysis rates decide which frames get an image embedding or keypoints, and the same stride
decides when to classify. Only the structure differs (no
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

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engines.adapters.classifier import WindowClassifier
from engines.adapters.image_embedder import ImageEmbedder
from engines.adapters.perception import (
    CropKeypoints,
    Percept,
    PerceptionCore,
    PerceptionFrame,
)
from engines.adapters.rates import RateSampler
from engines.adapters.windows import WindowBatch
from stream.bench.figures import percentiles
from stream.media.demo import DemoClip
from stream.stages.windows import PersonRing

log = logging.getLogger(__name__)

STEPS = ("capture", "detect", "image", "keypoints", "classify")
GENERATION = 0
"""The loop's streams never reopen: one session each."""


@dataclass
class _Stream:
    """One stream's state in the loop: its clock, samplers and ring (its tracker and
    keypoint graphs live in the core and the keypoint strategy, keyed by its id)."""

    id: str
    image: RateSampler
    keypoint_sampler: RateSampler
    ring: PersonRing
    next_index: int = 0
    next_due: float | None = None
    dropped: int = 0


@dataclass(frozen=True, eq=False)
class Analysed:
    """What the loop made of one frame: its most prominent person (None: nobody) and that
    person's image embedding and keypoints where the rates wanted them."""

    person: Percept | None
    image: np.ndarray | None
    keypoints: np.ndarray | None


@dataclass
class _Tally:
    frame_ms: list[float] = field(default_factory=list)
    e2e_ms: list[float] = field(default_factory=list)
    frame_t: list[float] = field(default_factory=list)
    steps: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})


def _no_mark(step: str) -> None:
    """Marks nothing (the loop outside a measurement)."""


class Baseline:
    """The sequential loop over the pipeline's engines (see the module docstring)."""

    def __init__(self, core: PerceptionCore, embedder: ImageEmbedder,
                 keypoints: CropKeypoints, classifier: WindowClassifier, *,
                 capture_fps: float, image_rate: float, keypoint_rate: float,
                 stride_s: float = 1.0, width: int = 640, height: int = 480) -> None:
        self.core = core
        self.embedder = embedder
        self.keypoints = keypoints
        self.classifier = classifier
        self.capture_fps = capture_fps
        self.image_rate = image_rate
        self.keypoint_rate = keypoint_rate
        self.stride_s = stride_s
        self.clip = DemoClip(width, height)

    @classmethod
    def from_run_config(cls, config: Any, threads: int = 0) -> Baseline:
        """The engines and rates a :class:`stream.config.RunConfig` gives the pipeline."""
        from engines.adapters.perception import crop_keypoints_for, open_core
        from engines.runtime import open_engine
        from stream.stages.perception import core_options, keypoint_source

        source = keypoint_source(config)
        core = open_core(source, dataclasses.replace(core_options(config), threads=threads))
        engine_dir = config.resolved_engine_dir()
        backend = config.engine_backend()
        embedder = ImageEmbedder(*open_engine(engine_dir, "image_embedder", backend,
                                              threads=threads))
        classifier = WindowClassifier(*open_engine(engine_dir, "classifier", backend,
                                                   threads=threads))
        width, height = ((config.sources[0].width, config.sources[0].height)
                         if config.sources else (640, 480))
        return cls(core, embedder, crop_keypoints_for(source), classifier,
                   capture_fps=config.capture_fps(), image_rate=config.image_rate(),
                   keypoint_rate=config.keypoint_rate(), stride_s=config.classify.stride_s,
                   width=width, height=height)

    def use_rates(self, config: Any) -> None:
        """Take the frame and analysis rates of ``config`` (a RunConfig): a saturated run
        analyses every frame, a paced one at the profile's rates, as the pipeline does."""
        self.capture_fps = config.capture_fps()
        self.image_rate = config.image_rate()
        self.keypoint_rate = config.keypoint_rate()

    def new_stream(self, stream: str) -> _Stream:
        """A fresh stream state (its id keys its state in the core and keypoint strategy)."""
        return _Stream(stream, RateSampler(self.image_rate), RateSampler(self.keypoint_rate),
                       PersonRing(self.classifier.window_seconds))

    def run(self, streams: int, mode: str, duration_s: float,
            warmup_s: float = 2.0) -> dict[str, Any]:
        """Serve ``streams`` demo streams for ``warmup_s + duration_s`` seconds; figures of
        the last ``duration_s``."""
        states = [self.new_stream(f"s{index}") for index in range(streams)]
        # load the models before the clock starts
        self.core.warm_up([state.id for state in states], self.clip.frame(0.0).shape[:2])
        self.keypoints.warm_up()
        tally = _Tally()
        origin = time.monotonic()
        measure_from = origin + warmup_s
        deadline = measure_from + duration_s
        frames = 0
        while time.monotonic() < deadline:
            for state in states:
                now = time.monotonic()
                if now >= deadline:
                    break
                media_time = self._next_media_time(state, mode, now - origin)
                if media_time is None:
                    continue
                measured = now >= measure_from
                # paced: the frame exists from its due time on (a camera delivered it then)
                due = origin + media_time if mode == "paced" else None
                self._process(state, media_time, tally if measured else None, due)
                frames += measured
            if mode == "paced":
                self._sleep_until_due(states, origin, deadline)
        elapsed = max(time.monotonic() - measure_from, 1e-9)
        for state in states:
            self.core.release(state.id)
            self.keypoints.release(state.id)
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

    def _process(self, state: _Stream, media_time: float, tally: _Tally | None,
                 due: float | None = None) -> None:
        """One frame, start to end, as the notebook loop would do it; its latency counts
        from ``due`` (when the camera delivered it) if given, else from now."""
        captured = time.monotonic() if due is None else min(due, time.monotonic())
        frame = self.clip.frame(media_time)
        marks = [("capture", time.monotonic())]
        self.analyse(state, frame, media_time, lambda step: marks.append((step,
                                                                          time.monotonic())))
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

    def analyse(self, state: _Stream, frame: np.ndarray, media_time: float,
                mark: Callable[[str], None] = _no_mark) -> Analysed:
        """The loop's per-frame perception: the core's most prominent person, its image
        embedding and keypoints when the stream's rates want them, added to the stream's
        ring. ``mark(step)`` is called as each step ends (``detect``, then ``image`` and
        ``keypoints`` when there is a person)."""
        found = self.core.perceive([PerceptionFrame(state.id, GENERATION, frame)])[0]
        mark("detect")
        if not found:
            return Analysed(None, None, None)
        person = found[0]
        image = keypoints = None
        if state.image.take(media_time):
            image = self.embedder.embed([person.crop]).cls[0]
        mark("image")
        if state.keypoint_sampler.take(media_time):
            keypoints = self.keypoints.keypoints((state.id, GENERATION, person.track_id),
                                                 person.crop, person.offset, person.keypoints)
        mark("keypoints")
        state.ring.add(media_time, image, keypoints)
        return Analysed(person, image, keypoints)

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
        self.core.close()
        self.keypoints.close()
        self.embedder.close()
        self.classifier.close()
