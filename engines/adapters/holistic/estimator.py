"""MediaPipe Holistic rebuilt on batched engines: multi-person, multi-stream keypoints.

MediaPipe's own Holistic runs one image at a time on the CPU and follows one person.
:class:`EngineKeypoints` runs the same models (converted to engines with a batch axis) and
the same graph rules, but collects the regions of interest of every person in every frame
of a call and runs each model once over all of them, so a GPU (or many CPU threads) is
used well. Per stream it tracks up to ``max_persons`` people, each with a stable id.

What happens per frame, as in Holistic (``static_image_mode=False``):

1. Pose ROI: from last frame's landmarks (the auxiliary hip-centre / body-circle points)
   while the pose flag stays above ``min_tracking_confidence``; the person detector runs
   only for a stream that has lost someone or has room for more people (then every
   ``search_interval`` frames). A detection overlapping a tracked person is ignored.
2. Pose landmarks (33 + visibility) in that ROI.
3. Face: ROI from the pose's head points -> face detector inside it -> face ROI (or last
   frame's mesh ROI when close enough) -> 468-point mesh -> iris model on both eyes ->
   478 points as Holistic's ``refine_face_landmarks`` layout.
4. Hands: for each pose wrist visible above 0.1: ROI from wrist/pinky/index -> re-crop
   model -> hand ROI (or last frame's, when close enough) -> 21 landmarks. ``left`` is the
   hand at the subject's left pose wrist, as in Holistic.

Differences from MediaPipe: no landmark smoothing filter (a later stage may smooth); no
heatmap refinement of pose points (the engine has no heatmap output); the plain face mesh
plus iris model instead of the attention mesh; several people instead of one.

Example:
    >>> estimator = EngineKeypoints.from_engine_dir("artifacts/engines/edge")  # doctest: +SKIP
    >>> people = estimator.process([("cam0", frame_bgr)])[0]  # doctest: +SKIP
    >>> people[0].track_id, people[0].keypoints.shape  # doctest: +SKIP
    (0, (137, 3))
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engines.runtime import BackendChoice

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from engines.adapters.holistic import face, hands, pose
from engines.adapters.holistic.detections import RawDetections, box_iou
from engines.adapters.holistic.roi import Rect, keep_tracking, to_tensor, warp
from engines.adapters.keypoints import holistic_to_openpose
from engines.adapters.openpose_layout import DTYPE, empty_keypoints
from engines.adapters.records import Detections

ENGINE_NAMES: tuple[str, ...] = (
    pose.DETECTION_ENGINE,
    pose.LANDMARK_ENGINE,
    face.DETECTION_ENGINE,
    face.LANDMARK_ENGINE,
    face.IRIS_ENGINE,
    hands.RECROP_ENGINE,
    hands.LANDMARK_ENGINE,
)
"""Engines :class:`EngineKeypoints` runs. (The palm detector is converted too, but
Holistic finds hands from the pose, not with it.)"""

REQUIRED_ENGINES = (pose.DETECTION_ENGINE, pose.LANDMARK_ENGINE)
"""Without these there is nothing to do; without a face or hand engine that part is
simply missing from the output."""


@dataclass(frozen=True, eq=False)
class PersonKeypoints:
    """One person in one frame.

    ``track_id``: stable while the person is tracked in that stream (a new id after the
    track was lost); ``xyxy`` (4,) float32 box around every landmark found, clipped to the
    frame; ``score``: the pose model's presence flag in [0, 1]; ``keypoints`` (137, 3)
    float32 OpenPose layout in frame pixels (see :func:`holistic_to_openpose`).
    """

    track_id: int
    xyxy: np.ndarray
    score: float
    keypoints: np.ndarray
    random_weights: bool = False

    def __post_init__(self) -> None:
        for name, shape in (("xyxy", (4,)), ("keypoints", empty_keypoints().shape)):
            array = np.ascontiguousarray(getattr(self, name), dtype=DTYPE).view()
            if array.shape != shape:
                raise ValueError(f"PersonKeypoints.{name} has shape {array.shape}; "
                                 f"expected {shape}")
            array.setflags(write=False)
            object.__setattr__(self, name, array)


@dataclass
class _Track:
    """A tracked person's state between frames."""

    track_id: int
    rect: Rect
    head_box: np.ndarray | None = None
    face: tuple[np.ndarray, Rect] | None = None
    hands: dict[str, tuple[np.ndarray, Rect]] = field(default_factory=dict)


@dataclass
class _Stream:
    tracks: list[_Track] = field(default_factory=list)
    next_id: int = 0
    since_search: int = 0


@dataclass
class _Person:
    """What one ROI gave in one frame (frame pixels)."""

    pose: pose.PoseLandmarks
    face: np.ndarray | None = None
    face_track: tuple[np.ndarray, Rect] | None = None
    hands: dict[str, np.ndarray] = field(default_factory=dict)
    hand_tracks: dict[str, tuple[np.ndarray, Rect]] = field(default_factory=dict)


def _check_frame(frame: np.ndarray, what: str) -> np.ndarray:
    array = np.asarray(frame)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(f"{what} has shape {array.shape} and dtype {array.dtype}; expected "
                         "an (H, W, 3) uint8 BGR image (as OpenCV gives)")
    return array


def _margin_box(box: np.ndarray, width: int, height: int,
                margin: float) -> tuple[int, int, int, int]:
    """``box`` plus ``margin`` of its size per side, clipped to the frame, in whole pixels
    (the arithmetic of :func:`engines.adapters.detector.crop_with_margin`)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    dx, dy = margin * (x1 - x0), margin * (y1 - y0)
    left = min(width, max(0, math.floor(x0 - dx)))
    top = min(height, max(0, math.floor(y0 - dy)))
    right = max(left, min(width, math.ceil(x1 + dx)))
    bottom = max(top, min(height, math.ceil(y1 + dy)))
    return left, top, right, bottom


def _openpose(person: _Person, origin: tuple[float, float], size: tuple[int, int],
              drop_outside: bool) -> np.ndarray:
    """(137, 3) keypoints of ``person``, through :func:`holistic_to_openpose` with points
    made relative to the crop at ``origin`` of ``size`` (so body points outside it drop)."""
    width, height = max(size[0], 1), max(size[1], 1)
    offset = np.array(origin, dtype=np.float64)
    scale = np.array([width, height], dtype=np.float64)

    def relative(points: np.ndarray | None) -> np.ndarray | None:
        if points is None:
            return None
        out = np.array(points, dtype=np.float64)
        out[:, :2] = (out[:, :2] - offset) / scale
        return out

    return holistic_to_openpose(
        relative(person.pose.landmarks), relative(person.face),
        relative(person.hands.get("left")), relative(person.hands.get("right")),
        (width, height), (float(origin[0]), float(origin[1])), drop_outside=drop_outside,
    )


class EngineKeypoints:
    """OpenPose-layout keypoints for several people in frames of several streams.

    Args:
        engines: engine name (see :data:`ENGINE_NAMES`) -> an object with
            ``run({"image": batch}) -> dict`` (an :class:`engines.engine.Engine`).
        max_persons: most people tracked per stream.
        min_detection_confidence: person detector score threshold (MediaPipe: 0.5).
        min_tracking_confidence: pose flag below which a person is lost (MediaPipe: 0.5).
        search_interval: while a stream tracks fewer than ``max_persons`` people (but at
            least one), run the detector every this many frames to find newcomers.
        same_person_iou: a detection whose face box overlaps a tracked person's head box
            by more than this is that person, not a new one.
        duplicate_iou: two tracks whose person boxes overlap more than this follow the
            same person; the younger one is dropped.
        crop_margin: the margin (fraction of the box per side) of the person crop whose
            outside body points are dropped, as ``crop_with_margin`` gives
            :class:`MediaPipeKeypoints` in the live pipeline.
        max_batch: split any engine call into batches of at most this many (e.g. the
            largest batch a TensorRT profile accepts); None: one call per model.
        search_tiles: when searching for people in a frame longer than 1.3:1, also run
            the detector on square tiles at its ends (same call; see
            :func:`pose.search_windows`): BlazePose misses the small people of a
            letterboxed 16:9 frame.

    Not thread-safe: one instance per process stage.
    """

    def __init__(self, engines: Mapping[str, Any], *, max_persons: int = 4,
                 min_detection_confidence: float = 0.5, min_tracking_confidence: float = 0.5,
                 search_interval: int = 10, same_person_iou: float = 0.2,
                 duplicate_iou: float = 0.5, crop_margin: float = 0.15,
                 max_batch: int | None = None, search_tiles: bool = True) -> None:
        missing = [name for name in REQUIRED_ENGINES if name not in engines]
        if missing:
            raise ValueError(f"EngineKeypoints needs engines {missing}; build them with "
                             "`hidemo engines build`")
        if max_persons < 1 or search_interval < 1 or (max_batch is not None and max_batch < 1):
            raise ValueError("max_persons, search_interval and max_batch must be >= 1")
        self._engines = dict(engines)
        self.max_persons = max_persons
        self.min_detection_confidence = min_detection_confidence
        self.min_tracking_confidence = min_tracking_confidence
        self.search_interval = search_interval
        self.same_person_iou = same_person_iou
        self.duplicate_iou = duplicate_iou
        self.crop_margin = crop_margin
        self.max_batch = max_batch
        self.search_tiles = search_tiles
        self.random_weights = any(bool(getattr(engine, "random_weights", False))
                                  for engine in self._engines.values())
        self.engine_ids: dict[str, str] = {}
        """Engine name -> ONNX sha256, where :meth:`from_engine_dir` loaded them."""
        self._streams: dict[str, _Stream] = {}
        self._closed = False

    @classmethod
    def from_engine_dir(cls, engine_dir: Path | str, backend: BackendChoice = "auto",
                        threads: int = 0,
                        **options: Any) -> EngineKeypoints:
        """Load (and verify) every keypoint engine from ``engine_dir``; ``options`` go to the
        constructor. All are required: a missing face or hand engine would silently empty
        those keypoints. ``engine_ids`` records each engine's ONNX sha256."""
        from engines.runtime import open_engine

        loaded: dict[str, Any] = {}
        ids: dict[str, str] = {}
        try:
            for name in ENGINE_NAMES:
                loaded[name], manifest = open_engine(engine_dir, name, backend, threads=threads)
                ids[name] = manifest.onnx_sha256
            estimator = cls(loaded, **options)
        except BaseException:
            for engine in loaded.values():
                engine.close()
            raise
        estimator.engine_ids = ids
        return estimator

    @property
    def backend(self) -> str:
        """The pose landmark engine's backend label (``onnxruntime:cpu``, ``tflite:xnnpack``)."""
        return str(getattr(self._engines[pose.LANDMARK_ENGINE], "backend", "unknown"))

    @property
    def device(self) -> str:
        """Where the pose landmark engine computes (``cpu``, ``cuda:0``)."""
        return str(getattr(self._engines[pose.LANDMARK_ENGINE], "device", "cpu"))

    # ---------------------------------------------------------------- engine calls

    def _run(self, name: str, crops: Sequence[np.ndarray],
             value_range: tuple[float, float]) -> dict[str, np.ndarray]:
        """One model over all ``crops`` (uint8 BGR), in ``max_batch`` chunks."""
        step = self.max_batch or len(crops)
        parts = [self._engines[name].run({"image": to_tensor(crops[i:i + step], value_range)})
                 for i in range(0, len(crops), step)]
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}

    def _has(self, *names: str) -> bool:
        return all(name in self._engines for name in names)

    def _detect(self, images: Sequence[np.ndarray], max_persons: int,
                tiled: bool = False) -> list[RawDetections]:
        """Person detections per image (frame pixels), one detector call over every search
        window of every image (``tiled``: :func:`pose.search_windows`' end squares too)."""
        if not images:
            return []
        windows = [pose.search_windows(image.shape[1], image.shape[0], tiled)
                   for image in images]
        owner = [index for index, rects in enumerate(windows) for _ in rects]
        rects = [rect for per_image in windows for rect in per_image]
        crops = [warp(images[index], rect, pose.DETECTION_SIZE, zero_border=True)
                 for index, rect in zip(owner, rects, strict=True)]
        out = self._run(pose.DETECTION_ENGINE, crops, pose.DETECTION_RANGE)
        decoded = [pose.decode_detections(out["boxes"][i], out["scores"][i], rect,
                                          min_score=self.min_detection_confidence,
                                          max_persons=max_persons)
                   for i, rect in enumerate(rects)]
        return [pose.merge_windows([d for d, o in zip(decoded, owner, strict=True) if o == i],
                                   max_persons)
                for i in range(len(images))]

    def _landmarks(self, images: Sequence[np.ndarray], frame_of: Sequence[int],
                   rects: Sequence[Rect], tracks: Sequence[_Track | None]) -> list[_Person | None]:
        """Pose, face and hands for every ROI (``rects[i]`` in ``images[frame_of[i]]``),
        each model run once over all ROIs. ``tracks[i]`` (or None) holds last frame's
        face and hand state for that person."""
        if not rects:
            return []
        crops = [warp(images[f], rect, pose.LANDMARK_SIZE) for f, rect in zip(frame_of, rects,
                                                                               strict=True)]
        out = self._run(pose.LANDMARK_ENGINE, crops, pose.LANDMARK_RANGE)
        people: list[_Person | None] = []
        for i, rect in enumerate(rects):
            found = pose.decode_landmarks(out["landmarks"][i], out["presence"][i], rect)
            people.append(_Person(found) if found.presence >= self.min_tracking_confidence
                          else None)
        alive = [i for i, person in enumerate(people) if person is not None]
        if self._has(face.DETECTION_ENGINE, face.LANDMARK_ENGINE):
            self._faces(images, frame_of, tracks, people, alive)
        if self._has(hands.RECROP_ENGINE, hands.LANDMARK_ENGINE):
            self._hands(images, frame_of, tracks, people, alive)
        return people

    def _faces(self, images: Sequence[np.ndarray], frame_of: Sequence[int],
               tracks: Sequence[_Track | None], people: list[_Person | None],
               alive: list[int]) -> None:
        """Face detection -> mesh -> iris for every person in ``alive`` (three calls)."""
        search = {i: face.roi_from_pose(people[i].pose.landmarks) for i in alive}
        if not search:
            return
        crops = [warp(images[frame_of[i]], rect, face.DETECTION_SIZE, zero_border=True)
                 for i, rect in search.items()]
        out = self._run(face.DETECTION_ENGINE, crops, face.DETECTION_RANGE)
        rois: dict[int, Rect] = {}
        for row, (i, rect) in enumerate(search.items()):
            keypoints = face.decode_detection(out["boxes"][row], out["scores"][row], rect)
            if keypoints is None:
                continue
            recrop = face.roi_from_detection(keypoints)
            previous = tracks[i].face if tracks[i] is not None else None
            if previous is not None and keep_tracking(previous[1], previous[0], recrop,
                                                      face.TRACKING):
                recrop = previous[1]
            rois[i] = recrop
        if not rois:
            return
        crops = [warp(images[frame_of[i]], rect, face.LANDMARK_SIZE) for i, rect in rois.items()]
        out = self._run(face.LANDMARK_ENGINE, crops, face.LANDMARK_RANGE)
        meshes: dict[int, np.ndarray] = {}
        for row, (i, rect) in enumerate(rois.items()):
            mesh = face.decode_mesh(out["landmarks"][row], out["presence"][row], rect)
            if mesh is not None:
                meshes[i] = mesh
                people[i].face = mesh
                people[i].face_track = (mesh[:, :2], face.roi_from_mesh(mesh))
        if not meshes or not self._has(face.IRIS_ENGINE):
            return
        eyes = [(i, rect, mirrored) for i, mesh in meshes.items()
                for rect, (_s, _e, mirrored) in zip(face.eye_rois(mesh), face.EYES, strict=True)]
        crops = [warp(images[frame_of[i]], rect, face.IRIS_SIZE, mirror=mirrored)
                 for i, rect, mirrored in eyes]
        out = self._run(face.IRIS_ENGINE, crops, face.IRIS_RANGE)
        irises: dict[int, list[np.ndarray]] = {i: [] for i in meshes}
        for row, (i, rect, mirrored) in enumerate(eyes):
            irises[i].append(face.decode_iris(out["iris"][row], rect, mirrored))
        for i, mesh in meshes.items():
            people[i].face = np.concatenate([mesh, *irises[i]])

    def _hands(self, images: Sequence[np.ndarray], frame_of: Sequence[int],
               tracks: Sequence[_Track | None], people: list[_Person | None],
               alive: list[int]) -> None:
        """Re-crop -> hand landmarks for both hands of every person in ``alive``."""
        wanted = [(i, side, hands.roi_from_pose(people[i].pose.landmarks, side))
                  for i in alive for side in hands.SIDES
                  if hands.visible(people[i].pose.landmarks, side)]
        if not wanted:
            return
        crops = [warp(images[frame_of[i]], rect, hands.RECROP_SIZE) for i, _side, rect in wanted]
        out = self._run(hands.RECROP_ENGINE, crops, hands.RECROP_RANGE)
        rois = []
        for row, (i, side, rect) in enumerate(wanted):
            recrop = hands.roi_from_recrop(out["keypoints"][row], rect)
            previous = tracks[i].hands.get(side) if tracks[i] is not None else None
            if previous is not None and keep_tracking(previous[1], previous[0], recrop,
                                                      hands.TRACKING):
                recrop = previous[1]
            rois.append((i, side, recrop))
        crops = [warp(images[frame_of[i]], rect, hands.LANDMARK_SIZE) for i, _side, rect in rois]
        out = self._run(hands.LANDMARK_ENGINE, crops, hands.LANDMARK_RANGE)
        for row, (i, side, rect) in enumerate(rois):
            hand = hands.decode_landmarks(out["landmarks"][row], out["presence"][row], rect)
            if hand is not None:
                people[i].hands[side] = hand
                people[i].hand_tracks[side] = (hand[:, :2], hands.roi_from_landmarks(hand))

    # ---------------------------------------------------------------- public API

    def detect_persons(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """People in each BGR frame, from one person-detector call over all frames.

        Boxes are the squares around MediaPipe's whole-body circle (hip centre, radius to
        the circle point), clipped to the frame: generous, they include limbs the model
        expects out of view. Scores are the detector's; class id 0 (person). Up to
        ``max_persons`` per frame, best first.
        """
        self._check_open()
        images = [_check_frame(frame, f"frames[{i}]") for i, frame in enumerate(frames)]
        found = self._detect(images, self.max_persons, tiled=self.search_tiles)
        records = []
        for image, detections in zip(images, found, strict=True):
            height, width = image.shape[:2]
            boxes = np.array([pose.body_box(points, width, height)
                              for points in detections.keypoints]).reshape(-1, 4)
            records.append(Detections(boxes, detections.scores,
                                      np.zeros(len(detections), np.int64), self.random_weights))
        return records

    def process(self, frames: Sequence[tuple[str, np.ndarray]]) -> list[list[PersonKeypoints]]:
        """Keypoints of the people in each ``(stream_id, frame_bgr)``, tracking per stream.

        Frames of one stream must come in time order; several of them in one call are
        handled in turn (each needs the one before), while frames of different streams
        share every engine call. Returns, per input frame, its people sorted by track id.
        """
        self._check_open()
        images = [_check_frame(frame, f"frames[{i}]") for i, (_s, frame) in enumerate(frames)]
        results: list[list[PersonKeypoints]] = [[] for _ in frames]
        waves: list[list[int]] = []
        seen: dict[str, int] = {}
        for index, (stream, _frame) in enumerate(frames):
            wave = seen.get(stream, 0)
            seen[stream] = wave + 1
            if wave == len(waves):
                waves.append([])
            waves[wave].append(index)
        for wave in waves:
            self._process_wave([frames[i][0] for i in wave], [images[i] for i in wave],
                               lambda row, people, wave=wave: results[wave[row]].extend(people))
        return results

    def _process_wave(self, streams: list[str], images: list[np.ndarray],
                      emit: Callable[[int, list[PersonKeypoints]], None]) -> None:
        """One frame per stream: search where due, then landmarks for every track."""
        states = [self._streams.setdefault(stream, _Stream()) for stream in streams]
        due = [row for row, state in enumerate(states)
               if len(state.tracks) < self.max_persons
               and (not state.tracks or state.since_search >= self.search_interval)]
        for row, state in enumerate(states):
            state.since_search = 0 if row in due else state.since_search + 1
        searched = self._detect([images[r] for r in due], self.max_persons,
                                tiled=self.search_tiles)
        for row, found in zip(due, searched, strict=True):
            self._admit(states[row], found)
        frame_of = [row for row, state in enumerate(states) for _track in state.tracks]
        tracks = [track for state in states for track in state.tracks]
        people = self._landmarks(images, frame_of, [track.rect for track in tracks], tracks)
        kept: list[list[tuple[_Track, _Person]]] = [[] for _ in states]
        for row, track, person in zip(frame_of, tracks, people, strict=True):
            if person is None:
                states[row].since_search = self.search_interval
                continue
            track.rect = pose.landmarks_roi(person.pose.auxiliary)
            track.head_box = Rect.from_points(person.pose.landmarks[:11]).bounds()
            track.face = person.face_track
            track.hands = dict(person.hand_tracks)
            kept[row].append((track, person))
        for row, (state, pairs) in enumerate(zip(states, kept, strict=True)):
            height, width = images[row].shape[:2]
            outputs = [self._output(track, person, width, height) for track, person in pairs]
            survivors = self._deduplicate(outputs)
            state.tracks = [track for track, _ in pairs
                            if any(out.track_id == track.track_id for out in survivors)]
            emit(row, sorted(survivors, key=lambda out: out.track_id))

    def _admit(self, state: _Stream, found: RawDetections) -> None:
        """New tracks for detections that are not someone already tracked."""
        for box, keypoints in zip(found.boxes, found.keypoints, strict=True):
            if len(state.tracks) >= self.max_persons:
                break
            heads = [track.head_box for track in state.tracks if track.head_box is not None]
            if heads and box_iou(box, np.array(heads)).max() > self.same_person_iou:
                continue
            # The detector's box is the face: compared with the heads of tracked people
            # (and of those admitted just now), two people side by side stay two, where
            # their generous body ROIs would overlap.
            state.tracks.append(_Track(state.next_id, pose.detection_roi(keypoints),
                                       head_box=np.asarray(box, np.float64)))
            state.next_id += 1

    def _deduplicate(self, outputs: list[PersonKeypoints]) -> list[PersonKeypoints]:
        """Drop the younger of two tracks that have converged on one person."""
        survivors: list[PersonKeypoints] = []
        for out in sorted(outputs, key=lambda o: o.track_id):
            boxes = np.stack([kept.xyxy for kept in survivors]) if survivors else None
            if boxes is not None and box_iou(out.xyxy, boxes).max() > self.duplicate_iou:
                continue
            survivors.append(out)
        return survivors

    def _output(self, track: _Track, person: _Person, width: int, height: int) -> PersonKeypoints:
        parts = [person.pose.landmarks[:, :2]]
        if person.face is not None:
            parts.append(person.face[:, :2])
        parts.extend(hand[:, :2] for hand in person.hands.values())
        box = Rect.from_points(np.concatenate(parts)).bounds()
        box = np.clip(box, 0.0, [width, height, width, height])
        left, top, right, bottom = _margin_box(box, width, height, self.crop_margin)
        keypoints = _openpose(person, (left, top), (right - left, bottom - top), True)
        return PersonKeypoints(track.track_id, box, person.pose.presence, keypoints,
                               self.random_weights)

    def process_crops(self, items: Sequence[tuple[np.ndarray, tuple[float, float]]]) -> np.ndarray:
        """Keypoints of the main person in each ``(crop_bgr, offset_xy)``, as (N, 137, 3).

        The meaning of :meth:`MediaPipeKeypoints.process_batch` in static mode: every crop
        on its own (no tracking), the best detection only, body points outside the crop
        dropped, ``offset_xy`` added so the result is in full-frame pixels. All zero where
        nobody is found.
        """
        self._check_open()
        if len(items) == 0:
            return np.zeros((0, *empty_keypoints().shape), dtype=DTYPE)
        images = [_check_frame(crop, f"items[{i}]") for i, (crop, _o) in enumerate(items)]
        out = np.zeros((len(items), *empty_keypoints().shape), dtype=DTYPE)
        usable = [i for i, image in enumerate(images) if image.shape[0] and image.shape[1]]
        found = self._detect([images[i] for i in usable], 1)
        frame_of = [i for i, detections in zip(usable, found, strict=True) if len(detections)]
        rects = [pose.detection_roi(detections.keypoints[0]) for detections in found
                 if len(detections)]
        people = self._landmarks(images, frame_of, rects, [None] * len(rects))
        for i, person in zip(frame_of, people, strict=True):
            if person is not None:
                height, width = images[i].shape[:2]
                keypoints = _openpose(person, (0.0, 0.0), (width, height), True)
                present = keypoints[:, 2] > 0
                keypoints[present, :2] += np.asarray(items[i][1], dtype=DTYPE)
                out[i] = keypoints
        return out

    def reset(self, stream: str) -> None:
        """Forget a stream's tracks (a new source, a seek): its next frame starts afresh."""
        self._streams.pop(stream, None)

    def close(self) -> None:
        """Close the engines this instance holds; it cannot process afterwards."""
        if not self._closed:
            for engine in self._engines.values():
                closer = getattr(engine, "close", None)
                if callable(closer):
                    closer()
            self._streams.clear()
            self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("EngineKeypoints used after close()")

    def __enter__(self) -> EngineKeypoints:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
