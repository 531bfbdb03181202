"""Hostile peers against a real run: no message can crash, hang or silence the pipeline.

A real ``hidemo run`` (tiny engines, the demo source, every stage its own process, ipc
sockets in a folder the test can reach) is attacked on every socket a stage, the
supervisor and the text topic receive on, with thousands of messages that hypothesis
builds: random bytes, valid envelopes with one field replaced by a poisonous value (deep
nesting, a 5000-digit integer, ``1e400``, ``Infinity``, ``NaN``, wrong types, unknown
fields), streams the run does not have, buffers that do not match their header, NaN
arrays, arrays the stage cannot use, status reports from processes the supervisor never
started, prediction records for the supervisor's view that are not predictions, text lines
that are not lines, and thousands of distinct subscriptions on the publishers. Then a burst
of well-formed but absurd frames for the real stream (times of 9e8 s, generation jumps, huge
sequence numbers).

The properties, checked structurally (counts, never wall-clock latency):
- 0 stage exits and 0 restarts; the run ends by its own ordered stop;
- every hostile message is counted, per endpoint, with a reason; their sum is exactly
  what was sent (PUSH sockets never drop, and the text PUB is paced under its queue);
- predictions for the real stream keep coming after the attack, ``seq`` contiguous;
- the pipeline's total RSS stays within a bound of where it was before the attack.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import psutil
import pytest
import zmq
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st
from pipeline_runs import finish, read_jsonl, run_folder, start_run, wait_for, write_config

from stream.prediction import Prediction
from stream.transport.wire import FrameMeta, Header, Person, encode

pytestmark = pytest.mark.slow

STREAM = "demo0"
EXAMPLES_PER_KIND = 300
"""At most; hypothesis stops a kind early once its space is exhausted (a handful of ways to
break a buffer list, say), so a run sends about 3,500 messages in all."""
FRAME_KINDS = ("garbage", "poison", "unknown-stream", "buffers", "non-finite", "arrays",
               "version")
STATUS_KINDS = ("garbage", "poison", "unknown-pid", "bad-figures")
TEXT_KINDS = ("garbage", "parts", "unknown-stream", "poison", "long")
SUBSCRIPTIONS = 2000
SUBSCRIPTION_GROWTH_LIMIT_MB = 20
"""Bound on any one process's RSS growth under :data:`SUBSCRIPTIONS` distinct
subscriptions on each publisher (a plain PUB would keep a trie node per byte of each)."""
RSS_GROWTH_LIMIT_MB = 300
"""Bound on the pipeline's total RSS growth during the attack (MediaPipe and onnxruntime
arenas move by tens of MB on their own; a leak per message would be far beyond this)."""

POISON: list[bytes] = [
    b"[" * 3000 + b"]" * 3000,        # nesting far past the parser's limit
    b"9" * 5000,                      # an integer of 5000 digits
    b"1e400", b"-1e400", b"Infinity", b"-Infinity", b"NaN",
    b"true", b"[" + b"0," * 99 + b"0]",  # a bool, a list of 100
    b'{"bogus":1}',                     # an object with an unknown field
]
"""JSON values that no field of any record accepts."""


def valid_header(**changes: Any) -> Header:
    fields: dict[str, Any] = {"stream": STREAM, "seq": 1, "generation": 1,
                              "capture_time": 1.0, "media_time": 1.0, "source_fps": 10.0}
    fields.update(changes)
    return Header(**fields)


def poison_field(parts: list[bytes], path: tuple[str, ...], poison: bytes) -> list[bytes]:
    """Replace the JSON value at ``path`` of the envelope with the raw ``poison`` text."""
    envelope = json.loads(parts[0])
    node = envelope
    for key in path[:-1]:
        node = node[key]
    marker = "__POISON__"
    node[path[-1]] = marker
    return [json.dumps(envelope).encode().replace(f'"{marker}"'.encode(), poison), *parts[1:]]


HEADER_PATHS = [("header", k) for k in ("stream", "seq", "generation", "capture_time",
                                        "media_time", "kind", "source_fps", "dropped",
                                        "stamps", "meta", "version")]
HEADER_PATHS += [("header", "meta", k) for k in ("source", "persons", "frame_hw", "detector",
                                                 "random_weights", "reason")]
HEADER_PATHS += [("arrays",)]


@st.composite
def frame_hop_message(draw: st.DrawFn, stage: str, kind: str) -> tuple[str, list[bytes]]:
    """A hostile message of ``kind`` for a frame hop (``detect_in`` or ``classify_in``)."""
    person = Person(track_id=1, score=0.5, box=(1.0, 1.0, 50.0, 50.0), image=0)
    header = valid_header(meta=FrameMeta(persons=(person,)))
    good = ({"frame": np.zeros((32, 32, 3), np.uint8)} if stage == "detect"
            else {"image": np.zeros((1, 96), np.float32)})
    if kind == "garbage":
        return kind, draw(st.lists(st.binary(max_size=200), min_size=1, max_size=3))
    if kind == "poison":
        parts = [bytes(p) for p in encode(header, good)]
        return kind, poison_field(parts, draw(st.sampled_from(HEADER_PATHS)),
                                  draw(st.sampled_from(POISON)))
    if kind == "unknown-stream":
        name = draw(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_", min_size=1,
                            max_size=64).filter(lambda s: s != STREAM))
        return kind, [bytes(p) for p in encode(valid_header(stream=name), good)]
    if kind == "buffers":
        parts = [bytes(p) for p in encode(header, good)]
        cut = draw(st.sampled_from(["missing", "extra", "short"]))
        if cut == "missing":
            return kind, parts[:1]
        if cut == "extra":
            return kind, [*parts, b"\x00" * 8]
        return kind, [parts[0], parts[1][:-1]]
    if kind == "non-finite":
        value = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        bad = np.zeros((1, 96), np.float32)
        bad[0, draw(st.integers(0, 95))] = value
        return kind, [bytes(p) for p in encode(header, {"image": bad})]
    if kind == "version":
        return kind, poison_field([bytes(p) for p in encode(header, good)],
                                  ("header", "version"), b"2")
    # arrays the stage cannot use although the envelope is valid
    if stage == "detect":
        arrays = draw(st.sampled_from([
            {"frame": np.zeros((32, 32, 3), np.float32)}, {"frame": np.zeros((32, 32), np.uint8)},
            {"frame": np.zeros((4, 4, 3), np.uint8)}, {"frame": np.zeros((32, 32, 4), np.uint8)},
            {}, {"frame": np.zeros((32, 32, 3), np.uint8), "x": np.zeros(1, np.uint8)}]))
    else:
        arrays = draw(st.sampled_from([
            {"image": np.zeros((1, 95), np.float32)}, {"image": np.zeros((0, 96), np.float32)},
            {"keypoints": np.zeros((1, 136, 3), np.float32)},
            {"image": np.zeros((1, 96), np.float64)}, {"crop0": np.zeros((8, 8, 3), np.uint8)}]))
    return "arrays", [bytes(p) for p in encode(header, arrays)]


@st.composite
def status_message(draw: st.DrawFn, kind: str) -> tuple[str, bytes]:
    report = {"stage": "classify", "replica": 0, "pid": 1, "state": "running", "time": 1.0,
              "started": 1.0, "counters": {}, "extra": {}}
    if kind == "garbage":
        return kind, draw(st.binary(max_size=300))
    if kind == "poison":
        key = draw(st.sampled_from(list(report)))
        body = json.dumps({**report, key: "__POISON__"}).encode()
        return kind, body.replace(b'"__POISON__"', draw(st.sampled_from(POISON)))
    if kind == "bad-figures":
        streams = draw(st.sampled_from([5, [], {STREAM: 3}, {STREAM: {"lost": "x"}},
                                        {STREAM: {"ended": 1, "bogus": 2}}]))
        return kind, json.dumps({**report, "extra": {"streams": streams}}).encode()
    # well-formed, but from a process this supervisor never started
    pid = draw(st.integers(2**22 + 1, 2**31))  # above Linux's pid_max
    return kind, json.dumps({**report, "pid": pid}).encode()


@st.composite
def result_message(draw: st.DrawFn, kind: str) -> tuple[str, bytes]:
    """What a local process could feed the supervisor's view as a prediction: the public
    endpoint once could be bound by anyone; the private results hop validates all the
    same."""
    record = {"schema": "hidemo.prediction/2", "stream": STREAM, "seq": 0, "person": 1,
              "generation": 1, "frame_seq": 0, "label": "positive",
              "probs": {"negative": 0.5, "positive": 0.5},
              "window": {"start": 0.0, "end": 1.0, "seconds": 1.0},
              "modalities": ["image"], "slots": {"image": 1, "keypoints": 0, "text": 0},
              "smoothing": 0.0, "capture_time": 1.0, "emit_time": 1.0,
              "latency_ms": {"total": 1.0},
              "frames": {"received": 1, "dropped": 0, "lost": 0}, "detector": None,
              "random_weights": True, "random_engines": []}
    if kind == "garbage":
        return kind, draw(st.binary(max_size=300))
    if kind == "utf8":  # invalid UTF-8 inside a JSON string
        return kind, json.dumps({**record, "stream": "__X__"}).encode().replace(
            b"__X__", draw(st.sampled_from([b"\xff\xfe", b"\xc3", b"\xed\xa0\x80"])))
    if kind == "missing":
        key = draw(st.sampled_from(list(record)))
        body = json.dumps({k: v for k, v in record.items() if k != key}).encode()
        assume(not _is_prediction(body))  # a field with a default may be left out
        return kind, body
    key = draw(st.sampled_from(list(record)))
    body = json.dumps({**record, key: "__POISON__"}).encode()
    body = body.replace(b'"__POISON__"', draw(st.sampled_from(POISON)))
    assume(not _is_prediction(body))  # ``true`` is a fine random_weights: not hostile
    return kind, body


def _is_prediction(body: bytes) -> bool:
    try:
        Prediction.model_validate_json(body)
    except ValueError:
        return False
    return True


RESULT_KINDS = ("garbage", "utf8", "missing", "poison")


@st.composite
def text_message(draw: st.DrawFn, kind: str) -> tuple[str, list[bytes]]:
    if kind == "garbage":
        return kind, [STREAM.encode(), draw(st.binary(max_size=200))]
    if kind == "parts":
        return kind, draw(st.sampled_from([[STREAM.encode()],
                                           [STREAM.encode(), b'{"text":"a"}', b"x"]]))
    if kind == "unknown-stream":
        name = draw(st.text(st.characters(exclude_categories=("Cs",)), min_size=1,
                            max_size=40).filter(lambda s: s != STREAM))
        return kind, [name.encode(), b'{"text":"hello"}']
    if kind == "long":
        return kind, [STREAM.encode(), json.dumps({"text": "x" * 5000}).encode()]
    key = draw(st.sampled_from(["text", "time"]))
    body = json.dumps({"text": "hello", "time": 1.0, key: "__POISON__"}).encode()
    return kind, [STREAM.encode(), body.replace(b'"__POISON__"',
                                                 draw(st.sampled_from(POISON)))]


def fuzz(strategy: st.SearchStrategy, send, examples: int) -> None:
    """Draw ``examples`` values of ``strategy`` and ``send`` each (hypothesis drives it)."""

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def run(value: Any) -> None:
        send(value)

    run()


def subscribe_many(context: zmq.Context, endpoint: str, count: int, length: int) -> None:
    """``count`` distinct subscriptions of ``length`` bytes from one connection."""
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.SNDHWM, 100_000)
    socket.connect(endpoint)
    for i in range(count):
        socket.setsockopt(zmq.SUBSCRIBE, i.to_bytes(4, "big") + b"x" * (length - 4))
    time.sleep(1.5)  # delivered while connected
    socket.close(linger=0)


def process_rss_mb(run: subprocess.Popen[str]) -> dict[int, float]:
    out = {}
    for process in [psutil.Process(run.pid), *psutil.Process(run.pid).children(True)]:
        try:
            out[process.pid] = process.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
    return out


def pipeline_rss_mb(run: subprocess.Popen[str]) -> float:
    total = 0
    for process in [psutil.Process(run.pid), *psutil.Process(run.pid).children(True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def test_hostile_messages_never_crash_hang_or_silence_a_run(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = write_config(tmp_path, [{"spec": "demo", "width": 320, "height": 240}])
    run = start_run(tmp_path, tiny_engine_dir, config, 300.0)
    context = zmq.Context()
    sent: dict[str, Counter[str]] = {e: Counter() for e in
                                     ("detect_in", "classify_in", "status", "results", "text")}
    peak_rss = 0.0
    try:
        predictions = out / "predictions.jsonl"
        wait_for(lambda: len(read_jsonl(predictions)) >= 2, 120, "first predictions", run)
        rss_before = pipeline_rss_mb(run)
        ipc = run_folder(run)  # private to this user: the attacker is a process of its own
        sockets = {}
        for name, kind, endpoint in [
                ("detect_in", zmq.PUSH, f"ipc://{ipc}/detect-in"),
                ("classify_in", zmq.PUSH, f"ipc://{ipc}/classify-in"),
                ("status", zmq.PUSH, f"ipc://{ipc}/status"),
                ("results", zmq.PUSH, f"ipc://{ipc}/results"),
                ("text", zmq.PUB, f"ipc://{tmp_path}/text")]:
            socket = context.socket(kind)
            socket.setsockopt(zmq.SNDTIMEO, 5000)  # PUSH blocks rather than drops: exact
            socket.setsockopt(zmq.SNDHWM, 100_000)
            socket.connect(endpoint)
            sockets[name] = socket
        time.sleep(1.0)  # connections and the text subscription settle

        def sender(name: str):
            count = 0

            def send(value: tuple[str, Any]) -> None:
                nonlocal count, peak_rss
                kind, message = value
                if isinstance(message, bytes):
                    sockets[name].send(message)
                else:
                    sockets[name].send_multipart(message)
                sent[name][kind] += 1
                count += 1
                if count % 50 == 0:  # pace: the text SUB's queue must never overflow
                    time.sleep(0.02)
                if count % 250 == 0:
                    peak_rss = max(peak_rss, pipeline_rss_mb(run))
            return send

        for name, strategy, kinds in [
                ("detect_in", lambda k: frame_hop_message("detect", k), FRAME_KINDS),
                ("classify_in", lambda k: frame_hop_message("classify", k), FRAME_KINDS),
                ("status", status_message, STATUS_KINDS),
                ("results", result_message, RESULT_KINDS),
                ("text", text_message, TEXT_KINDS)]:
            send = sender(name)
            for kind in kinds:
                fuzz(strategy(kind), send, EXAMPLES_PER_KIND)

        # well-formed but absurd frames for the real stream: accepted, so not counted;
        # they must neither hang classify (time arithmetic) nor silence the stream
        for i in range(60):
            person = Person(track_id=7 + i % 3)
            header = valid_header(
                seq=[2**53, 5, 0][i % 3], generation=[2**31, 0, 1][i % 3],
                media_time=[9e8, 0.0, 5e8][i % 3], capture_time=[1e9, 0.0, 3.0][i % 3],
                dropped=[2**53, 0, 1][i % 3], meta=FrameMeta(persons=(person,)))
            sockets["classify_in"].send_multipart(encode(header))
        peak_rss = max(peak_rss, pipeline_rss_mb(run))

        # thousands of distinct subscriptions on the publishers (public predictions, the
        # captures' credits): refused and counted, no process keeps them
        rss_each = process_rss_mb(run)
        for endpoint in (f"ipc://{tmp_path}/predictions", f"ipc://{ipc}/credits"):
            subscribe_many(context, endpoint, SUBSCRIPTIONS, length=8)  # read, refused
            subscribe_many(context, endpoint, SUBSCRIPTIONS, length=400)  # peer dropped
        time.sleep(2.0)  # the publishers take them in on their next sends
        subscription_growth = {pid: mb - rss_each[pid]
                               for pid, mb in process_rss_mb(run).items() if pid in rss_each}
        attack_ended = time.monotonic()

        def resumed() -> bool:
            late = [p for p in read_jsonl(predictions) if p["emit_time"] > attack_ended]
            return len(late) >= 3
        wait_for(resumed, 60, "predictions after the attack", run)
        run.send_signal(signal.SIGINT)
        output = finish(run)
    finally:
        if run.poll() is None:
            run.kill()
        context.destroy(linger=0)

    assert run.returncode == 0, output
    summary = json.loads((out / "summary.json").read_text())
    assert not any(summary["restarts"].values()), summary["restarts"]
    bad_events = [e for e in summary["events"] if e["event"] in ("died", "hung", "gave-up")]
    assert not bad_events, bad_events
    stages = summary["stages"]
    counted = {
        "detect_in": stages["detect[0]"]["counters"]["rejected"].get("detect_in", {}),
        "classify_in": stages["classify[0]"]["counters"]["rejected"].get("classify_in", {}),
        "text": stages["classify[0]"]["counters"]["rejected"].get("text", {}),
        "status": summary["rejected"].get("status", {}),
        "results": summary["rejected"].get("results", {}),
    }
    for endpoint, kinds in sent.items():
        assert len(kinds) >= 4 and sum(kinds.values()) >= 200, (endpoint, kinds)
        assert sum(counted[endpoint].values()) == sum(kinds.values()), \
            (endpoint, dict(kinds), counted[endpoint])
    assert {"not-json", "schema", "unknown-stream", "buffers", "size", "non-finite",
            "arrays", "version"} <= set(counted["detect_in"]) | set(counted["classify_in"])
    assert "unknown-stream" in counted["text"] and "unknown-pid" in counted["status"]
    records = [r for r in read_jsonl(out / "predictions.jsonl") if r["stream"] == STREAM]
    assert [r["seq"] for r in records] == list(range(len(records)))
    schema = json.loads((Path(__file__).resolve().parents[2] / "docs"
                         / "prediction.schema.json").read_text())
    for record in records:  # real output against the published schema
        jsonschema.validate(record, schema)
    assert peak_rss - rss_before < RSS_GROWTH_LIMIT_MB, (rss_before, peak_rss)
    assert max(subscription_growth.values()) < SUBSCRIPTION_GROWTH_LIMIT_MB, subscription_growth
    refused = {name: stages["classify[0]"]["counters"]["rejected"].get(name, {})
               for name in ("predictions", "credits")}
    assert all(r.get("subscription", 0) >= SUBSCRIPTIONS for r in refused.values()), refused
    print(f"\nfuzz: sent {dict((k, dict(v)) for k, v in sent.items())}\ncounted {counted}\n"
          f"RSS {rss_before:.0f} -> peak {peak_rss:.0f} MB; {len(records)} predictions")
