"""What a VLM teacher is shown of a video: a few frames spread evenly over it, as JPEGs.

The images come through the same code the classifier's features do: the video is decoded
by :class:`training.features.video.VideoReader` (frame times from the container's frame
rate) and, with ``crop: person``, each frame is cut to the most prominent person by the
perception core (:mod:`engines.adapters.perception`: same finder, prominence and crop
margin as the live detect stage), so the teacher judges the person the student will see.
A frame where the core finds nobody is shown whole (and counted), rather than dropped,
so the teacher still sees the whole time line.

Each sampled frame is a fresh stream generation for the core: frames seconds apart are
not a track, and a tracker would hold back a person it saw only once.

Example:
    >>> sampling = Sampling(frames=8, crop=CropMode.FRAME)
    >>> images = sample_video(Path("talk.mp4"), sampling)  # doctest: +SKIP
    >>> [round(image.time_s, 1) for image in images]  # doctest: +SKIP
    [3.7, 11.2, ...]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engines.adapters.perception import PerceptionCore, PerceptionFrame
from training.features.video import VideoError, VideoReader
from training.pseudo.records import CropMode, SampledImage, Sampling

log = logging.getLogger(__name__)

STREAM = "pseudo-label"
"""The core's stream name for the video being sampled (released after each video)."""


@dataclass(frozen=True)
class SampledVideo:
    """The images sent for one video, and how many frames had no person (shown whole)."""

    images: tuple[SampledImage, ...]
    no_person: int = 0


def check_sampling(sampling: Sampling) -> None:
    """Raise ValueError naming the setting when ``sampling`` cannot make images."""
    if sampling.frames < 1:
        raise ValueError(f"frames is {sampling.frames}; a teacher needs at least 1 image")
    if sampling.size < 16:
        raise ValueError(f"size is {sampling.size}; images need a longest side of at "
                         "least 16 pixels")
    if not 1 <= sampling.jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality is {sampling.jpeg_quality}; use 1 to 100")


def target_indices(frame_count: int, count: int) -> list[int]:
    """The indices of ``count`` frames spread evenly over ``frame_count``: the middle of
    equal slices (never the first black frame or a last frame an encoder cut short); fewer
    when the video has fewer frames."""
    return sorted({min(frame_count - 1, int((index + 0.5) * frame_count / count))
                   for index in range(count)})


def _read_frames(path: Path, count: int) -> list[tuple[float, np.ndarray]]:
    """``count`` frames (time, BGR image) evenly over the video.

    One decoding pass when the container states its length truly; when it does not (no
    count, or one the decoder disagrees with), a second pass with the decoded length.
    """
    stated: list[int] = []
    picked: list[tuple[float, np.ndarray]] = []
    with VideoReader(path) as video:
        fps, frame_count = video.info.fps, video.info.frame_count
        if frame_count > 0:
            stated = target_indices(frame_count, count)
            picked = [(f.time, f.image) for f in video.frames(_selector(stated, fps))]
        else:
            for _ in video.frames(lambda _time: None):
                pass
        decoded = video.decoded
    true = target_indices(decoded, count)
    if true == stated and len(picked) == len(true):
        return picked
    log.debug("video %s: the container says %d frames, the decoder found %d; reading it "
              "again", path, frame_count, decoded)
    with VideoReader(path) as video:
        return [(f.time, f.image) for f in video.frames(_selector(true, fps))]


def _selector(indices: list[int], fps: float) -> Callable[[float], bool | None]:
    """A :meth:`VideoReader.frames` selector of the frames at ``indices``."""
    wanted = set(indices)
    return lambda time: True if round(time * fps) in wanted else None


def resize_longest(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` scaled (aspect kept) so that its longest side is ``size`` pixels."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale == 1.0:
        return image
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
    return cv2.resize(image, shape, interpolation=interpolation)


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as JPEG")
    return data.tobytes()


def sample_frames(path: Path | str, sampling: Sampling,
                  core: PerceptionCore | None = None) -> SampledVideo:
    """The images of :func:`sample_video`, with the count of frames that had no person.

    Raises :class:`VideoError` (naming the file and the fix) for a missing, unreadable or
    empty video, and ValueError when ``crop`` is person but no ``core`` was given.
    """
    path = Path(path)
    check_sampling(sampling)
    if sampling.crop is CropMode.PERSON and core is None:
        raise ValueError("crop: person needs a perception core (or use crop: frame)")
    frames = _read_frames(path, sampling.frames)
    if not frames:
        raise VideoError(f"video {path}: no frame could be decoded at the sampled times: "
                         "re-encode it")
    images, no_person = [], 0
    for generation, (time, image) in enumerate(frames):
        picture = image
        if sampling.crop is CropMode.PERSON and core is not None:
            persons = core.perceive([PerceptionFrame(STREAM, generation, image)])[0]
            if persons:
                picture = persons[0].crop
            else:
                no_person += 1
        images.append(SampledImage(encode_jpeg(resize_longest(picture, sampling.size),
                                               sampling.jpeg_quality), time))
    if core is not None:
        core.release(STREAM)
    if no_person:
        log.info("video %s: no person found in %d of %d frames; those are shown whole",
                 path, no_person, len(images))
    return SampledVideo(tuple(images), no_person)


def sample_video(path: Path | str, sampling: Sampling,
                 core: PerceptionCore | None = None) -> tuple[SampledImage, ...]:
    """``sampling.frames`` JPEG images spread evenly over the video at ``path``, in time
    order: the most prominent person's crop (``crop: person``, the whole frame where
    nobody is found) or the whole frame, longest side ``sampling.size``."""
    return sample_frames(path, sampling, core).images


CoreFactory = Callable[[], PerceptionCore]
"""Opens the perception core when the first video needs it (never for a cached run)."""


def open_person_core(engine_dir: Path, detector: str = "auto", backend: str = "auto",
                     profile: str = "<profile>") -> PerceptionCore:
    """The perception core that finds the person to crop: the live detect stage's finder
    (``detector``: the profile's YOLO engine, MediaPipe Pose, or ``auto``) with ByteTrack,
    prominence and the crop margin of feature extraction; no keypoints.

    ``auto`` with no detector engine built in ``engine_dir`` takes MediaPipe Pose (real
    weights inside the wheel, one person per frame): labelling needs no engine build.
    """
    from engines.adapters.perception import CoreOptions, KeypointSource, open_core
    from engines.manifest import EngineMissing
    from training.features.perception import CROP_MARGIN, MAX_PERSONS

    def options(chosen: str) -> CoreOptions:
        return CoreOptions(engine_dir=engine_dir, backend=backend, detector=chosen,
                           frame_rate=1.0, max_persons=MAX_PERSONS, crop_margin=CROP_MARGIN,
                           profile=profile)

    try:
        return open_core(KeypointSource.MEDIAPIPE, options(detector))
    except EngineMissing as missing:
        if detector != "auto":
            raise
        log.info("no detector engine in %s (%s); MediaPipe Pose finds the person",
                 engine_dir, str(missing).splitlines()[0])
        return open_core(KeypointSource.MEDIAPIPE, options("mediapipe"))
