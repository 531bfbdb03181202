"""The text topic: lines from an outside publisher reach the window they were said in."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import zmq

from stream.text_client import publish
from stream.text_topic import TextTopic


def test_published_lines_are_embedded_per_window(tmp_path: Path) -> None:
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.bind(f"ipc://{tmp_path}/text")  # the pipeline binds the topic; publishers connect
    pub = context.socket(zmq.PUB)
    pub.connect(f"ipc://{tmp_path}/text")
    calls: list[list[str]] = []

    def embed_factory():
        def embed(texts):
            calls.append(list(texts))
            return np.ones((len(texts), 4), np.float32) * len(texts[0])
        return embed

    topic = TextTopic(sub, embed_factory)
    try:
        # slow joiner: the bound SUB sends its subscription to a new peer only once its
        # own thread uses it again (classify polls it all the time)
        sub.poll(300)
        publish(pub, "cam0", "we lost today", spoken=100.0)
        publish(pub, "cam0", "but I feel fine", spoken=101.0)
        publish(pub, "cam1", "other stream", spoken=100.5)
        pub.send_multipart([b"cam0", b"not json"])
        deadline = time.monotonic() + 2
        while topic.received + topic.malformed < 4 and time.monotonic() < deadline:
            if sub.poll(100):
                topic.poll()
        assert topic.received == 3 and topic.malformed == 1
        assert topic.window_text("cam0", 99.0, 102.0) == "we lost today but I feel fine"
        assert topic.window_text("cam0", 100.5, 102.0) == "but I feel fine"
        assert topic.vector("cam0", 0.0, 50.0) is None  # no text: the modality is masked
        vector = topic.vector("cam0", 99.0, 102.0)
        assert vector is not None and vector.shape == (4,)
        topic.vector("cam0", 99.0, 102.0)
        assert len(calls) == 1  # the same text is embedded once
    finally:
        context.destroy(linger=0)
