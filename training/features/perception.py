"""The perception models feature extraction runs: the live pipeline's own, loaded once.

Extraction must see what serving sees (no train/serve skew), so it runs the live detect
stage's perception core (:mod:`engines.adapters.perception`: the same person choice,
track ids, crops and keypoints) with the keypoint strategy the live features stage pairs
with it, the same :class:`ImageEmbedder` and :class:`TextEmbedder`, all on verified
engines. This module loads them, checks they belong to the profile, and says who they are
(for the store's ``engines`` record, which refuses mixing features from different
engines, person finders or keypoint sources).

Example:
    >>> perception = Perception.from_engine_dir(Path("artifacts/engines/edge"),
    ...                                         get_profile("edge"))  # doctest: +SKIP
    >>> perception.identities()["perception"]  # doctest: +SKIP
    'yolo:yolo11n'
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from engines.adapters.finders import DetectorChoice
from engines.adapters.image_embedder import ImageEmbedder
from engines.adapters.perception import (
    CoreOptions,
    CropKeypoints,
    KeypointChoice,
    PerceptionCore,
    choose_keypoints,
    crop_keypoints_for,
    open_core,
)
from engines.adapters.text_embedder import TextEmbedder
from engines.engine import Backend
from engines.manifest import EngineManifest, build_command
from engines.profiles import Profile

CROP_MARGIN = 0.15
"""Fraction of the box added on each side of a crop: the live detect stage's default."""
MAX_PERSONS = 4
"""Persons the core tracks per video: the live detect stage's default (``detect.max_persons``),
so a video's first person is the one the live pipeline would rank first."""


@dataclass(frozen=True)
class PerceptionChoice:
    """How persons and keypoints are found: the live run's ``detect.detector`` and
    ``keypoints`` settings, with the same meaning and defaults."""

    detector: DetectorChoice = "auto"
    keypoints: KeypointChoice = "auto"
    crop_margin: float = CROP_MARGIN
    max_persons: int = MAX_PERSONS


@dataclass
class Perception:
    """The models of one extraction run: the perception core (each video is one stream of
    it), the per-person keypoint strategy that pairs with it, and the embedders."""

    core: PerceptionCore
    keypoints: CropKeypoints
    image_embedder: ImageEmbedder
    text_embedder: TextEmbedder
    choice: PerceptionChoice = PerceptionChoice()

    @classmethod
    def from_engine_dir(cls, engine_dir: Path, profile: Profile,
                        backend: Backend | str = Backend.AUTO,
                        choice: PerceptionChoice = PerceptionChoice()) -> Perception:
        """Verify and load the profile's engines from ``engine_dir``.

        Raises ValueError when an engine was built for another profile or its width is
        not the profile's (the store would record the wrong dims).
        """
        rate = max(profile.classifier.image_rate, profile.classifier.keypoint_rate)
        source = choose_keypoints(choice.keypoints, engine_dir, str(backend),
                                  profile=profile.name).source
        core = open_core(source, CoreOptions(
            engine_dir=engine_dir, backend=str(backend), detector=choice.detector,
            frame_rate=rate, max_persons=choice.max_persons, crop_margin=choice.crop_margin,
            profile=profile.name))
        try:
            perception = cls(core, crop_keypoints_for(source),
                             ImageEmbedder.from_engine_dir(engine_dir, backend),
                             TextEmbedder.from_engine_dir(engine_dir, backend), choice)
        except BaseException:
            core.close()
            raise
        try:
            perception._check(engine_dir, profile)
        except ValueError:
            perception.close()
            raise
        return perception

    def _check(self, engine_dir: Path, profile: Profile) -> None:
        fix = build_command(profile.name, engine_dir)
        for manifest in self.manifests():
            if manifest.profile != profile.name:
                raise ValueError(f"engine {manifest.name!r} in {engine_dir} was built for "
                                 f"profile {manifest.profile!r}, not {profile.name!r}: pass "
                                 f"--profile {manifest.profile}, or run `{fix}`")
        for name, got, want in (("image", self.image_embedder.dim, profile.image.dim),
                                ("text", self.text_embedder.dim, profile.text.dim)):
            if got != want:
                raise ValueError(f"the {name} embedder in {engine_dir} is {got}-d; profile "
                                 f"{profile.name!r} says {want}-d: run `{fix}`")

    def manifests(self) -> list[EngineManifest]:
        return [self.image_embedder.manifest, self.text_embedder.manifest]

    def identities(self) -> dict[str, str]:
        """Engine name -> ONNX sha256 (embedders, and the core's engines), what finds the
        persons (``perception``) and what makes the keypoints (``keypoints``)."""
        ids = {m.name: m.onnx_sha256 for m in self.manifests()}
        ids.update(self.core.identities())
        ids["perception"] = self.core.name
        ids["keypoints"] = self.keypoints.identity()
        return ids

    @property
    def random_weights(self) -> bool:
        return self.core.random_weights or any(m.random_weights for m in self.manifests())

    def close(self) -> None:
        self.core.close()
        self.keypoints.close()
        self.image_embedder.close()
        self.text_embedder.close()
