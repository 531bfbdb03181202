"""The embedded demo clip: a real person (scikit-image's ``astronaut``), gently animated.

``hidemo run --source demo`` must work on a machine with no camera and no downloaded
files. The photo ships inside scikit-image; each frame is the photo swayed, tilted and
zoomed a little (a slow, smooth motion, like a person shifting in a chair), so detection,
tracking and keypoints see a moving person rather than a still image.

Example:
    >>> clip = DemoClip(320, 240)
    >>> clip.frame(0.5).shape
    (240, 320, 3)
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np


class DemoClip:
    """Frames of the animated astronaut at any time ``t`` (seconds), BGR uint8."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        from skimage import data

        self.width = width
        self.height = height
        photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
        scale = min(width / photo.shape[1], height / photo.shape[0])
        self._photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)

    def frame(self, t: float) -> np.ndarray:
        """The frame at ``t`` seconds: a periodic sway (4 s), tilt (6 s) and zoom (5 s)."""
        h, w = self._photo.shape[:2]
        angle = 4.0 * math.sin(2 * math.pi * t / 6.0)
        zoom = 1.0 + 0.06 * math.sin(2 * math.pi * t / 5.0)
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom)
        matrix[0, 2] += (self.width - w) / 2 + 0.05 * self.width * math.sin(2 * math.pi * t / 4)
        matrix[1, 2] += (self.height - h) / 2
        return cv2.warpAffine(self._photo, matrix, (self.width, self.height),
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(60, 60, 60))


def write_demo_video(path: Path, seconds: float, fps: float = 30.0, width: int = 640,
                     height: int = 480) -> Path:
    """Write the demo clip to a video file (MJPG in .avi: readable by any OpenCV build)."""
    clip = DemoClip(width, height)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"cannot write a video to {path}")
    try:
        for index in range(round(seconds * fps)):
            writer.write(clip.frame(index / fps))
    finally:
        writer.release()
    return path
