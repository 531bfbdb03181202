"""A real RTSP server for the URL-source tests, run as its own process.

``python rtsp_server.py FOLDER PORT [FRAMES]`` writes ``FOLDER/clip.mp4`` (H.264, 160x120,
10 fps, FRAMES frames; skipped when it exists) and serves FOLDER over RTSP/TCP on
127.0.0.1:PORT with aio-rtsp-toolkit, paced in real time, one play per session. It prints
``ready`` once listening, so a test can stop it (SIGKILL: a dropped server), freeze it
(SIGSTOP: a stalled one) and start it again on the same port.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import av
import numpy as np
from aio_rtsp_toolkit.server import RtspServer

WIDTH, HEIGHT, FPS = 160, 120, 10


def write_clip(path: Path, frames: int) -> None:
    """A moving gradient, keyframe every second, so a reader can join at any second."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"tune": "zerolatency", "g": str(FPS)}
        ramp = np.linspace(0, 255, WIDTH, dtype=np.uint8)
        for index in range(frames):
            image = np.repeat(np.roll(ramp, index * 4)[None, :, None], HEIGHT, axis=0)
            frame = av.VideoFrame.from_ndarray(np.repeat(image, 3, axis=2), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


async def serve(folder: Path, port: int) -> None:
    # The library logs every RTCP report to stdout; only "ready" goes to the parent, whose
    # pipe nobody reads afterwards (a full pipe would freeze the server).
    parent = os.fdopen(os.dup(1), "w")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    server = RtspServer(directory=str(folder), host="127.0.0.1", port=port)
    await server.start()
    parent.write("ready\n")
    parent.close()
    try:
        await server.serve_forever()
    finally:
        await server.close()


if __name__ == "__main__":
    folder, port = Path(sys.argv[1]), int(sys.argv[2])
    frames = int(sys.argv[3]) if len(sys.argv) > 3 else 60
    if not (folder / "clip.mp4").exists():
        write_clip(folder / "clip.mp4", frames)
    asyncio.run(serve(folder, port))
