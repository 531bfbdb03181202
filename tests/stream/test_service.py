"""Running it as a service, against real servers: a real Prometheus scraping a real
``hidemo run`` with the shipped alert rules loaded; a real MQTT broker (Mosquitto)
restarted in the middle of a run while an independent subscriber collects every
prediction; ``hidemo run`` killed with SIGKILL and its status topic reading ``offline``;
``/readyz`` following a real RTSP camera that stalls and comes back.

Each run is the tiny profile on the demo clip (or a small RTSP clip), a few tens of seconds.
"""

from __future__ import annotations

import json
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psutil
import pytest
import zmq
from pipeline_runs import finish, read_jsonl, start_run, wait_for, write_config
from servers import Mosquitto, Prometheus, RtspServer, free_port

from stream.prediction import Prediction
from stream.text_client import publish

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "hidemo-alerts.yml"
TOPIC = "site/hidemo"
DEMO = {"spec": "demo", "width": 320, "height": 240}


def get(url: str) -> tuple[int, Any]:
    """Status and JSON body (text for /metrics); (0, None) while nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = response.read().decode()
            status = response.status
    except urllib.error.HTTPError as error:
        body, status = error.read().decode(), error.code
    except OSError:
        return 0, None
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body


def test_prometheus_scrapes_a_real_run_with_the_shipped_rules(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, [DEMO])
    run = start_run(tmp_path, tiny_engine_dir, config, 90.0, "--metrics-bind",
                    f"127.0.0.1:{port}")
    prometheus = None
    try:
        wait_for(lambda: get(f"http://127.0.0.1:{port}/readyz")[0] == 200, 90,
                 "the run to be ready", run)
        prometheus = Prometheus(tmp_path / "prometheus", f"127.0.0.1:{port}", [RULES])
        seen: list[float] = []

        def frames_rising() -> bool:
            result = prometheus.query('hidemo_frames_total{stream="demo0"}')
            if result:
                value = float(result[0]["value"][1])
                if not seen or value != seen[-1]:
                    seen.append(value)
            return len(seen) >= 3

        wait_for(frames_rising, 60, "hidemo_frames_total to rise in Prometheus", run)
        assert seen == sorted(seen) and seen[-1] > seen[0]  # a counter that only grows
        up = prometheus.query('up{job="hidemo"}')
        assert [float(s["value"][1]) for s in up] == [1.0]
        ready = prometheus.query("hidemo_ready")
        assert [float(s["value"][1]) for s in ready] == [1.0]

        def rules_evaluated() -> bool:
            groups = prometheus.api("rules")["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            return len(rules) == 8 and all(rule["health"] == "ok" for rule in rules)

        wait_for(rules_evaluated, 30, "the shipped alert rules to evaluate without error", run)
        firing = prometheus.query('ALERTS{alertstate="firing"}')
        assert firing == []  # a healthy run sets off none of them
    finally:
        if prometheus is not None:
            prometheus.stop()
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
        output = finish(run)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["metrics"] == {"bind": f"127.0.0.1:{port}"}, output


class Subscriber:
    """An independent MQTT client (not hidemo's code): a persistent session (clean session
    off, fixed id), QoS 1, reconnecting by itself, as a site's consumer would be."""

    def __init__(self, port: int, client_id: str = "test-subscriber") -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                  clean_session=False)
        self.client.on_connect = lambda client, *_: client.subscribe(f"{TOPIC}/#", qos=1)
        self.client.on_message = self._take
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _take(self, client: Any, userdata: Any, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((message.topic, bytes(message.payload)))

    def on(self, suffix: str) -> list[bytes]:
        with self.lock:
            return [payload for topic, payload in self.messages if topic == f"{TOPIC}/{suffix}"]

    def seqs(self) -> list[int]:
        return [json.loads(payload)["seq"] for payload in self.on("demo0/prediction")]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def retained_status(port: int) -> bytes | None:
    """What a newcomer reads on the status topic (the retained message)."""
    got: list[bytes] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="newcomer")
    client.on_connect = lambda c, *_: c.subscribe(f"{TOPIC}/status", qos=1)
    client.on_message = lambda c, u, message: got.append(bytes(message.payload))
    client.connect("127.0.0.1", port)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not got and time.monotonic() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    client.disconnect()
    return got[0] if got else None


def mqtt_config(tmp_path: Path, port: int) -> Path:
    return write_config(tmp_path, [DEMO], sinks={"mqtt": {
        "url": f"mqtt://127.0.0.1:{port}", "topic": TOPIC, "qos": 1,
        "reconnect_min_s": 1, "reconnect_max_s": 1, "flush_s": 20}})


def test_every_prediction_reaches_a_subscriber_across_a_broker_restart(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    subscriber = Subscriber(broker.port)
    log = tmp_path / "out" / "predictions.jsonl"
    run = start_run(tmp_path, tiny_engine_dir, mqtt_config(tmp_path, broker.port), 35.0)
    context = zmq.Context()
    text = context.socket(zmq.PUB)
    try:
        wait_for(lambda: len(subscriber.seqs()) >= 3, 90, "predictions on MQTT", run)
        assert subscriber.on("status")[-1] == b"online"
        text.connect(f"ipc://{tmp_path}/text")
        for _ in range(10):  # the first lines of a new connection may be dropped by ZeroMQ
            publish(text, "demo0", "I played well today")
            time.sleep(0.1)
        broker.stop()  # a broker restart: 5 s away, predictions go on meanwhile
        made_before = len(read_jsonl(log))
        time.sleep(5.0)
        made_while_away = len(read_jsonl(log)) - made_before
        broker.start()
        output = finish(run, timeout=120)
        expected = read_jsonl(log)
        assert made_while_away >= 2, output  # the restart did cost the broker predictions
        wait_for(lambda: set(subscriber.seqs()) >= {p["seq"] for p in expected}, 30,
                 "every prediction at the subscriber")
    finally:
        text.close(linger=0)
        context.term()
        subscriber.close()
        if run.poll() is None:
            run.kill()
    lines = {json.loads(line)["seq"]: line.encode()
             for line in log.read_text().splitlines() if line.strip()}
    received = subscriber.on("demo0/prediction")
    first: dict[int, bytes] = {}
    for payload in received:
        first.setdefault(json.loads(payload)["seq"], payload)
    assert list(first) == [p["seq"] for p in expected]  # every seq, once each, in order
    assert all(first[seq] == lines[seq] for seq in first)  # the very JSON the log holds
    for payload in received:  # a duplicate (QoS 1) is the same prediction again
        assert payload == lines[Prediction.model_validate_json(payload).seq]
    assert b'{"text":"I played well today"' in b"".join(subscriber.on("demo0/transcript"))
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    figures = summary["mqtt"]
    assert figures["dropped"] == 0 and figures["unsent"] == 0, figures
    assert figures["connects"] >= 2 and figures["disconnects"] >= 1, figures
    assert not [w for w in summary["warnings"] if w.startswith("mqtt")], summary["warnings"]
    assert retained_status(broker.port) == b"offline"  # a clean end says so itself
    broker.stop()


def test_a_killed_run_reads_offline(tiny_engine_dir: Path, tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker")
    subscriber = Subscriber(broker.port)
    run = start_run(tmp_path, tiny_engine_dir, mqtt_config(tmp_path, broker.port), 90.0)
    stages: list[psutil.Process] = []
    try:
        wait_for(lambda: subscriber.on("status") == [b"online"], 90, "status online", run)
        stages = psutil.Process(run.pid).children(recursive=True)
        run.send_signal(signal.SIGKILL)  # no ordered stop, no goodbye: the broker's will
        run.wait(10)
        wait_for(lambda: subscriber.on("status")[-1:] == [b"offline"], 30,
                 "the broker to publish the last will")
        assert retained_status(broker.port) == b"offline"  # what a newcomer reads too
    finally:
        subscriber.close()
        if run.poll() is None:
            run.kill()
        for process in stages:  # the killed run's stages: not this test's subject
            try:
                process.kill()
                process.wait(10)
            except psutil.NoSuchProcess:
                pass
        broker.stop()


def test_readyz_follows_a_camera_that_stalls_and_comes_back(
        tiny_engine_dir: Path, tmp_path: Path) -> None:
    camera = RtspServer(tmp_path / "camera", frames=900)
    port = free_port()
    hang_after_s = 5.0
    config = write_config(
        tmp_path, [{"spec": camera.url, "id": "cam", "read_timeout_s": 1.0,
                    "open_timeout_s": 2.0, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}],
        supervisor={"backoff_s": 0.2, "drain_s": 2.0, "hang_after_s": hang_after_s})
    run = start_run(tmp_path, tiny_engine_dir, config, 120.0, "--metrics-bind",
                    f"127.0.0.1:{port}")
    readyz = f"http://127.0.0.1:{port}/readyz"
    try:
        wait_for(lambda: get(readyz)[0] == 200, 90, "the run to be ready", run)
        camera.signal(signal.SIGSTOP)  # the camera stalls: its connection stays, no frames
        stalled = time.monotonic()
        wait_for(lambda: get(readyz)[0] == 503, hang_after_s + 15, "/readyz to turn 503", run)
        unready_after = time.monotonic() - stalled
        status, body = get(readyz)
        assert status == 503 and body["ready"] is False
        assert any(reason.startswith(f"source cam ({camera.url}) delivered no frame")
                   for reason in body["reasons"]), body
        assert get(f"http://127.0.0.1:{port}/healthz") == (200, {"alive": True})
        camera.signal(signal.SIGCONT)  # it comes back: the capture reconnects by itself
        wait_for(lambda: get(readyz)[0] == 200, 60, "/readyz to turn 200 again", run)
        assert unready_after >= hang_after_s - 1.0  # not before the source was late
    finally:
        camera.signal(signal.SIGCONT)
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
        output = finish(run, timeout=120)
        camera.stop()
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["restarts"].get("capture[0]", 0) == 0, output  # recovered, not restarted

