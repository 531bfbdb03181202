"""The feature store: one file per video of time-stamped per-frame features.

A video's features are what the live pipeline's engines produced for it at the configured
analysis rates: image embeddings with their times, raw OpenPose-layout keypoints with their
times, and the transcript with its embedding. Training builds windows from them with the
same grid code the live pipeline uses (:mod:`engines.adapters.windows`).

Layout: ``ROOT/<video_id>.npz`` per video (written to a temporary name and renamed, so a
killed extraction never leaves a half file that looks complete) plus ``ROOT/store.json``
describing the store (profile, embedding widths, rates, engine identities).

Example:
    >>> store = FeatureStore.create(Path("artifacts/features/x"), StoreInfo("tiny", 96, 64,
    ...                             2.0, 5.0))  # doctest: +SKIP
    >>> store.put(video)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engines.adapters.openpose_layout import NUM_CHANNELS, NUM_KEYPOINTS

STORE_FILE = "store.json"
STORE_VERSION = 1


@dataclass(frozen=True)
class StoreInfo:
    """What every video in a store shares: the profile, widths, and analysis rates."""

    profile: str
    image_dim: int
    text_dim: int
    image_rate: float
    keypoint_rate: float
    engines: dict[str, str] = field(default_factory=dict)
    """Engine name -> ONNX sha256 (or a generator's description) the features came from."""
    random_weights: bool = False
    source: str = "extract"
    """``extract`` (real videos through the engines) or ``synthetic``."""
    extra: dict[str, Any] = field(default_factory=dict)
    version: int = STORE_VERSION


@dataclass
class VideoFeatures:
    """Everything stored for one video. Times are seconds from the video's start.

    ``label`` is the class index (0 negative / lose, 1 positive / win) or None when unknown.
    ``keypoints`` are raw pixel coordinates (N, 137, 3), confidence 0 where missing.
    ``text`` is the transcript's embedding (Dtxt,) or None when there is no transcript.
    """

    video_id: str
    label: int | None
    subject: str
    split: str
    duration: float
    image_times: np.ndarray
    image: np.ndarray
    keypoint_times: np.ndarray
    keypoints: np.ndarray
    transcript: str | None = None
    text: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image_times = np.asarray(self.image_times, np.float64).reshape(-1)
        self.image = np.asarray(self.image, np.float32)
        self.keypoint_times = np.asarray(self.keypoint_times, np.float64).reshape(-1)
        self.keypoints = np.asarray(self.keypoints, np.float32)
        if self.image.ndim != 2 or len(self.image) != len(self.image_times):
            raise ValueError(f"video {self.video_id}: image {self.image.shape} must be (N, D) "
                             f"with one time each ({len(self.image_times)} times)")
        if (self.keypoints.shape[1:] != (NUM_KEYPOINTS, NUM_CHANNELS)
                or len(self.keypoints) != len(self.keypoint_times)):
            raise ValueError(f"video {self.video_id}: keypoints {self.keypoints.shape} must be "
                             f"(N, {NUM_KEYPOINTS}, {NUM_CHANNELS}) with one time each")
        if self.text is not None:
            self.text = np.asarray(self.text, np.float32).reshape(-1)


class FeatureStore:
    """A folder of :class:`VideoFeatures`, one ``.npz`` each, plus ``store.json``."""

    def __init__(self, root: Path, info: StoreInfo) -> None:
        self.root = Path(root)
        self.info = info

    @classmethod
    def create(cls, root: Path, info: StoreInfo) -> FeatureStore:
        """Open ``root`` for writing; an existing store must describe the same features."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        path = root / STORE_FILE
        if path.is_file():
            existing = cls.open(root)
            mine = {k: v for k, v in asdict(info).items() if k not in ("extra", "engines")}
            theirs = {k: v for k, v in asdict(existing.info).items()
                      if k not in ("extra", "engines")}
            if mine != theirs or existing.info.engines != info.engines:
                raise ValueError(
                    f"feature store {root} was made with different settings or engines "
                    f"({theirs}, engines {existing.info.engines}); use a new --out folder or "
                    "delete this one to re-extract"
                )
            return existing
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(asdict(info), indent=2, sort_keys=True))
        os.replace(tmp, path)
        return cls(root, info)

    @classmethod
    def open(cls, root: Path) -> FeatureStore:
        path = Path(root) / STORE_FILE
        if not path.is_file():
            raise FileNotFoundError(
                f"{root} is not a feature store (no {STORE_FILE}); make one with "
                "`hidemo features extract` or `hidemo train --data synthetic`"
            )
        data = json.loads(path.read_text())
        if data.get("version") != STORE_VERSION:
            raise ValueError(f"feature store {root} has version {data.get('version')}; this "
                             f"hidemo reads {STORE_VERSION}: re-extract it")
        return cls(Path(root), StoreInfo(**data))

    def path(self, video_id: str) -> Path:
        return self.root / f"{video_id}.npz"

    def __contains__(self, video_id: str) -> bool:
        return self.path(video_id).is_file()

    def video_ids(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.npz"))

    def put(self, video: VideoFeatures) -> Path:
        """Write one video atomically (temporary file, then rename)."""
        path = self.path(video.video_id)
        tmp = path.with_name(f".{path.stem}.tmp.npz")
        header = {"video_id": video.video_id, "label": video.label, "subject": video.subject,
                  "split": video.split, "duration": video.duration,
                  "transcript": video.transcript, "meta": video.meta}
        arrays = {"image_times": video.image_times, "image": video.image,
                  "keypoint_times": video.keypoint_times, "keypoints": video.keypoints}
        if video.text is not None:
            arrays["text"] = video.text
        with open(tmp, "wb") as handle:
            np.savez(handle, header=np.array(json.dumps(header)), **arrays)
        os.replace(tmp, path)
        return path

    def get(self, video_id: str) -> VideoFeatures:
        path = self.path(video_id)
        if not path.is_file():
            raise FileNotFoundError(f"feature store {self.root} has no video {video_id!r}")
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            return VideoFeatures(
                video_id=header["video_id"], label=header["label"], subject=header["subject"],
                split=header["split"], duration=header["duration"],
                image_times=data["image_times"], image=data["image"],
                keypoint_times=data["keypoint_times"], keypoints=data["keypoints"],
                transcript=header["transcript"],
                text=data["text"] if "text" in data.files else None, meta=header["meta"],
            )

    def load_all(self) -> list[VideoFeatures]:
        return [self.get(video_id) for video_id in self.video_ids()]
