"""Placement: the rule of ``auto``, the fused chain and loop, and fused runs end to end.

Structural only: what runs where, what reaches whom, what is counted. No durations: a
loaded machine only takes longer.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import psutil
import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st
from pipeline_runs import (
    by_stream,
    finish,
    read_jsonl,
    stage_process,
    start_run,
    wait_for,
    write_config,
)
from pydantic import ValidationError

from stream.config import EndpointConfig, RunConfig, StageConfig, load_config
from stream.media.demo import write_demo_video
from stream.run.summary import processed_then_dropped
from stream.run.supervisor import stage_children
from stream.stages.fused import FusedChain, FusedIO, Link, OfflineInbox, run_fused
from stream.stages.loop import BatchStage, StopFlag
from stream.stages.placement import (
    FUSED_CLASSIFY_DEPTH,
    FUSED_IN_FLIGHT,
    choose,
    fused_workers,
    resolve_placement,
    usable_cores,
    worker_streams,
)
from stream.text_client import publish
from stream.transport.endpoints import PER_WORKER, Endpoints
from stream.transport.status import Counters, Health, StageStatus, StatusReporter
from stream.transport.wire import Header, Kind, Message, WireError, decode, encode

# -- the rule of auto -------------------------------------------------------------------


def never(*_: Any) -> str:
    raise AssertionError("the device was probed although the rule did not need it")


@pytest.mark.parametrize("cores", [1, 2, 4, 16, 64])
def test_auto_fuses_wherever_the_engines_run_on_the_cpu_and_says_why(cores: int) -> None:
    """Split stages run one engine thread each: on a large CPU they would leave most cores
    idle, where the workers take them all. The console line names the rule; the reason
    (saved with the run) says why."""
    placed = choose("auto", replicas=1, cores=cores, device=lambda: "cpu")
    assert placed.placement == "fused"
    assert placed.reason.startswith("auto:") and f"({cores} usable core" in placed.reason
    assert placed.summary == f"auto: engines on the CPU, {cores} core{'s' if cores > 1 else ''}"
    _, resolved = resolve_placement(
        load_config(None, {"sources": [{"spec": "demo"}] * 4, "profile": "tiny"}), cores=cores)
    workers = min(cores, 4)
    assert resolved.summary.startswith(placed.summary + f"; {workers} worker")
    assert len(f"hidemo run: placement fused ({resolved.summary})") <= 120


@pytest.mark.parametrize(("replicas", "cores", "device", "why"), [
    (2, 2, never, "features.replicas is 2"),
    (3, 16, never, "features.replicas is 3"),
    (1, 2, lambda: "cuda:0", "runs on cuda:0"),
    (1, 16, lambda: "cuda:0", "runs on cuda:0"),
])
def test_auto_splits_where_replicas_cores_or_a_gpu_pay(replicas: int, cores: int,
                                                        device: Any, why: str) -> None:
    placed = choose("auto", replicas=replicas, cores=cores, device=device)
    assert placed.placement == "split" and why in placed.reason, placed


@pytest.mark.parametrize("asked", ["split", "fused"])
def test_an_explicit_placement_is_kept(asked: str) -> None:
    placed = choose(asked, replicas=1, cores=64, device=never)
    assert placed.placement == asked and "asked for" in placed.reason


def test_resolving_records_the_choice_and_its_reason_in_the_config() -> None:
    config = load_config(None, {"sources": [{"spec": "demo"}], "profile": "tiny",
                                "placement": "auto", "features": {"replicas": 3}})
    resolved, placed = resolve_placement(config, cores=2)
    assert resolved.placement == "split" == placed.placement
    assert resolved.reasons.placement == placed.reason
    saved = json.loads(json.dumps(resolved.model_dump(mode="json")))
    assert RunConfig.model_validate(saved).reasons.placement == placed.reason  # round trip


def test_fused_keeps_one_offline_frame_in_flight_unless_the_source_says_otherwise() -> None:
    sources = [{"spec": "demo", "realtime": False}, {"spec": "demo", "realtime": False,
                                                     "in_flight": 3}, {"spec": "demo"}]
    for asked, expected in (("fused", [FUSED_IN_FLIGHT, 3, 1]), ("split", [2, 3, 1])):
        config = load_config(None, {"sources": sources, "placement": asked})
        resolved, _ = resolve_placement(config, cores=2)
        assert [s.in_flight for s in resolved.sources] == expected, asked


def test_fused_with_feature_replicas_is_a_config_error_naming_the_fix() -> None:
    with pytest.raises(ValidationError, match=r"features.replicas.*--set placement=split"):
        load_config(None, {"sources": [{"spec": "demo"}], "placement": "fused",
                           "features": {"replicas": 2}})
    with pytest.raises(ValidationError, match="placement"):
        load_config(None, {"sources": [{"spec": "demo"}], "placement": "together"})


def test_usable_cores_honours_a_cgroup_quota(tmp_path: Path) -> None:
    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")
    assert usable_cores(quota) == min(affinity, 2)
    quota.write_text("max 100000\n")
    assert usable_cores(quota) == affinity
    assert usable_cores(tmp_path / "absent") == affinity


@pytest.mark.parametrize(("asked", "cores", "streams", "expected"), [
    (0, 2, 1, 1), (0, 2, 4, 2), (0, 2, 0, 1), (0, 16, 3, 3), (3, 2, 4, 3), (5, 2, 2, 2),
    (1, 8, 8, 1),
])
def test_fused_workers_are_one_per_core_at_most_one_per_stream_unless_asked(
        asked: int, cores: int, streams: int, expected: int) -> None:
    assert fused_workers(asked, cores=cores, streams=streams) == expected


@given(st.integers(0, 8), st.integers(1, 64), st.integers(0, 40))
def test_every_stream_has_exactly_one_worker_and_the_shares_differ_by_one_at_most(
        asked: int, cores: int, streams: int) -> None:
    sources = [{"spec": "demo", "id": f"s{i}"} for i in range(streams)]
    config = load_config(None, {"sources": sources, "placement": "fused",
                                "fused": {"workers": asked}})
    resolved, placed = resolve_placement(config, cores=cores)
    workers = resolved.fused.workers
    if streams:  # the one asked for, else one per core; never more than the streams
        assert workers == min(asked or cores, streams)
    else:
        assert workers == 1
    shares = [worker_streams(resolved, w) for w in range(workers)]
    assert sorted(s for share in shares for s in share) == sorted(resolved.stream_ids())
    if streams:
        assert max(map(len, shares)) - min(map(len, shares)) <= 1 and min(map(len, shares))
    share = max(1, cores // workers)  # each worker's engines take its share of the cores
    assert resolved.detect.threads == resolved.features.threads == share
    assert f"{workers} worker" in placed.reason == resolved.reasons.placement


def test_fused_classify_keeps_what_the_workers_finished_and_does_not_wait_to_batch() -> None:
    sources = [{"spec": "demo", "id": f"s{i}"} for i in range(2)]
    resolved, _ = resolve_placement(load_config(None, {"sources": sources,
                                                       "placement": "fused"}), cores=2)
    assert resolved.classify.queue_depth == FUSED_CLASSIFY_DEPTH
    assert resolved.classify.max_delay_ms == 0.0
    own = load_config(None, {"sources": sources, "placement": "fused",
                             "classify": {"queue_depth": 2, "max_delay_ms": 5}})
    resolved, _ = resolve_placement(own, cores=2)
    assert (resolved.classify.queue_depth, resolved.classify.max_delay_ms) == (2, 5.0)
    split, _ = resolve_placement(load_config(None, {"sources": sources,
                                                    "placement": "split"}), cores=2)
    assert (split.classify.queue_depth, split.classify.max_delay_ms) == (4, 10.0)


def test_a_stage_that_sets_its_threads_keeps_them_in_a_fused_worker() -> None:
    config = load_config(None, {"sources": [{"spec": "demo", "id": f"s{i}"} for i in range(4)],
                                "placement": "fused", "features": {"threads": 3}})
    resolved, _ = resolve_placement(config, cores=2)
    assert resolved.fused.workers == 2
    assert resolved.features.threads == 3 and resolved.detect.threads == 1


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_each_fused_worker_has_its_own_input_credits_and_preview(transport: str,
                                                                  tmp_path: Path) -> None:
    config = EndpointConfig(transport=transport)
    endpoints = Endpoints.for_config(config, tmp_path)
    assert endpoints.for_worker(0, config) == endpoints
    seen = {v for k, v in asdict(endpoints).items() if k not in ("topics", "keys")}
    for worker in range(1, 6):
        own = endpoints.for_worker(worker, config)
        for name, address in asdict(own).items():
            if name in PER_WORKER:
                assert address not in seen, (worker, name, address)  # no two bind one
                seen.add(address)
            else:  # status, classify's and the outside endpoints are the run's
                assert address == getattr(endpoints, name)


def test_the_supervisor_starts_classify_and_the_fused_workers_or_one_process_per_stage(
        ) -> None:
    base = {"sources": [{"spec": "demo"}], "profile": "tiny"}
    fused = stage_children(load_config(None, {**base, "placement": "fused"}))
    assert [c.label for c in fused] == ["classify[0]", "fused[0]"]
    assert fused[1].status_labels == ("detect[0]", "features[0]")
    three = stage_children(load_config(None, {"sources": [
        {"spec": "demo", "id": f"s{i}"} for i in range(5)], "placement": "fused",
        "fused": {"workers": 3}}))
    assert [c.label for c in three] == ["classify[0]", "fused[0]", "fused[1]", "fused[2]"]
    assert three[3].status_labels == ("detect[2]", "features[2]")
    split = stage_children(load_config(None, {**base, "placement": "split",
                                              "features": {"replicas": 2}}))
    assert [c.label for c in split] == ["classify[0]", "features[0]", "features[1]",
                                        "detect[0]"]
    with pytest.raises(ValueError, match="resolve_placement"):
        stage_children(load_config(None, {**base, "placement": "auto"}))


def status(stage: str, replica: int, pid: int, dropped_in: int = 0,
           dropped_out: int = 0) -> StageStatus:
    return StageStatus(stage, replica, pid, Health.RUNNING,
                       counters=Counters(dropped_in=dropped_in, dropped_out=dropped_out))


def test_processed_then_dropped_counts_what_the_next_stage_threw_away() -> None:
    split = {"capture[0]": status("capture", 0, 1, dropped_out=2),
             "detect[0]": status("detect", 0, 2, dropped_in=3, dropped_out=1),
             "features[0]": status("features", 0, 3, dropped_in=4),
             "features[1]": status("features", 1, 4, dropped_in=1),
             "classify[0]": status("classify", 0, 5, dropped_in=6)}
    assert processed_then_dropped(split) == {"capture": 5, "detect": 6, "features": 6}
    fused = {"capture[0]": status("capture", 0, 1),
             "detect[0]": status("detect", 0, 2, dropped_in=3),
             "features[0]": status("features", 0, 2), "classify[0]": status("classify", 0, 2)}
    assert processed_then_dropped(fused) == {"capture": 3, "detect": 0, "features": 0}


# -- the fused chain and loop, in process -------------------------------------------------


def frame(seq: int, stream: str = "a", kind: Kind = Kind.FRAME) -> Message:
    return Message(Header(stream=stream, seq=seq, generation=1, capture_time=1.0,
                          media_time=seq / 10, kind=kind), {})


class Recorder(BatchStage):
    """Echoes frames (stamped with its name) and records what it saw, in order; raises on
    the sequence numbers in ``fail_on``."""

    def __init__(self, name: str, fail_on: frozenset[int] = frozenset(),
                 passes: bool = True) -> None:
        self.name = name
        self.fail_on = fail_on
        self.passes = passes
        self.seen: list[tuple[str, int]] = []
        self.closed = False

    def process(self, batch: list[Message]) -> list[Message]:
        if any(m.header.seq in self.fail_on for m in batch):
            raise KeyError("bad item")
        self.seen += [("frame", m.header.seq) for m in batch]
        return [Message(m.header.stamped(self.name, 1.0, 1.0, m.arrived), m.arrays)
                for m in batch] if self.passes else []

    def on_control(self, message: Message) -> list[Message]:
        self.seen.append(("end", message.header.seq))
        return [message] if self.passes else []

    def close(self) -> None:
        self.closed = True


def chain_of(*stages: Recorder, batch: int = 8) -> FusedChain:
    return FusedChain([Link(stage, StageConfig(max_batch=batch, max_delay_ms=0),
                            StatusReporter(None, stage.name, 0)) for stage in stages])


def test_the_chain_hands_every_frame_on_and_one_bad_item_costs_only_itself() -> None:
    detect, features = Recorder("detect"), Recorder("features", fail_on=frozenset({2}))
    classify = Recorder("classify", passes=False)
    chain = chain_of(detect, features, classify)
    chain.frames([frame(i) for i in range(4)])
    chain.control([frame(4, kind=Kind.EOS)])
    assert detect.seen == [("frame", i) for i in range(4)] + [("end", 4)]
    assert classify.seen == [("frame", 0), ("frame", 1), ("frame", 3), ("end", 4)]
    counters = [link.reporter.counters for link in chain.links]
    assert [c.processed for c in counters] == [4, 4, 3]
    assert [c.sent for c in counters] == [4, 3, 0]
    assert counters[1].failed == {"KeyError": 1} and not counters[2].failed
    assert all(c.dropped_in == c.dropped_out == 0 for c in counters)
    chain.close()
    assert detect.closed and features.closed and classify.closed


def test_the_fused_loop_runs_frames_then_the_end_of_stream_through_every_stage_and_out(
        ) -> None:
    context = zmq.Context()
    inbound, outbound = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    inbound.bind("inproc://fused-in")
    outbound.connect("inproc://fused-in")
    classify_in, results = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    classify_in.bind("inproc://classify-in")
    results.connect("inproc://classify-in")
    stages = [Recorder("detect"), Recorder("features")]
    chain = FusedChain([Link(stage, StageConfig(max_batch=1, max_delay_ms=0),
                             StatusReporter(None, stage.name, 0)) for stage in stages], results)
    stop = StopFlag()
    loop = threading.Thread(target=run_fused, args=(chain, FusedIO(inbound), stop))
    loop.start()
    received: list[Message] = []
    try:
        for seq in range(3):  # paced, one at a time: nothing for latest-wins to drop
            outbound.send_multipart(encode(frame(seq).header))
            wait_for(lambda s=seq: ("frame", s) in stages[1].seen, 30, f"frame {seq}")
        outbound.send_multipart(encode(frame(3, kind=Kind.EOS).header))
        outbound.send_multipart([b"not a message"])
        wait_for(lambda: ("end", 3) in stages[1].seen, 30, "the end of stream")
        wait_for(lambda: chain.head.reporter.counters.malformed == 1, 30, "the rejection")
        while len(received) < 4 and classify_in.poll(30_000):
            received.append(decode(classify_in.recv_multipart(copy=False)))
    finally:
        stop.set()
        loop.join(30)
        context.destroy(linger=0)
    assert not loop.is_alive()
    for stage in stages:
        assert stage.seen == [("frame", 0), ("frame", 1), ("frame", 2), ("end", 3)]
    # what the tail made went out to classify's input, in order, the end last
    assert [(m.header.seq, m.is_control) for m in received] == [
        (0, False), (1, False), (2, False), (3, True)]
    assert all([s.stage for s in m.header.stamps] == ["detect", "features"] for m in received[:3])
    head, tail = (link.reporter.counters for link in chain.links)
    assert head.received == 5 and head.processed == 3 and head.dropped_in == 0
    assert head.malformed == 1 and set(head.rejected) == {"detect_in"}
    assert tail.sent == 4 and tail.dropped_out == 0  # counted as its socket took them
    assert all(link.reporter.status.state is Health.STOPPING for link in chain.links)


def test_an_offline_stream_keeps_its_in_flight_frames_while_live_ones_keep_the_latest() -> None:
    inbox = OfflineInbox(1, {"file": 2})
    for seq in range(3):
        inbox.offer(frame(seq, "live"))
    for seq in range(2):  # credits let no more than in_flight through
        inbox.offer(frame(seq, "file"))
    assert inbox.dropped == {"live": 2}
    taken = inbox.take(8) + inbox.take(8)
    assert sorted((m.header.stream, m.header.seq) for m in taken) == [
        ("file", 0), ("file", 1), ("live", 2)]


# -- fused runs, end to end (tiny engines) ----------------------------------------------


def test_a_fused_worker_admits_its_own_streams_only_and_binds_its_own_endpoints(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    from stream.stages.build import build_fused

    config = load_config(None, {
        "sources": [{"spec": "demo", "id": f"cam{i}", "width": 160, "height": 120}
                    for i in range(3)],
        "profile": "tiny", "engine_dir": str(tiny_engine_dir), "placement": "fused",
        "keypoints": "mediapipe", "fused": {"workers": 2}})
    config, _ = resolve_placement(config, cores=2)
    endpoints = Endpoints.for_config(config.endpoints, tmp_path)
    context = zmq.Context()
    try:
        chain, io = build_fused(1, config, endpoints, context)
        try:
            assert [link.stage.name for link in chain.links] == ["detect", "features"]
            assert set(io.rules.streams or ()) == {"cam1"}  # worker 1 of 2: stream 1 only
            other = encode(Header(stream="cam0", seq=0, generation=1, capture_time=1.0,
                                  media_time=0.0))
            with pytest.raises(WireError) as refused:
                io.rules.decode(other)
            assert refused.value.reason == "unknown-stream"
            own = endpoints.for_worker(1, config.endpoints)
            assert io.input.getsockopt(zmq.LAST_ENDPOINT).decode() == own.detect_in
            assert own.detect_in != endpoints.detect_in
        finally:
            chain.close()
    finally:
        context.destroy(linger=0)


def stage_processes(run: Any) -> list[str]:
    """The stage of each stage process under the run (``stream.stages.main STAGE ...``)."""
    names = []
    for child in psutil.Process(run.pid).children(recursive=True):
        try:
            command = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "stream.stages.main" in command:
            names.append(command[command.index("stream.stages.main") + 1])
    return sorted(names)


def _enough(log: Path) -> bool:
    logged = by_stream(read_jsonl(log))
    return (all(len(logged.get(s, [])) >= 3 for s in ("talk", "demo1"))
            and any("text" in r["modalities"] for r in logged["demo1"]))


@pytest.mark.slow
def test_a_fused_run_of_a_file_and_the_demo_on_two_workers_predicts_and_drains(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    video = write_demo_video(tmp_path / "talk.avi", seconds=20.0, fps=10, width=320,
                             height=240)
    # the file unpaced: its worker's grants pace it; each stream has a worker of its own
    config = write_config(tmp_path, [{"spec": str(video), "id": "talk", "realtime": False},
                                     {"spec": "demo", "width": 320, "height": 240}],
                          placement="fused", fused={"workers": 2},
                          analysis={"capture_fps": 10.0},
                          supervisor={"backoff_s": 0.2, "drain_s": 20.0})
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"ipc://{tmp_path}/predictions")
    text = context.socket(zmq.PUB)
    text.connect(f"ipc://{tmp_path}/text")
    published: list[dict[str, Any]] = []
    processes: list[str] = []
    next_line = 0.0
    log = tmp_path / "out" / "predictions.jsonl"
    try:
        process = start_run(tmp_path, tiny_engine_dir, config, 120.0)
        while process.poll() is None and not _enough(log):
            if time.monotonic() > next_line:
                publish(text, "demo1", "I am really happy with how I played today")
                next_line = time.monotonic() + 0.5
            if sub.poll(100):
                published.append(json.loads(sub.recv_multipart()[1]))
            if not processes and read_jsonl(log):
                processes = stage_processes(process)
        process.send_signal(signal.SIGINT)
        while process.poll() is None:
            if sub.poll(100):
                published.append(json.loads(sub.recv_multipart()[1]))
        output = finish(process)
    finally:
        context.destroy(linger=0)
    assert process.returncode == 0, output
    assert processes == ["capture", "capture", "classify", "fused", "fused"], (processes,
                                                                              output)
    out = tmp_path / "out"
    logged = by_stream(read_jsonl(out / "predictions.jsonl"))
    assert set(logged) == {"talk", "demo1"}, output
    for stream, records in logged.items():
        assert len(records) >= 3, (stream, output)
        assert [r["seq"] for r in records] == list(range(len(records)))
        assert {"image", "keypoints"} <= set(records[-1]["modalities"])
    assert any("text" in r["modalities"] for r in logged["demo1"])
    pub = by_stream(published)
    assert set(pub) == {"talk", "demo1"}
    for stream, records in pub.items():
        seqs = [r["seq"] for r in records]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        assert seqs[-1] == logged[stream][-1]["seq"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["streams"]["talk"]["ended"], output  # the drain saw its end
    assert summary["streams"]["talk"]["lost"] == 0 and summary["streams"]["demo1"]["lost"] == 0
    assert summary["streams"]["talk"]["dropped"] <= 2  # unpaced: credits, not drops
    assert not any(summary["restarts"].values())
    assert summary["placement"]["processes"] == ["classify[0]", "fused[0]", "fused[1]"]
    stages = summary["stages"]
    for worker in (0, 1):  # two stages' figures, one process per worker
        assert stages[f"detect[{worker}]"]["pid"] == stages[f"features[{worker}]"]["pid"]
        for name in ("detect", "features"):
            counters = stages[f"{name}[{worker}]"]["counters"]
            assert counters["processed"] > 0 and counters["busy_s"] > 0, (name, worker)
            assert counters["malformed"] == 0 and not counters["rejected"], (name, worker)
    assert stages["detect[0]"]["pid"] != stages["detect[1]"]["pid"]
    # each worker took frames of its own stream only: a worker's input admits its streams
    # alone (another's frame would be counted in ``rejected`` above), and both worked
    assert stages["classify[0]"]["counters"]["processed"] > 0
    wasted = summary["processed_then_dropped"]
    assert wasted["detect"] == 0 and wasted["features"] == 0, wasted
    assert "frames processed then dropped: capture" in output
    saved = json.loads((out / "config.json").read_text())
    assert saved["placement"] == "fused"
    share = max(1, usable_cores() // 2)
    assert saved["reasons"]["placement"] == (
        "placement: fused was asked for; 2 workers (fused.workers was asked for), the "
        f"streams shared out, engines on {share} thread{'s' if share > 1 else ''} each")
    assert saved["fused"]["workers"] == 2


@pytest.mark.slow
def test_auto_placement_is_resolved_printed_and_saved_with_its_reason(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path, [{"spec": "demo", "width": 320, "height": 240}],
                          placement="auto")
    process = start_run(tmp_path, tiny_engine_dir, config, 6.0)
    output = finish(process, timeout=120)
    assert process.returncode == 0, output
    saved = json.loads((tmp_path / "out" / "config.json").read_text())
    placement, reason = saved["placement"], saved["reasons"]["placement"]
    assert placement in ("split", "fused") and reason.startswith("auto: "), saved
    said = [line for line in output.splitlines() if line.startswith("hidemo run: placement")]
    assert len(said) == 1 and len(said[0]) <= 120, said  # once, one line; the reason in full
    assert said[0].startswith(f"hidemo run: placement {placement} (auto: "), said  # is saved
    expected = choose("auto", replicas=1, cores=usable_cores(), device=lambda: "cpu")
    if "runs on" not in reason:  # the rule, unless a GPU took the embedder
        assert placement == expected.placement, (reason, expected)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["placement"]["placement"] == placement
    assert summary["placement"]["processes"] == (
        ["classify[0]", "fused[0]"] if placement == "fused"
        else ["classify[0]", "features[0]", "detect[0]"])


@pytest.mark.slow
def test_a_killed_fused_worker_is_restarted_and_only_its_streams_wait(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    """Two workers, a stream each; worker 1 is killed. It is restarted, its stream's
    predictions resume with contiguous ``seq``, and worker 0 and classify run on untouched."""
    config = write_config(tmp_path, [{"spec": "demo", "width": 320, "height": 240},
                                     {"spec": "demo", "width": 320, "height": 240}],
                          placement="fused", fused={"workers": 2}, features={"slow_ms": 250},
                          keypoints="mediapipe")
    log = tmp_path / "out" / "predictions.jsonl"
    process = start_run(tmp_path, tiny_engine_dir, config, 120.0)
    try:
        wait_for(lambda: all(len(v) >= 2 for v in by_stream(read_jsonl(log)).values())
                 and len(by_stream(read_jsonl(log))) == 2, 100, "first predictions", process)
        victim = stage_process(process, "fused", 1)
        untouched = {stage_process(process, "fused", 0).pid,
                     stage_process(process, "classify").pid}
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        wait_for(lambda: sum(r["capture_time"] > killed_at and r["stream"] == "demo1"
                             for r in read_jsonl(log)) >= 2,
                 100, "demo1's predictions after the restart", process)
        process.send_signal(signal.SIGINT)
        output = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["restarts"]["fused[1]"] == 1, output
    assert summary["restarts"]["fused[0]"] == 0 and summary["restarts"]["classify[0]"] == 0
    died = [e for e in summary["events"] if e["event"] == "died"]
    assert len(died) == 1 and died[0]["stage"] == "fused" and died[0]["index"] == 1
    assert died[0]["exit_code"] == -signal.SIGKILL
    stages = summary["stages"]
    assert stages["detect[1]"]["pid"] != victim.pid  # the new process reports
    assert {stages["detect[0]"]["pid"], stages["classify[0]"]["pid"]} == untouched
    records = by_stream(read_jsonl(log))
    for stream in ("demo0", "demo1"):  # across the restart, on both workers
        seqs = [r["seq"] for r in records[stream]]
        assert seqs == list(range(len(seqs))), stream
        assert records[stream][-1]["frames"]["lost"] == summary["streams"][stream]["lost"]


@pytest.mark.slow
def test_a_classify_that_falls_behind_the_fused_workers_drops_nothing_they_finished(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    """Fault injection: classify sleeps 800 ms per batch, so a dozen of the workers' frames
    pile up for it each time (the workers' grants do not wait for classify): more of a
    stream than a latest-wins depth of 4 holds. Nothing a worker finished is dropped:
    classify catches up by batching what it kept."""
    config = write_config(tmp_path, [{"spec": "demo", "width": 160, "height": 120},
                                     {"spec": "demo", "width": 160, "height": 120}],
                          placement="fused", fused={"workers": 2},
                          # batches of up to 48 keep up on average (a stall is what is
                          # tested, not a classify slower than the input forever)
                          classify={"slow_ms": 800, "max_batch": 48},
                          analysis={"capture_fps": 10.0},
                          supervisor={"backoff_s": 0.2, "drain_s": 5.0,
                                      "stop_timeout_s": 15.0})
    process = start_run(tmp_path, tiny_engine_dir, config, 10.0)
    output = finish(process, timeout=180)
    assert process.returncode == 0, output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    stages = summary["stages"]
    classify = stages["classify[0]"]["counters"]
    assert classify["batches"] > 0 and classify["processed"] / classify["batches"] > 2, classify
    assert classify["dropped_in"] == 0, classify
    for worker in (0, 1):
        assert stages[f"features[{worker}]"]["counters"]["dropped_out"] == 0, worker
    assert summary["processed_then_dropped"]["features"] == 0, summary["processed_then_dropped"]
    for stream in ("demo0", "demo1"):
        assert summary["streams"][stream]["lost"] == 0, summary["streams"][stream]
