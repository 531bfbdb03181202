"""``hidemo features extract``: a manifest's videos through the perception engines, into a store.

For each manifest row: decode the video (:mod:`training.features.video`), decimate to the
profile's analysis rates, detect and crop the main person, embed crops and find keypoints
(:mod:`training.features.frames`), embed the transcript, and ``store.put`` the result. The
keypoints come from the row's OpenPose skeleton folder instead when it has one and
``skeletons`` is ``prefer`` (then a row needs no video at all: keypoints only).

Long runs must survive bad inputs and interruptions:

- A video already in the store is skipped (the store writes each video atomically), so a
  killed run resumes where it stopped.
- A missing, unreadable or corrupt input fails only its own video: it is logged with what
  to do and listed in the :class:`ExtractSummary`. Errors that are not about one input
  (an engine refused, a bug) stop the run, since every later video would fail the same way.
- The store records every engine's identity and the settings below; a store made with
  other engines or settings is refused rather than silently mixed.

Example:
    >>> summary = extract_manifest(rows, store, perception, settings)  # doctest: +SKIP
    >>> summary.exit_code  # doctest: +SKIP
    0
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from training.data.imigue import IMIGUE_FPS, read_skeletons
from training.data.manifest import ManifestRow, load_transcript
from training.features.frames import CROP_MARGIN, FrameFeatures, NoPerson, due_selector
from training.features.perception import Perception
from training.features.store import FeatureStore, StoreInfo, VideoFeatures
from training.features.video import VideoError, VideoReader

logger = logging.getLogger(__name__)

INPUT_ERRORS = (VideoError, OSError, ValueError, cv2.error)
"""What a bad input raises (missing file, corrupt video or JSON, bad transcript path);
such a video is reported and skipped. Anything else stops the run."""


class Skeletons(StrEnum):
    """Where keypoints come from when the manifest names a skeleton folder."""

    PREFER = "prefer"
    IGNORE = "ignore"


@dataclass(frozen=True)
class ExtractSettings:
    """How features are made; recorded in the store (``StoreInfo.extra``)."""

    image_rate: float
    keypoint_rate: float
    no_person: NoPerson = NoPerson.SKIP
    skeletons: Skeletons = Skeletons.PREFER
    skeleton_fps: float = IMIGUE_FPS
    """Frame rate of skeleton frame numbers for rows without a video (with a video, the
    video's own rate is used)."""
    crop_margin: float = CROP_MARGIN
    batch_size: int = 16

    def recorded(self) -> dict[str, Any]:
        """The settings that change the features (not speed): what a store must agree on."""
        data = asdict(self)
        del data["batch_size"]
        data["no_person"] = self.no_person.value
        data["skeletons"] = self.skeletons.value
        data["image_output"] = "cls"
        return data


@dataclass
class ExtractSummary:
    """What happened to each video of a run."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Already in the store."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """``(video_id, reason)``."""

    @property
    def exit_code(self) -> int:
        """1 only when every video failed (nothing extracted, nothing already there)."""
        return 1 if self.failed and not self.done and not self.skipped else 0

    def lines(self) -> list[str]:
        out = [f"features: {len(self.done)} extracted, {len(self.skipped)} already in the "
               f"store (skipped), {len(self.failed)} failed"]
        out += [f"  failed {video_id}: {reason}" for video_id, reason in self.failed]
        return out


def store_info(profile_name: str, perception: Perception,
               settings: ExtractSettings) -> StoreInfo:
    """The store description of features made by ``perception`` with ``settings``."""
    if perception.choice.crop_margin != settings.crop_margin:
        raise ValueError(f"the perception core crops with margin "
                         f"{perception.choice.crop_margin}, the settings say "
                         f"{settings.crop_margin}: open it with the settings' margin")
    return StoreInfo(profile=profile_name, image_dim=perception.image_embedder.dim,
                     text_dim=perception.text_embedder.dim, image_rate=settings.image_rate,
                     keypoint_rate=settings.keypoint_rate, engines=perception.identities(),
                     random_weights=perception.random_weights, source="extract",
                     extra={"settings": settings.recorded()})


def open_store(root: Path, info: StoreInfo) -> FeatureStore:
    """Create or reopen the store; refuse one whose extraction settings differ."""
    store = FeatureStore.create(root, info)
    theirs = store.info.extra.get("settings")
    mine = info.extra["settings"]
    if theirs != mine:
        raise ValueError(f"feature store {root} was extracted with settings {theirs}, not "
                         f"{mine}; use a new --out folder or the same settings")
    return store


def extract_manifest(rows: Sequence[ManifestRow], store: FeatureStore, perception: Perception,
                     settings: ExtractSettings, *, progress: bool | None = None) -> ExtractSummary:
    """Extract every row not yet in ``store``; bad inputs are logged, skipped and summarised.

    ``progress``: show tqdm bars (None: only on a terminal).
    """
    summary = ExtractSummary()
    disable = None if progress is None else not progress
    with logging_redirect_tqdm(), tqdm(total=len(rows), desc="videos", unit="video",
                                       disable=disable) as overall:
        for row in rows:
            overall.set_postfix_str(row.video_id)
            if row.video_id in store:
                summary.skipped.append(row.video_id)
            else:
                try:
                    store.put(extract_video(row, perception, settings, disable=disable))
                    summary.done.append(row.video_id)
                except INPUT_ERRORS as error:
                    reason = str(error) or type(error).__name__
                    logger.warning("skipping video %s: %s", row.video_id, reason)
                    summary.failed.append((row.video_id, reason))
            overall.update(1)
    return summary


def extract_video(row: ManifestRow, perception: Perception, settings: ExtractSettings, *,
                  disable: bool | None = None) -> VideoFeatures:
    """One row's features. Raises one of :data:`INPUT_ERRORS` for a bad input."""
    skeleton_dir = row.skeleton_dir if settings.skeletons is Skeletons.PREFER else ""
    transcript = load_transcript(row)
    if not row.path and not skeleton_dir:
        raise VideoError(f"video {row.video_id} has no video path" + (
            " and skeletons are ignored (--skeletons ignore)" if row.skeleton_dir else
            " and no skeleton folder") + ": fill in the manifest's path")
    if row.path:
        with VideoReader(Path(row.path)) as video:
            features = _from_video(row, video, skeleton_dir, perception, settings, disable)
    else:
        features = _from_skeletons(row, Path(skeleton_dir), settings,
                                   perception.image_embedder.dim)
    if transcript is not None:
        features.transcript = transcript
        features.text = perception.text_embedder.embed([transcript]).vectors[0]
    features.meta["random_weights"] = perception.random_weights
    return features


def _from_video(row: ManifestRow, video: VideoReader, skeleton_dir: str,
                perception: Perception, settings: ExtractSettings,
                disable: bool | None) -> VideoFeatures:
    skeleton = (read_skeletons(skeleton_dir, settings.keypoint_rate, video.info.fps)
                if skeleton_dir else None)
    with FrameFeatures(perception, stream=row.video_id, batch_size=settings.batch_size,
                       no_person=settings.no_person) as frames:
        select = due_selector(settings.image_rate,
                              settings.keypoint_rate if skeleton is None else None)
        with tqdm(total=video.info.frame_count or None, desc=row.video_id, unit="frame",
                  leave=False, disable=disable) as bar:
            for frame in video.frames(select, progress=bar.update):
                frames.add(frame)
        image_times, image, keypoint_times, keypoints = frames.finish()
    if skeleton is not None:
        keypoint_times, keypoints = skeleton
    if video.decoded < 0.9 * video.info.frame_count:
        logger.warning("video %s: decoded %d of the %d frames its header announces (truncated "
                       "or damaged?); keeping what decoded", video.path, video.decoded,
                       video.info.frame_count)
    meta = {"path": str(video.path), "fps": video.info.fps, "frames": video.decoded,
            "size": [video.info.width, video.info.height],
            "keypoint_source": ("openpose" if skeleton is not None
                                else perception.keypoints.source.value),
            "skeleton_dir": skeleton_dir, "person_frames": frames.person_frames,
            "no_person_frames": frames.no_person_frames}
    return VideoFeatures(video_id=row.video_id, label=row.label, subject=row.subject,
                         split=row.split, duration=video.duration, image_times=image_times,
                         image=image, keypoint_times=keypoint_times, keypoints=keypoints,
                         meta=meta)


def _from_skeletons(row: ManifestRow, skeleton_dir: Path, settings: ExtractSettings,
                    image_dim: int) -> VideoFeatures:
    """A keypoints-only video: no image embeddings (the window masks them)."""
    times, keypoints = read_skeletons(skeleton_dir, settings.keypoint_rate, settings.skeleton_fps)
    duration = float(times[-1]) + 1.0 / settings.keypoint_rate
    return VideoFeatures(
        video_id=row.video_id, label=row.label, subject=row.subject, split=row.split,
        duration=duration, image_times=np.zeros(0), image=np.zeros((0, image_dim), np.float32),
        keypoint_times=times, keypoints=keypoints,
        meta={"path": "", "fps": settings.skeleton_fps, "keypoint_source": "openpose",
              "skeleton_dir": str(skeleton_dir)},
    )
