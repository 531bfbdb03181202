"""The text topic: lines from an outside publisher reach the window they were said in."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import zmq
from topic_pair import topic_pair

from stream.text_client import publish
from stream.transport.text_topic import TextTopic


def test_published_lines_are_embedded_per_window(tmp_path: Path) -> None:
    context = zmq.Context()
    sub, pub = topic_pair(context, tmp_path, "text")
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


def test_the_users_own_publisher_supersedes_the_asr_for_its_stream(tmp_path: Path) -> None:
    """ASR lines (``origin: asr``) count until an outside line arrives for the stream; from
    then on that stream has the user's words alone, and later ASR lines are dropped and
    counted. Another stream keeps its ASR lines."""
    context = zmq.Context()
    sub, pub = topic_pair(context, tmp_path, "text")
    topic = TextTopic(sub, lambda: lambda texts: np.ones((len(texts), 4), np.float32),
                      clock=lambda stream: 1000.0)
    bodies = [
        (b"cam0", b'{"text": "asr before", "media_start": 1.0, "media_end": 2.0, '
                  b'"origin": "asr"}'),
        (b"cam0", b'{"text": "asr live", "time": 1001.5, "origin": "asr"}'),
        (b"cam1", b'{"text": "asr other", "media_start": 1.0, "media_end": 2.0, '
                  b'"origin": "asr"}'),
        (b"cam0", b'{"text": "mine", "time": 1001.0}'),
        (b"cam0", b'{"text": "asr after", "media_start": 1.2, "media_end": 1.8, '
                  b'"origin": "asr"}'),
    ]
    try:
        sub.poll(300)  # slow joiner (see above)
        for stream, body in bodies:
            pub.send_multipart([stream, body])
        deadline = time.monotonic() + 5
        while topic.received + topic.superseded < len(bodies) and time.monotonic() < deadline:
            if sub.poll(100):
                topic.poll()
        assert topic.superseded == 1 and topic.received == 4
        assert topic.window_text("cam0", 1000.0, 1003.0) == "mine"
        assert topic.window_text("cam1", 1000.0, 1003.0) == "asr other"
    finally:
        context.destroy(linger=0)
