"""A video of several real people who enter and leave the frame, with speech (espeak-ng).

Not a test module. There is no street clip here and no internet; the people are the real
photographs that ship with ultralytics (``assets/zidane.jpg``: 2 people, ``assets/bus.jpg``:
4), laid side by side with an empty stretch between them; a camera pans slowly across and
back while zooming in and out, so people come into view, leave it and come back. The speech
track is espeak-ng's (as in :mod:`speech_video`), one sentence every few seconds.
"""

from __future__ import annotations

import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from speech_video import Spoken, speak

SENTENCES = (
    "I am happy with how I played today.",
    "The match was hard but we won in the end.",
    "My serve felt strong and my legs were fresh.",
    "I want to thank the crowd for their support.",
    "The wind made the second set difficult.",
    "We will rest now and prepare for the final.",
    "My coach told me to stay patient.",
    "I think the best is still to come.",
)
PHOTOS = ("zidane.jpg", "bus.jpg")
HEIGHT = 480
GAP = 360
"""Pixels of empty backdrop between the photos: the camera passes over nobody there."""


@dataclass(frozen=True)
class PeopleVideo:
    path: Path
    spoken: list[Spoken]
    seconds: float
    fps: float


def photo_paths() -> list[Path]:
    """The ultralytics sample photos (installed with the package)."""
    from importlib.resources import files

    assets = files("ultralytics") / "assets"
    return [Path(str(assets / name)) for name in PHOTOS]


def panorama() -> np.ndarray:
    """The photos at one height, an empty grey gradient between them."""
    photos = []
    for path in photo_paths():
        image = cv2.imread(str(path))
        if image is None:
            raise FileNotFoundError(path)
        scale = HEIGHT / image.shape[0]
        photos.append(cv2.resize(image, (round(image.shape[1] * scale), HEIGHT),
                                 interpolation=cv2.INTER_AREA))
    ramp = np.linspace(70, 120, GAP, dtype=np.uint8)
    gap = np.repeat(np.tile(ramp, (HEIGHT, 1))[:, :, None], 3, axis=2)
    return np.hstack([photos[0], gap, photos[1]])


def camera(t: float, seconds: float, width: int) -> tuple[float, float]:
    """Where the camera looks at time ``t``: the centre's x on the panorama and the view's
    height (zoom). Left to right over the first half, back over the second; the zoom
    breathes between the full height and 60% of it."""
    phase = t / seconds
    along = 2 * phase if phase < 0.5 else 2 - 2 * phase
    view_h = HEIGHT * (0.8 + 0.2 * np.cos(2 * np.pi * 3 * phase))
    half = view_h * 4 / 3 / 2
    return half + along * (width - 2 * half), view_h


def write_frames(path: Path, seconds: float, fps: float, size: tuple[int, int]) -> Path:
    """The panning shot as an MJPG .avi of ``size`` (width, height)."""
    scene = panorama()
    width_out, height_out = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise RuntimeError(f"cannot write a video to {path}")
    try:
        for index in range(round(seconds * fps)):
            centre, view_h = camera(index / fps, seconds, scene.shape[1])
            view_w = view_h * 4 / 3
            x0 = round(min(max(0.0, centre - view_w / 2), scene.shape[1] - view_w))
            y0 = round((HEIGHT - view_h) / 2)
            crop = scene[y0:y0 + int(view_h), x0:x0 + int(view_w)]
            writer.write(cv2.resize(crop, (width_out, height_out), interpolation=cv2.INTER_AREA))
    finally:
        writer.release()
    return path


def speech_track(folder: Path, sentences: tuple[str, ...], seconds: float,
                 lead_s: float = 1.5) -> tuple[Path, list[Spoken]]:
    """``sentences`` spread evenly over ``seconds`` of audio (silence between them)."""
    rendered = [speak(text, folder / f"s{i}.wav") for i, text in enumerate(sentences)]
    rate = rendered[0][1]
    total = round(seconds * rate)
    audio = np.zeros(total, np.int16)
    slot = (seconds - lead_s) / len(sentences)
    spoken = []
    for index, (text, (samples, _)) in enumerate(zip(sentences, rendered, strict=True)):
        start = round((lead_s + index * slot) * rate)
        samples = samples[:max(0, total - start)]
        audio[start:start + len(samples)] = samples
        spoken.append(Spoken(text, start / rate, (start + len(samples)) / rate))
    path = folder / "speech.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(audio.tobytes())
    return path, spoken


def make_people_video(folder: Path, seconds: float = 60.0, fps: float = 8.0,
                      size: tuple[int, int] = (320, 240),
                      sentences: tuple[str, ...] = SENTENCES) -> PeopleVideo:
    """The panning shot with the speech track, muxed into Matroska (MJPG video, AAC)."""
    folder.mkdir(parents=True, exist_ok=True)
    video = write_frames(folder / "video.avi", seconds, fps, size)
    audio, spoken = speech_track(folder, sentences, seconds)
    out = folder / "people.mkv"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(video),
                    "-i", str(audio), "-map", "0:v", "-map", "1:a", "-c:v", "copy",
                    "-c:a", "aac", "-shortest", str(out)], check=True, capture_output=True)
    return PeopleVideo(out, spoken, seconds, fps)
