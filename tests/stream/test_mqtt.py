"""The MQTT publisher against a real broker (Mosquitto on a free loopback port): while the
broker is away its bounded queue keeps what its policy says, counts every message it drops,
and delivers the rest in order once the broker is back; a broker that never answers leaves
every message counted as unsent, and the run says so."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from servers import Mosquitto, free_port, need

from stream.config import MqttConfig
from stream.run.mqtt import MqttPublisher

TOPIC = "box"


class Collector:
    """An independent subscriber with a persistent session on ``TOPIC/#`` (QoS 1)."""

    def __init__(self, port: int) -> None:
        self.payloads: list[bytes] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="collector",
                                  clean_session=False)
        self.client.on_connect = lambda client, *_: client.subscribe(f"{TOPIC}/s/#", qos=1)
        self.client.on_message = self._take
        self.client.reconnect_delay_set(1, 1)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _take(self, client: object, userdata: object, message: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.payloads.append(bytes(message.payload))

    def seqs(self) -> list[int]:
        with self.lock:
            return [json.loads(p)["seq"] for p in self.payloads]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publisher(port: int, **settings: object) -> MqttPublisher:
    settings.setdefault("url", f"mqtt://127.0.0.1:{port}")
    config = MqttConfig(topic=TOPIC, reconnect_min_s=1, reconnect_max_s=1, **settings)
    return MqttPublisher.from_config(config, environ={})


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize(("policy", "kept"), [("drop-oldest", range(20, 30)),
                                              ("drop-newest", range(0, 10))])
def test_a_full_queue_keeps_its_policy_counts_the_rest_and_delivers_in_order(
        tmp_path: Path, policy: str, kept: range) -> None:
    broker = Mosquitto(tmp_path / "broker")
    collector = Collector(broker.port)
    wait(lambda: collector.client.is_connected(), 10, "the collector's session")
    broker.stop()  # the broker keeps the collector's session and subscription on disk
    box = publisher(broker.port, queue_size=10, queue_policy=policy, flush_s=20)
    box.start()
    try:
        for seq in range(30):  # the broker is away: 10 wait, 20 are dropped
            box.publish("s/prediction", json.dumps({"seq": seq}).encode())
        assert box.queued == 10 and box.outbox.dropped == 20
        broker.start()
        wait(lambda: len(collector.seqs()) >= 10, 30, "the queued messages")
    finally:
        box.close()
        collector.close()
        broker.stop()
    first: list[int] = []
    for seq in collector.seqs():  # QoS 1 may repeat one; the first arrivals count
        if seq not in first:
            first.append(seq)
    assert first == list(kept)
    assert box.report()["dropped"] == 20 and box.unsent == 0
    assert box.report()["published"] == 10
    assert any(f"overflowed: 20 message(s) dropped ({policy})" in w for w in box.warnings())


def test_a_broker_that_never_answers_leaves_every_message_counted() -> None:
    box = publisher(free_port(), flush_s=0.5)  # nothing listens there
    box.start()
    for seq in range(5):
        box.publish("s/prediction", json.dumps({"seq": seq}).encode())
    box.close()
    assert box.unsent == 5 and box.published == 0
    assert any(w.startswith("mqtt: never connected to mqtt://127.0.0.1:")
               for w in box.warnings())


def certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own authority) and its key."""
    openssl = need("openssl", "openssl")
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True,
                   capture_output=True, timeout=60)
    return cert, key


@pytest.mark.slow
def test_mqtts_delivers_to_a_broker_it_trusts_and_refuses_one_it_does_not(
        tmp_path: Path) -> None:
    cert, key = certificate(tmp_path / "broker-cert")
    stranger, _ = certificate(tmp_path / "other-cert")
    tls_port = free_port()
    broker = Mosquitto(tmp_path / "broker", extra=f"listener {tls_port} 127.0.0.1\n"
                                                  f"certfile {cert}\nkeyfile {key}\n")
    collector = Collector(broker.port)  # the plain listener: what arrived over TLS
    wait(lambda: collector.client.is_connected(), 10, "the collector")
    trusting = publisher(tls_port, url=f"mqtts://127.0.0.1:{tls_port}",
                         tls={"ca_file": cert}, flush_s=10)
    wary = publisher(tls_port, url=f"mqtts://127.0.0.1:{tls_port}",
                     tls={"ca_file": stranger}, flush_s=1)
    try:
        for box in (trusting, wary):
            box.start()
            for seq in range(3):
                box.publish("s/prediction", json.dumps({"seq": seq}).encode())
        wait(lambda: len(collector.seqs()) >= 3, 30, "the messages sent over TLS")
    finally:
        trusting.close()
        wary.close()
        collector.close()
        broker.stop()
    assert sorted(set(collector.seqs())) == [0, 1, 2] and trusting.published == 3
    assert wary.connects == 0 and wary.unsent == 3  # its certificate was not trusted
    assert any(w.startswith("mqtt: never connected") for w in wary.warnings())
