"""Features: image embeddings and keypoints per person crop, each at its own analysis rate.

For every (stream, person) one :class:`RateSampler` per modality decides whether this crop
is due for an image embedding and/or keypoints (the same slot rule as training's feature
extraction). Due crops of the whole batch go through the image embedder in one call;
keypoints come from MediaPipe Holistic, CPU-bound and one crop at a time, with one tracker
per (stream, person) so its video mode follows the same person. Replicas may run side by
side (detect's PUSH spreads frames over them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from engines.adapters.image_embedder import ImageEmbedder
from engines.adapters.keypoints import MediaPipeKeypoints
from engines.adapters.rates import RateSampler
from stream.stage import BatchStage
from stream.wire import MAX_DIM, Message, Person, WireError

IDLE_FORGET_S = 10.0
"""A person unseen for this long (media time) loses its MediaPipe tracker and samplers."""
MAX_PERSONS_PER_STREAM = 16
"""Persons (each with a MediaPipe graph of ~100 MB) one stream may hold at once; beyond
it the least recently seen is closed, so state stays bounded whatever track ids come."""


@dataclass
class _Person:
    image: RateSampler
    keypoints: RateSampler
    tracker: MediaPipeKeypoints | None = None
    last_seen: float = 0.0


class FeaturesStage(BatchStage):
    name = "features"

    def __init__(self, embedder: ImageEmbedder, keypoints_factory: Callable[[], Any], *,
                 image_rate: float, keypoint_rate: float) -> None:
        self.embedder = embedder
        self.keypoints_factory = keypoints_factory
        self.image_rate = image_rate
        self.keypoint_rate = keypoint_rate
        self._persons: dict[tuple[str, int, int], _Person] = {}
        self._spare: list[Any] = []
        self.images = 0
        self.keypoint_frames = 0

    def warm_up(self, crop_hw: tuple[int, int] = (256, 192)) -> None:
        """Load one keypoint tracker and the image engine before the first live crop (the
        first MediaPipe call takes about a second); the first person gets that tracker."""
        blank = np.zeros((*crop_hw, 3), np.uint8)
        tracker = self.keypoints_factory()
        tracker.process(blank)
        self._spare.append(tracker)
        self.embedder.embed([blank])

    def admit(self, message: Message) -> None:
        """Each person ``i`` comes with its crop ``crop{i}`` (uint8, h x w x 3), and only
        those arrays."""
        persons = message.header.meta.persons
        if set(message.arrays) != {f"crop{i}" for i in range(len(persons))}:
            raise WireError("crops do not match the persons listed", "arrays")
        for crop in message.arrays.values():
            if (crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3
                    or not 1 <= min(crop.shape[:2]) <= max(crop.shape[:2]) <= MAX_DIM):
                raise WireError(f"crop is {crop.dtype} {crop.shape}; expected uint8 h x w x 3",
                                "arrays")

    def _person(self, key: tuple[str, int, int], media_time: float) -> _Person:
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

    def _close(self, key: tuple[str, int, int]) -> None:
        person = self._persons.pop(key)
        if person.tracker is not None:
            person.tracker.close()

    def process(self, batch: list[Message]) -> list[Message]:
        t_in = time.monotonic()
        crops: list[np.ndarray] = []
        plans = []
        for message in batch:
            header = message.header
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
                    if person.tracker is None:
                        person.tracker = (self._spare.pop() if self._spare
                                          else self.keypoints_factory())
                    keypoints = person.tracker.process(crop, info.offset)
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
            persons=tuple(persons), random_weights=tuple(sorted(random_weights)),
        ).stamped(self.name, t_in, time.monotonic(), message.arrived)
        return Message(header, arrays)

    def _forget(self, batch: list[Message]) -> None:
        """Close trackers of persons not seen for a while (media time of their own stream)."""
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
            self._close(key)
        return [message]

    def extra_status(self) -> dict[str, Any]:
        return {"images": self.images, "keypoint_frames": self.keypoint_frames,
                "persons": len(self._persons)}

    def close(self) -> None:
        for person in self._persons.values():
            if person.tracker is not None:
                person.tracker.close()
        self.embedder.close()


def keypoints_factory() -> MediaPipeKeypoints:
    """Holistic in video mode, one per (stream, person)."""
    return MediaPipeKeypoints(static_image_mode=False)
