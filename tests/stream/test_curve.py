"""CurveZMQ on the outside endpoints: keys from ``hidemo keys``, only allow-listed clients in.

The unit tests run a CURVE server and clients in this process over ipc; the slow one runs a
real ``hidemo run`` with predictions and text on tcp://127.0.0.1 and CURVE forced
(``secure: always``), and checks what a subscriber and a text publisher each get with the
right key, with no key, and with a valid key that is not allow-listed.
"""

from __future__ import annotations

import json
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
import zmq
from pydantic import ValidationError

from hidemo.cli import main as hidemo
from stream.config import EndpointConfig, RunConfig
from stream.text_client import publish
from stream.transport.curve import ClientKeys, client_security, write_keys
from stream.transport.endpoints import Endpoints, open_endpoint, start_curve


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def client(context: zmq.Context, kind: int, endpoint: str,
           keys: ClientKeys | None) -> zmq.Socket:
    """An outside client: a CURVE client when ``keys`` is given, a plain socket when not."""
    sock = context.socket(kind)
    sock.linger = 0
    if keys is not None:
        client_security(keys)(sock)
    if kind == zmq.SUB:
        sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)
    return sock


def stranger_keys(folder: Path, good: ClientKeys) -> ClientKeys:
    """A valid client key pair that is not allow-listed, aimed at the right server."""
    own = ClientKeys.from_dir(folder)
    return ClientKeys(own.public, own.secret, good.server_public)


def drain(sock: zmq.Socket) -> int:
    count = 0
    while sock.poll(0):
        sock.recv_multipart()
        count += 1
    return count


def test_hidemo_keys_writes_key_pairs_and_an_allow_list(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "keys"
    assert hidemo(["keys", "--out", str(out)]) == 0
    assert "endpoints.curve.dir" in capsys.readouterr().out
    for name in ("server", "client"):
        assert (out / f"{name}.key").is_file()
        assert stat.S_IMODE((out / f"{name}.key_secret").stat().st_mode) == 0o600
    assert (out / "authorized_clients" / "client.key").read_bytes() == \
        (out / "client.key").read_bytes()
    before = (out / "server.key_secret").read_bytes()
    assert hidemo(["keys", "--out", str(out)]) == 2  # never replaces keys clients hold
    assert "--force" in capsys.readouterr().err
    assert (out / "server.key_secret").read_bytes() == before
    assert hidemo(["keys", "--out", str(out), "--force"]) == 0
    assert (out / "server.key_secret").read_bytes() != before


@pytest.mark.parametrize("endpoint", ["tcp://0.0.0.0:5560", "tcp://*:5560",
                                      "tcp://192.168.1.20:5560", "tcp://eth0:5560",
                                      "tcp://cam-host.example:5560"])
def test_an_endpoint_outside_loopback_without_keys_is_a_config_error(endpoint: str) -> None:
    with pytest.raises(ValidationError, match=r"endpoints\.text .*hidemo keys"):
        EndpointConfig(text=endpoint)
    with pytest.raises(ValidationError, match=r"endpoints\.predictions .*hidemo keys"):
        RunConfig.model_validate({"endpoints": {"predictions": endpoint}})


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:5560", "tcp://127.8.0.1:5560",
                                      "tcp://localhost:5560", "tcp://[::1]:5560",
                                      "ipc:///tmp/run/predictions"])
def test_loopback_and_ipc_need_no_keys_unless_forced(endpoint: str, tmp_path: Path) -> None:
    assert not EndpointConfig(predictions=endpoint).curve_on(endpoint)
    with pytest.raises(ValidationError, match="secure: always"):
        EndpointConfig(predictions=endpoint, secure="always")
    write_keys(tmp_path)
    forced = EndpointConfig(predictions=endpoint, secure="always", curve={"dir": tmp_path})
    assert forced.curve_on(endpoint)
    assert forced.curve is not None and forced.curve.server_secret.name == "server.key_secret"


def test_curve_keys_that_are_missing_are_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"not found.*hidemo keys"):
        EndpointConfig(curve={"dir": tmp_path / "nowhere"})


def _exchange(until: float, step: Callable[[], None]) -> None:
    while time.monotonic() < until:
        step()
        time.sleep(0.05)


def test_only_allow_listed_clients_connect(tmp_path: Path) -> None:
    keys, stranger = tmp_path / "keys", tmp_path / "stranger"
    write_keys(keys)
    write_keys(stranger)  # a valid key pair that the pipeline never allow-listed
    good = ClientKeys.from_dir(keys)
    unknown = stranger_keys(stranger, good)
    config = EndpointConfig(predictions=f"ipc://{tmp_path}/predictions",
                            text=f"ipc://{tmp_path}/text", secure="always",
                            curve={"dir": keys})
    endpoints = Endpoints.for_config(config, tmp_path)
    server_context, client_context = zmq.Context(), zmq.Context()
    curve = start_curve(server_context, endpoints, config)
    assert curve is not None
    try:
        pub = open_endpoint(server_context, endpoints, "predictions", "bind", config,
                            curve=curve)
        text = open_endpoint(server_context, endpoints, "text", "bind", config, curve=curve)
        text.setsockopt(zmq.SUBSCRIBE, b"")
        subs = {name: client(client_context, zmq.SUB, endpoints.predictions, k)
                for name, k in (("good", good), ("none", None), ("unknown", unknown))}
        pubs = {name: client(client_context, zmq.PUB, endpoints.text, k)
                for name, k in (("good", good), ("none", None), ("unknown", unknown))}
        got = dict.fromkeys(subs, 0)
        lines: list[str] = []

        def step() -> None:
            pub.send_multipart([b"demo0", b"{}"])
            for name, sub in subs.items():
                got[name] += drain(sub)
            for name, sender in pubs.items():
                publish(sender, "demo0", name)
            while text.poll(0):
                lines.append(json.loads(text.recv_multipart()[1])["text"])

        _exchange(time.monotonic() + 2.0, step)
        assert got["good"] > 10 and got["none"] == 0 and got["unknown"] == 0, got
        assert "good" in lines and set(lines) == {"good"}, set(lines)
        for monitor in curve.monitors:  # every refused handshake is counted, by reason
            monitor.poll()
        refused = {m.rejections.endpoint: m.rejections.counts for m in curve.monitors}
        assert set(refused) == {"predictions", "text"}, refused
        for counts in refused.values():  # the key-less peers and the unlisted key
            assert counts.get("curve-handshake", 0) >= 1, refused
            assert counts.get("curve-refused", 0) >= 1, refused
    finally:
        curve.stop()
        server_context.destroy(linger=0)
        client_context.destroy(linger=0)


def _enough(log: Path) -> bool:
    if not log.is_file():
        return False
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    counts = {s: sum(r["stream"] == s for r in records) for s in ("demo0", "demo1")}
    with_text = any("text" in r["modalities"] for r in records if r["stream"] == "demo0")
    return min(counts.values()) >= 3 and with_text


@pytest.mark.slow
def test_a_curve_run_over_tcp_admits_only_the_allow_listed_key(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    keys, stranger = tmp_path / "keys", tmp_path / "stranger"
    assert hidemo(["keys", "--out", str(keys)]) == 0
    write_keys(stranger)
    predictions = f"tcp://127.0.0.1:{free_port()}"
    text_endpoint = f"tcp://127.0.0.1:{free_port()}"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({
        "profile": "tiny", "view": "log",
        "sources": [{"spec": "demo", "width": 320, "height": 240},
                    {"spec": "demo", "width": 320, "height": 240}],
        "endpoints": {"predictions": predictions, "text": text_endpoint,
                      "secure": "always", "curve": {"dir": str(keys)}},
        "supervisor": {"backoff_s": 0.2, "drain_s": 2.0}}))
    good = ClientKeys.from_dir(keys)
    unknown = stranger_keys(stranger, good)
    context = zmq.Context()
    subs = {name: client(context, zmq.SUB, predictions, k)
            for name, k in (("good", good), ("none", None), ("unknown", unknown))}
    # the keyed publisher speaks for demo0; the keyless and the unknown one for demo1
    texts = {"demo0": client(context, zmq.PUB, text_endpoint, good),
             "demo1": client(context, zmq.PUB, text_endpoint, None),
             "demo1-unknown": client(context, zmq.PUB, text_endpoint, unknown)}
    got = dict.fromkeys(subs, 0)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "hidemo", "run", "--config", str(config), "--engine-dir",
             str(tiny_engine_dir), "--duration", "120", "--out", str(tmp_path / "out")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        next_line = 0.0
        log = tmp_path / "out" / "predictions.jsonl"
        # until both streams have predicted a few times, and demo0 with its text (counts,
        # not a duration: a loaded machine only takes longer)
        while process.poll() is None and not _enough(log):
            if time.monotonic() > next_line:
                for name, sender in texts.items():
                    publish(sender, name.split("-")[0], "I am really happy with today")
                next_line = time.monotonic() + 0.5
            for name, sub in subs.items():
                got[name] += drain(sub)
            time.sleep(0.05)
        for _ in range(20):  # the keyless subscribers get more chances to (not) receive
            for name, sub in subs.items():
                got[name] += drain(sub)
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        context.destroy(linger=0)
    assert process.returncode == 0, output
    records = [json.loads(line) for line in
               (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    streams = {r["stream"] for r in records}
    assert streams == {"demo0", "demo1"}, output
    assert got["good"] > 0 and got["none"] == 0 and got["unknown"] == 0, (got, output)
    assert any("text" in r["modalities"] for r in records if r["stream"] == "demo0")
    assert not any("text" in r["modalities"] for r in records if r["stream"] == "demo1")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    refused = summary["stages"]["classify[0]"]["counters"]["rejected"]
    for endpoint in ("predictions", "text"):  # the strangers' attempts, counted
        assert {"curve-handshake", "curve-refused"} <= set(refused.get(endpoint, {})), refused
