"""The wire protocol: round trips, zero-copy buffers, and malformed messages dropped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zmq

from stream.transport.inbox import LatestInbox, drain
from stream.transport.wire import (
    PROTOCOL_VERSION,
    ZERO_COPY_BYTES,
    FrameMeta,
    Header,
    Kind,
    Person,
    WireError,
    WireRules,
    decode,
    encode,
)


def header(**changes: object) -> Header:
    fields = {"stream": "cam0", "seq": 7, "generation": 2, "capture_time": 100.5,
              "media_time": 1.25, "source_fps": 30.0,
              "meta": FrameMeta(persons=(Person(track_id=1),))}
    fields.update(changes)
    return Header(**fields)  # type: ignore[arg-type]


def with_header(parts: list[bytes], **changes: object) -> list[bytes]:
    """``parts`` with header fields replaced (``None``: removed) in the JSON envelope."""
    envelope = json.loads(parts[0])
    for key, value in changes.items():
        if value is None:
            envelope["header"].pop(key)
        else:
            envelope["header"][key] = value
    return [json.dumps(envelope).encode(), *parts[1:]]


def test_round_trip_keeps_header_and_arrays() -> None:
    frame = np.arange(480 * 640 * 3, dtype=np.uint8).reshape(480, 640, 3)
    boxes = np.array([[1.5, 2.5, 3.5, 4.5]], np.float32)
    sent = header().stamped("capture", 100.5, 100.6).stamped("detect", 100.7, 100.8)
    message = decode(encode(sent, {"frame": frame, "boxes": boxes}))
    assert message.header == sent
    np.testing.assert_array_equal(message.arrays["frame"], frame)
    np.testing.assert_array_equal(message.arrays["boxes"], boxes)
    assert [s.stage for s in message.header.stamps] == ["capture", "detect"]


def test_large_buffers_are_not_copied_on_send() -> None:
    frame = np.zeros((480, 640, 3), np.uint8)
    small = np.zeros(4, np.float32)
    parts = encode(header(), {"frame": frame, "small": small})
    assert frame.nbytes >= ZERO_COPY_BYTES
    assert isinstance(parts[1], memoryview) and np.shares_memory(np.asarray(parts[1]), frame)
    assert isinstance(parts[2], bytes)


def test_non_contiguous_arrays_are_sent_correctly() -> None:
    crop = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)[10:60, 20:70]
    np.testing.assert_array_equal(decode(encode(header(), {"crop": crop})).arrays["crop"], crop)


@pytest.mark.parametrize(("mangle", "reason"), [
    (lambda parts: [b"not json", *parts[1:]], "not-json"),
    (lambda parts: with_header(parts, version=PROTOCOL_VERSION + 1), "version"),
    (lambda parts: with_header(parts, seq=None), "schema"),
    (lambda parts: with_header(parts, seq="7"), "schema"),
    (lambda parts: with_header(parts, kind="bogus"), "schema"),
    (lambda parts: with_header(parts, media_time=1e300), "schema"),
    (lambda parts: with_header(parts, seq=-1), "schema"),
    (lambda parts: with_header(parts, bogus=1), "schema"),
    (lambda parts: [parts[0].replace(b'"seq":7', b'"seq":' + b"9" * 5000), *parts[1:]],
     "not-json"),
    (lambda parts: [parts[0].replace(b'"media_time":1.25', b'"media_time":1e400'),
                    *parts[1:]], "schema"),
    (lambda parts: [parts[0].replace(b'"media_time":1.25', b'"media_time":Infinity'),
                    *parts[1:]], "schema"),
    (lambda parts: [parts[0].replace(b'"source":null', b'"source":' + b"[" * 3000
                                     + b"]" * 3000), *parts[1:]], "not-json"),
    (lambda parts: parts[:1], "buffers"),
    (lambda parts: [parts[0], b"\x00" * 3], "size"),
    (lambda parts: [parts[0], np.full((2, 4), np.nan, np.float32).tobytes()], "non-finite"),
    (lambda parts: [], "empty"),
    (lambda parts: [b"[1, 2]"], "schema"),
], ids=["json", "version", "missing", "type", "kind", "huge-time", "negative", "unknown-field",
        "5000-digits", "1e400", "infinity", "deep", "buffers", "size", "nan", "empty", "list"])
def test_malformed_messages_raise_wire_error_with_a_reason(mangle, reason) -> None:
    parts = encode(header(), {"boxes": np.zeros((2, 4), np.float32)})
    parts = [bytes(p) for p in parts]
    with pytest.raises(WireError) as caught:
        decode(mangle(parts))
    assert caught.value.reason == reason


def test_a_shape_whose_element_count_overflows_is_refused_not_crashed() -> None:
    parts = [bytes(p) for p in encode(header(), {"boxes": np.zeros((2, 4), np.float32)})]
    envelope = json.loads(parts[0])
    envelope["arrays"][0]["shape"] = [65536, 65536, 65536, 65536]  # 2**64 elements
    with pytest.raises(WireError) as caught:
        decode([json.dumps(envelope).encode(), parts[1]])
    assert caught.value.reason == "size"


def test_rules_refuse_streams_the_run_does_not_have() -> None:
    rules = WireRules(streams={"cam0"})
    assert rules.decode(encode(header())).header.stream == "cam0"
    with pytest.raises(WireError) as caught:
        rules.decode(encode(header(stream="intruder")))
    assert caught.value.reason == "unknown-stream"


def test_an_error_message_never_echoes_a_long_input() -> None:
    parts = [bytes(p) for p in encode(header())]
    hostile = parts[0].replace(b'"stream":"cam0"', b'"stream":"' + b"A" * 100_000 + b'"')
    with pytest.raises(WireError) as caught:
        decode([hostile])
    assert len(str(caught.value)) <= 300 and "AAAAAAAAAA" not in str(caught.value)


def test_eos_is_a_control_message() -> None:
    message = decode(encode(header(kind=Kind.EOS)))
    assert message.is_control and message.header.kind is Kind.EOS


def test_a_stage_counts_and_drops_malformed_messages_on_a_real_socket(tmp_path: Path) -> None:
    context = zmq.Context()
    endpoint = f"ipc://{tmp_path}/hop"
    pull = context.socket(zmq.PULL)
    pull.bind(endpoint)
    push = context.socket(zmq.PUSH)
    push.connect(endpoint)
    try:
        push.send_multipart([b"garbage"])
        push.send_multipart(encode(header(seq=1), {"frame": np.ones((300, 300, 3), np.uint8)}),
                            copy=False)
        push.send_multipart([json.dumps({"version": 99}).encode()])
        push.send_multipart(encode(header(seq=2, stream="cam1")))
        assert pull.poll(2000)
        inbox, errors = LatestInbox(depth=4), []
        received = 0
        while received < 4 and pull.poll(1000):
            received += drain(pull, inbox, decode, errors.append)
        assert received == 4
        assert len(errors) == 2 and all(isinstance(e, WireError) for e in errors)
        batch = inbox.take(8)
        assert sorted(m.header.seq for m in batch) == [1, 2]
        frame = next(m for m in batch if m.header.seq == 1).arrays["frame"]
        assert frame.shape == (300, 300, 3) and frame.sum() == 300 * 300 * 3
    finally:
        context.destroy(linger=0)
