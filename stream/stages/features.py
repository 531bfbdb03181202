"""Features: image embeddings and keypoints per person crop, each at its own analysis rate.

For every (stream, person) one :class:`RateSampler` per modality decides whether this crop
is due for an image embedding and/or keypoints (the same slot rule as training's feature
extraction). Due crops of the whole batch go through the image embedder in one call.
Keypoints come from the run's :class:`CropKeypoints` strategy: MediaPipe Holistic on the
crop, one video-mode graph per (stream, person) (``keypoints: mediapipe``), or the
keypoints detect's perception core made and shipped with the crop (``keypoints: engines``).
Replicas may run side by side (detect's PUSH spreads frames over them).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engines.adapters.image_embedder import ImageEmbedder
from engines.adapters.openpose_layout import NUM_CHANNELS, NUM_KEYPOINTS
from engines.adapters.perception import CropKeypoints, KeypointSource, PersonKey
from engines.adapters.rates import RateSampler
from stream.stages.loop import BatchStage
from stream.strictjson import JsonDict
from stream.transport.wire import MAX_DIM, MAX_PIXELS, Message, Person, WireError

IDLE_FORGET_S = 10.0
"""A person unseen for this long (media time) loses its samplers and keypoint state."""
MAX_PERSONS_PER_STREAM = 16
"""Persons one stream may hold state for at once (a MediaPipe graph is ~100 MB); beyond it
the least recently seen is closed, so state stays bounded whatever track ids come."""


@dataclass
class _Person:
    image: RateSampler
    keypoints: RateSampler
    last_seen: float = 0.0


class FeaturesStage(BatchStage):
    name = "features"

    def __init__(self, embedder: ImageEmbedder, keypoints: CropKeypoints, *,
                 image_rate: float, keypoint_rate: float) -> None:
        self.embedder = embedder
        self.keypoints = keypoints
        self.shipped = keypoints.source is KeypointSource.ENGINES
        """Whether every person arrives with its keypoints (detect's core made them)."""
        self.image_rate = image_rate
        self.keypoint_rate = keypoint_rate
        self._persons: dict[PersonKey, _Person] = {}
        self.images = 0
        self.keypoint_frames = 0

    def warm_up(self, crop_hw: tuple[int, int] = (256, 192)) -> None:
        """Load the keypoint models and the image engine before the first live crop (the
        first MediaPipe call takes about a second)."""
        self.keypoints.warm_up(crop_hw)
        self.embedder.embed([np.zeros((*crop_hw, 3), np.uint8)])

    def admit(self, message: Message) -> None:
        """Each person ``i`` comes with its crop ``crop{i}`` (uint8, h x w x 3); with shipped
        keypoints (``keypoints: engines``) also with row ``Person.keypoints`` of
        ``keypoints`` (float32, N x 137 x 3, one row per person, pixels within the wire's
        bound, confidences in [0, 1]); nothing else."""
        persons = message.header.meta.persons
        expected = {f"crop{i}" for i in range(len(persons))}
        if self.shipped and persons:
            expected.add("keypoints")
        if set(message.arrays) != expected:
            raise WireError("arrays do not match the persons listed", "arrays")
        for name, array in message.arrays.items():
            if name != "keypoints" and (
                    array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3
                    or not 1 <= min(array.shape[:2]) <= max(array.shape[:2]) <= MAX_DIM):
                raise WireError(f"crop is {array.dtype} {array.shape}; expected uint8 "
                                "h x w x 3", "arrays")
        slots = sorted(person.keypoints for person in persons)
        if slots != (list(range(len(persons))) if self.shipped and persons else
                     [-1] * len(persons)):
            raise WireError("persons' keypoint rows are not one each" if self.shipped
                            else "keypoints came, but this run makes its own", "arrays")
        if "keypoints" in message.arrays:
            _check_keypoints(message.arrays["keypoints"], len(persons))

    def _person(self, key: PersonKey, media_time: float) -> _Person:
        person = self._persons.get(key)
        if person is None:
            self._make_room(key[0])
            person = _Person(RateSampler(self.image_rate), RateSampler(self.keypoint_rate))
            self._persons[key] = person
        person.last_seen = media_time
        return person

    def _make_room(self, stream: str) -> None:
        """Close the least recently seen persons of ``stream`` beyond the bound."""
        mine = [k for k in self._persons if k[0] == stream]
        if len(mine) < MAX_PERSONS_PER_STREAM:
            return
        mine.sort(key=lambda k: self._persons[k].last_seen)
        for key in mine[:len(mine) - MAX_PERSONS_PER_STREAM + 1]:
            self._close(key)

    def _close(self, key: PersonKey) -> None:
        del self._persons[key]
        self.keypoints.forget(key)

    def process(self, batch: list[Message]) -> list[Message]:
        t_in = time.monotonic()
        crops: list[np.ndarray] = []
        plans = []
        for message in batch:
            header = message.header
            shipped = message.arrays.get("keypoints")
            plan = []
            for index, info in enumerate(header.meta.persons):
                key = (header.stream, header.generation, info.track_id)
                person = self._person(key, header.media_time)
                crop = message.arrays[f"crop{index}"]
                image_slot = -1
                if person.image.take(header.media_time):
                    image_slot = len(crops)
                    crops.append(crop)
                keypoints = None
                if person.keypoints.take(header.media_time):
                    given = shipped[info.keypoints] if info.keypoints >= 0 else None
                    keypoints = self.keypoints.keypoints(key, crop, info.offset, given)
                plan.append((info, image_slot, keypoints))
            plans.append(plan)
        embeddings = self.embedder.embed(crops).cls if crops else None
        out = [self._result(message, plan, embeddings, t_in)
               for message, plan in zip(batch, plans, strict=True)]
        self._forget(batch)
        return out

    def _result(self, message: Message, plan: list, embeddings: np.ndarray | None,
                t_in: float) -> Message:
        persons, images, keypoints = [], [], []
        for info, image_slot, person_keypoints in plan:
            image_row = keypoints_row = -1
            if image_slot >= 0 and embeddings is not None:
                image_row = len(images)
                images.append(embeddings[image_slot])
            if person_keypoints is not None:
                keypoints_row = len(keypoints)
                keypoints.append(person_keypoints)
            persons.append(Person(info.track_id, info.score, info.box, info.offset,
                                  image=image_row, keypoints=keypoints_row))
        self.images += len(images)
        self.keypoint_frames += len(keypoints)
        arrays = {}
        if images:
            arrays["image"] = np.stack(images).astype(np.float32, copy=False)
        if keypoints:
            arrays["keypoints"] = np.stack(keypoints).astype(np.float32, copy=False)
        random_weights = set(message.header.meta.random_weights)
        if self.embedder.random_weights:
            random_weights.add("image_embedder")
        header = message.header.with_meta(
            persons=tuple(persons), keypoints=self.keypoints.source.value,
            random_weights=tuple(sorted(random_weights)),
        ).stamped(self.name, t_in, time.monotonic(), message.arrived)
        return Message(header, arrays)

    def _forget(self, batch: list[Message]) -> None:
        """Close the state of persons not seen for a while (media time of their stream)."""
        newest: dict[str, float] = {}
        for message in batch:
            stream = message.header.stream
            newest[stream] = max(newest.get(stream, 0.0), message.header.media_time)
        for key, person in list(self._persons.items()):
            now = newest.get(key[0])
            if now is not None and abs(now - person.last_seen) > IDLE_FORGET_S:
                self._close(key)

    def on_control(self, message: Message) -> list[Message]:
        stream = message.header.stream
        for key in [k for k in self._persons if k[0] == stream]:
            del self._persons[key]
        self.keypoints.release(stream)
        return [message]

    def extra_status(self) -> JsonDict:
        return {"images": self.images, "keypoint_frames": self.keypoint_frames,
                "persons": len(self._persons), "keypoints": self.keypoints.source.value}

    def close(self) -> None:
        self.keypoints.close()
        self.embedder.close()


def _check_keypoints(keypoints: np.ndarray, persons: int) -> None:
    """Shipped keypoints: float32 (persons, 137, 3), pixels within the wire's bound and
    confidences in [0, 1] (the wire already refused NaN and infinity)."""
    if keypoints.dtype != np.float32 or keypoints.shape != (persons, NUM_KEYPOINTS,
                                                            NUM_CHANNELS):
        raise WireError(f"keypoints are {keypoints.dtype} {keypoints.shape}; expected float32 "
                        f"({persons}, {NUM_KEYPOINTS}, {NUM_CHANNELS})", "arrays")
    if np.abs(keypoints[..., :2]).max(initial=0.0) > MAX_PIXELS:
        raise WireError("keypoint coordinates beyond the wire's pixel bound", "arrays")
    confidence = keypoints[..., 2]
    if confidence.size and (confidence.min() < 0.0 or confidence.max() > 1.0):
        raise WireError("keypoint confidences outside [0, 1]", "arrays")
