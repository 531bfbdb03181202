"""Internal hops reachable by others carry the run's own CURVE keys: strangers are refused.

With tcp transport every local user can connect to a loopback port, and the pids a status
report is signed with are public in /proc. So the run makes a server and a client key pair
of its own (:class:`stream.transport.curve.RunKeys`), hands them to its children privately,
and every internal socket admits only them. The attacks here send well-formed, correctly pid-signed
messages, the kind a pid check alone would believe.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zmq
from pipeline_runs import finish, read_jsonl, stage_process, start_run, wait_for, write_config

from stream.config import EndpointConfig
from stream.transport.curve import RunKeys, write_keys
from stream.transport.endpoints import INTERNAL, Endpoints, open_endpoint
from stream.transport.status import Counters, Health, StageStatus, encode_status
from stream.transport.wire import Header, encode


def _endpoints(tmp_path: Path, keys: RunKeys | None) -> tuple[EndpointConfig, Endpoints]:
    port = random.randint(20_000, 40_000)
    config = EndpointConfig(transport="tcp", tcp_base_port=port,
                            predictions=f"ipc://{tmp_path}/p", text=f"ipc://{tmp_path}/t")
    return config, Endpoints.for_config(config, tmp_path, ["cam0"], keys=keys)


def _delivered(receiver: zmq.Socket, sender: zmq.Socket, payload: bytes) -> bool:
    for _ in range(10):  # a refused handshake never completes; a good one takes a moment
        try:
            sender.send(payload, flags=zmq.NOBLOCK)
            break
        except zmq.Again:
            time.sleep(0.05)
    return bool(receiver.poll(1500)) and receiver.recv() == payload


def test_an_internal_socket_admits_the_run_keys_only(tmp_path: Path) -> None:
    keys = RunKeys.generate()
    config, endpoints = _endpoints(tmp_path, keys)
    context = zmq.Context()
    try:
        status = open_endpoint(context, endpoints, "status", "bind", config)
        assert status.getsockopt(zmq.MECHANISM) == zmq.CURVE
        own = open_endpoint(context, endpoints, "status", "connect", config)
        assert _delivered(status, own, b"from a child")
        address = endpoints.status
        plain = context.socket(zmq.PUSH)
        plain.connect(address)  # no keys at all
        assert not _delivered(status, plain, b"from a stranger")
        # keys of its own, even the right server key: not the run's client key
        stranger = context.socket(zmq.PUSH)
        other = RunKeys.generate()
        replace(keys, client_public=other.client_public,
                client_secret=other.client_secret).connect(stranger)
        stranger.connect(address)
        assert not _delivered(status, stranger, b"from a stranger with keys")
    finally:
        from stream.transport.curve import Gatekeeper

        Gatekeeper.stop_for(context)
        context.destroy(linger=0)


def test_an_outside_allow_listed_client_cannot_reach_an_internal_hop(tmp_path: Path) -> None:
    """One ZAP handler per context serves two domains: the allow-list admits outside
    clients on the outside endpoints only."""
    folder = tmp_path / "keys"
    files = write_keys(folder)
    run_keys = RunKeys.generate()
    config = EndpointConfig(transport="tcp", tcp_base_port=random.randint(20_000, 40_000),
                            predictions="tcp://127.0.0.1:0", text=f"ipc://{tmp_path}/t",
                            secure="always", curve={"dir": folder})
    endpoints = Endpoints.for_config(config, tmp_path, ["cam0"], keys=run_keys)
    context = zmq.Context()
    from stream.transport.curve import ClientKeys, CurveServer, Gatekeeper, client_security

    server = CurveServer.start(context, config.curve)
    try:
        status = open_endpoint(context, endpoints, "status", "bind", config)
        outsider = context.socket(zmq.PUSH)
        # an allow-listed outside client that even knows the run's server key
        allowed = ClientKeys.from_files(files.client_secret, files.server_public)
        client_security(replace(allowed, server_public=run_keys.server_public.encode()))(
            outsider)
        outsider.connect(endpoints.status)
        assert not _delivered(status, outsider, b"outside client on an internal hop")
    finally:
        server.stop()
        Gatekeeper.stop_for(context)
        context.destroy(linger=0)


def test_the_run_keys_never_show_in_a_repr() -> None:
    keys = RunKeys.generate()
    assert keys.server_secret not in repr(keys) and keys.client_secret not in repr(keys)


@pytest.mark.slow
def test_a_process_without_the_run_keys_gets_nothing_accepted(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    """tcp transport, a real run: forged heartbeats for a stopped stage, a forged verdict
    signed with classify's real pid, frames for the real stream, a credits subscription.
    None is accepted: the stopped stage is killed, the run succeeds, no forged frame is
    accounted, no credit is received; the refused handshakes are counted."""
    base = random.randint(20_000, 40_000)
    config = write_config(
        tmp_path, [{"spec": "demo", "width": 320, "height": 240}],
        endpoints={"predictions": f"ipc://{tmp_path}/predictions",
                   "text": f"ipc://{tmp_path}/text", "transport": "tcp",
                   "tcp_base_port": base},
        supervisor={"backoff_s": 0.2, "drain_s": 2.0, "hang_after_s": 4.0})
    port = {name: base + i for i, name in enumerate(INTERNAL)}
    run = start_run(tmp_path, tiny_engine_dir, config, 30.0)
    context = zmq.Context()
    try:
        predictions = tmp_path / "out" / "predictions.jsonl"
        wait_for(lambda: len(read_jsonl(predictions)) >= 1, 120, "first predictions", run)
        classify_pid = stage_process(run, "classify").pid
        detect = stage_process(run, "detect")
        status = context.socket(zmq.PUSH)
        status.connect(f"tcp://127.0.0.1:{port['status']}")
        frames = context.socket(zmq.PUSH)
        frames.connect(f"tcp://127.0.0.1:{port['detect_in']}")
        credits = context.socket(zmq.SUB)
        credits.setsockopt(zmq.SUBSCRIBE, b"")
        credits.connect(f"tcp://127.0.0.1:{port['credits']}")
        detect.suspend()
        verdict = StageStatus("classify", 0, classify_pid, Health.RUNNING, time.monotonic(),
                              counters=Counters(), extra={"sink_errors": {"jsonl": 7}})
        image = np.zeros((240, 320, 3), np.uint8)
        got_credit = False
        deadline = time.monotonic() + 12.0
        seq = 0
        while time.monotonic() < deadline:
            heartbeat = StageStatus("detect", 0, detect.pid, Health.RUNNING, time.monotonic())
            for record in (heartbeat, verdict):
                with contextlib.suppress(zmq.Again):
                    status.send(encode_status(record), flags=zmq.NOBLOCK)
            header = Header(stream="demo0", seq=seq, generation=999_999,
                            capture_time=time.monotonic(), media_time=seq / 10)
            with contextlib.suppress(zmq.Again):
                frames.send_multipart(encode(header, {"frame": image}), flags=zmq.NOBLOCK)
            seq += 1
            got_credit = got_credit or bool(credits.poll(0))
            time.sleep(0.1)
        output = finish(run, timeout=120)
    finally:
        context.destroy(linger=0)
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, output[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert not summary["failures"], summary["failures"]  # the forged verdict was refused
    assert [e["stage"] for e in summary["events"] if e["event"] == "hung"] == ["detect"]
    forged = [f for f in read_jsonl(tmp_path / "out" / "frames.jsonl")
              if f["generation"] == 999_999]
    assert forged == []
    assert not got_credit
    assert sum(summary["rejected"]["status_handshakes"].values()) >= 1, summary["rejected"]
