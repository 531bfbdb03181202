"""Predictions, transcript lines and the run's status on an MQTT broker (``sinks.mqtt``).

The supervisor publishes, not classify: it already receives every prediction (the private
``results`` hop, in order) and it is the process the run lives and dies with, so the
broker's last will on ``TOPIC/status`` reads ``offline`` the moment ``hidemo run`` is
killed, even by SIGKILL. :class:`MqttView` is a :class:`~stream.run.view.View` the
supervisor already feeds (as the web view's monitor is), so the supervisor is unchanged.

Topics (``TOPIC`` is ``sinks.mqtt.topic``):

- ``TOPIC/STREAM/prediction``: each prediction's JSON, exactly the line
  ``predictions.jsonl`` holds (schema ``hidemo.prediction/2``);
- ``TOPIC/STREAM/transcript``: each transcript line classify accepted,
  ``{"text": ..., "time": ...}`` (``time`` on the clock of the predictions' ``capture_time``);
- ``TOPIC/status``: ``online`` (retained) once connected; ``offline`` (retained) at the end
  of the run, or from the broker as the last will when the connection dies.

Nothing here ever blocks the supervisor: messages go into a bounded :class:`Outbox`
(``queue_size``, ``queue_policy``: what overflows is counted) that a thread of its own
hands to paho-mqtt, at most ``max_inflight`` unacknowledged at a time. When the broker
goes away the outbox fills; what paho had sent without an acknowledgement is sent again
when the broker returns (QoS 1 and 2), and only then does the outbox go on, so messages
arrive in the order they were published (QoS 1 may repeat one: the prediction's ``seq``
tells). At the end of the run the queued messages get ``flush_s`` to go out; what does not
is counted (``unsent``).

Example:
    >>> publisher = MqttPublisher.from_config(config.sinks.mqtt)  # doctest: +SKIP
    >>> publisher.start()  # doctest: +SKIP
    >>> publisher.publish("demo0/prediction", line)  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import zmq
from pydantic import ValidationError

from stream.config import EndpointConfig, MqttConfig
from stream.prediction import Prediction
from stream.stages.sinks import json_line
from stream.strictjson import JsonDict
from stream.transport.curve import Gatekeeper
from stream.transport.endpoints import Endpoints, open_endpoint
from stream.transport.status import Rejections, StageStatus
from stream.transport.text_topic import TextLine

log = logging.getLogger(__name__)

USERNAME_ENV = "HIDEMO_MQTT_USERNAME"
PASSWORD_ENV = "HIDEMO_MQTT_PASSWORD"
ONLINE = b"online"
OFFLINE = b"offline"
STATUS_WAIT_S = 2.0
"""Longest the end of a run waits for the broker to acknowledge ``offline``."""
TRANSCRIPT_READS = 100
"""Transcript lines read per supervisor turn at most (a flood waits for the next turn)."""


@dataclass
class Outbox:
    """A bounded FIFO of ``(topic, payload)`` shared by the supervisor (which puts) and the
    publishing thread (which takes). Full, it drops the oldest message waiting
    (``drop-oldest``) or the new one (``drop-newest``) and counts it in ``dropped``."""

    size: int
    policy: str = "drop-oldest"
    items: deque[tuple[str, bytes]] = field(default_factory=deque)
    dropped: int = 0
    accepted: int = 0

    def put(self, item: tuple[str, bytes]) -> None:
        """Call with the publisher's lock held."""
        if len(self.items) >= self.size:
            self.dropped += 1
            if self.policy == "drop-newest":
                return
            self.items.popleft()
        self.items.append(item)
        self.accepted += 1

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class _Sent:
    """A message handed to paho and not yet acknowledged, and the connection it went on."""

    info: mqtt.MQTTMessageInfo
    session: int


class MqttPublisher:
    """Publishes under ``config.topic`` through ``client`` (a paho client, not yet
    connected: :meth:`from_config` makes one with the will, credentials and TLS set)."""

    def __init__(self, config: MqttConfig, client: mqtt.Client) -> None:
        self.config = config
        self.client = client
        self.status_topic = f"{config.topic}/status"
        self.outbox = Outbox(config.queue_size, config.queue_policy)
        self._lock = threading.Condition()
        self._connected = False
        self._session = 0
        self._closing = False
        self._stopped = False
        self._sent: deque[_Sent] = deque()
        self._thread: threading.Thread | None = None
        self.published = 0
        """Messages the broker acknowledged (QoS 1, 2) or that were written to it (QoS 0)."""
        self.connects = 0
        self.disconnects = 0
        self.unsent = 0
        """Messages still queued or unacknowledged when the run ended (after ``flush_s``)."""
        self.failed = 0
        """Messages paho refused to send (neither sent nor kept for the next connection)."""
        self.last_error: str | None = None
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish

    @classmethod
    def from_config(cls, config: MqttConfig,
                    environ: Mapping[str, str] | None = None) -> MqttPublisher:
        """A publisher with its paho client: the last will (``offline``, retained), the user
        name and password (:func:`credentials`), TLS for ``mqtts://`` or ``tls``. A file
        that cannot be read is a ValueError naming it."""
        tls = config.address[2]
        client_id = config.client_id or f"hidemo-{socket.gethostname()}-{os.getpid()}"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=True, protocol=mqtt.MQTTv311)
        client.will_set(f"{config.topic}/status", OFFLINE, qos=1, retain=True)
        username, password = credentials(config, environ)
        if username is not None:
            client.username_pw_set(username, password)
        if tls or config.tls is not None:
            settings = config.tls
            try:
                client.tls_set(
                    ca_certs=None if settings is None or settings.ca_file is None
                    else str(settings.ca_file),
                    certfile=None if settings is None or settings.cert_file is None
                    else str(settings.cert_file),
                    keyfile=None if settings is None or settings.key_file is None
                    else str(settings.key_file),
                    cert_reqs=ssl.CERT_REQUIRED)
            except (OSError, ssl.SSLError) as error:
                raise ValueError(f"sinks.mqtt.tls: {error}") from None
        client.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)
        # room for the status messages beside the outbox's own in-flight ones
        client.max_inflight_messages_set(config.max_inflight + 2)
        client.max_queued_messages_set(0)
        return cls(config, client)

    # -- the supervisor's side: never blocks ------------------------------------------------

    def start(self) -> None:
        """Connect in the background (a broker that is not there yet is retried with
        backoff; the run does not wait for it) and start the publishing thread."""
        host, port, _ = self.config.address
        self.client.connect_async(host, port, keepalive=self.config.keepalive_s)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._publish_loop, name="mqtt-publisher",
                                        daemon=True)
        self._thread.start()

    def publish(self, suffix: str, payload: bytes) -> None:
        """Queue ``payload`` for ``TOPIC/suffix``."""
        with self._lock:
            if self._closing:
                self.unsent += 1
                return
            self.outbox.put((f"{self.config.topic}/{suffix}", payload))
            self._lock.notify_all()

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def queued(self) -> int:
        return len(self.outbox)

    # -- paho's thread ------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any,
                    reason: Any, properties: Any) -> None:
        if reason.is_failure:
            self._note_error(f"the broker refused the connection: {reason}")
            return
        # before anything else goes out on this connection (paho then sends again what the
        # last one left unacknowledged, in order). QoS 0: paho keeps no copy to pile up
        # over a flapping link, and each new connection says it again
        client.publish(self.status_topic, ONLINE, qos=0, retain=True)
        with self._lock:
            self._connected = True
            self._session += 1
            self.connects += 1
            self._lock.notify_all()
        log.info("mqtt: connected to %s", self.config.url)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any,
                       reason: Any, properties: Any) -> None:
        with self._lock:
            was = self._connected
            self._connected = False
            if was and not self._closing:
                self.disconnects += 1
            self._lock.notify_all()
        if was and not self._closing:
            self._note_error(f"the connection to {self.config.url} dropped ({reason}); "
                             f"messages wait in the queue")

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any,
                    properties: Any) -> None:
        with self._lock:  # paho holds its own lock here; the publisher never calls paho
            self._lock.notify_all()  # with this one held, so the order is always the same

    def _note_error(self, error: str) -> None:
        if error != self.last_error:
            log.warning("mqtt: %s", error)
        self.last_error = error

    # -- the publishing thread ----------------------------------------------------------------

    def _settle(self) -> None:
        """Count what the broker acknowledged; forget it. Call with the lock held."""
        while self._sent and self._sent[0].info.is_published():
            self._sent.popleft()
            self.published += 1
        if any(s.info.is_published() for s in self._sent):  # acknowledged out of order
            kept = deque(s for s in self._sent if not s.info.is_published())
            self.published += len(self._sent) - len(kept)
            self._sent = kept

    def _may_send(self) -> bool:
        """Connected, room in flight, and nothing left from an earlier connection: those
        messages go again first (paho resends them), so nothing overtakes them."""
        return (self._connected and len(self._sent) < self.config.max_inflight
                and all(s.session == self._session for s in self._sent))

    def _publish_loop(self) -> None:
        while True:
            with self._lock:
                self._settle()
                while not self._stopped and not (self.outbox.items and self._may_send()):
                    self._lock.wait(0.1)
                    self._settle()
                if self._stopped:
                    return
                topic, payload = self.outbox.items.popleft()
                session = self._session
            # outside the lock: paho takes its own, and calls back into this one
            info = self.client.publish(topic, payload, qos=self.config.qos)
            with self._lock:
                if info.rc == mqtt.MQTT_ERR_SUCCESS:
                    if self.config.qos == 0:
                        self.published += 1
                    else:
                        self._sent.append(_Sent(info, session))
                elif info.rc == mqtt.MQTT_ERR_NO_CONN:
                    if self.config.qos == 0:  # paho keeps no QoS 0 message: queue it again
                        self.outbox.items.appendleft((topic, payload))
                    else:  # kept by paho, sent when the broker is back
                        self._sent.append(_Sent(info, session - 1))
                else:
                    self.failed += 1
                    self._note_error(f"publishing to {topic} failed: "
                                     f"{mqtt.error_string(info.rc)}")

    # -- the end of the run -------------------------------------------------------------------

    def close(self) -> None:
        """Give the queued messages ``flush_s`` to reach the broker, say ``offline``
        (retained: a clean disconnect sends no last will), disconnect, and count what was
        left (``unsent``). Never raises."""
        deadline = time.monotonic() + self.config.flush_s
        with self._lock:
            self._closing = True
            while (self.outbox.items or self._sent) and time.monotonic() < deadline:
                self._lock.wait(0.1)
                self._settle()
            self._stopped = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(5.0)
        with self._lock:  # the thread may have handed paho one more message as it stopped
            self._settle()
            self.unsent += len(self.outbox.items) + len(self._sent)
            connected = self._connected
        try:
            if connected:
                info = self.client.publish(self.status_topic, OFFLINE, qos=1, retain=True)
                info.wait_for_publish(STATUS_WAIT_S)
            self.client.disconnect()
        except (RuntimeError, ValueError, OSError) as error:
            log.warning("mqtt: closing: %s", error)
        self.client.loop_stop()
        if self.unsent:
            log.warning("mqtt: %d message(s) did not reach %s before the run ended",
                        self.unsent, self.config.url)

    def report(self) -> JsonDict:
        """The publisher's figures for ``summary.json``."""
        return {"url": self.config.url, "topic": self.config.topic, "qos": self.config.qos,
                "connected": self._connected, "queued": len(self.outbox),
                "published": self.published, "dropped": self.outbox.dropped,
                "queue_policy": self.config.queue_policy, "unsent": self.unsent,
                "failed": self.failed, "connects": self.connects,
                "disconnects": self.disconnects, "last_error": self.last_error}

    def warnings(self) -> list[str]:
        """What a user must know about this run's MQTT output (the run's verdict)."""
        out = []
        if self.connects == 0:
            out.append(f"mqtt: never connected to {self.config.url}"
                       + (f" ({self.last_error})" if self.last_error else "")
                       + "; nothing was published")
        if self.outbox.dropped:
            out.append(f"mqtt: the queue ({self.config.queue_size}) overflowed: "
                       f"{self.outbox.dropped} message(s) dropped ({self.config.queue_policy})")
        if self.unsent and self.connects:
            out.append(f"mqtt: {self.unsent} message(s) did not reach the broker before the "
                       f"run ended (sinks.mqtt.flush_s {self.config.flush_s:g} s)")
        if self.failed:
            out.append(f"mqtt: {self.failed} message(s) refused by the client "
                       f"({self.last_error})")
        return out


def credentials(config: MqttConfig,
                environ: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """The user name (``username``, else ``HIDEMO_MQTT_USERNAME``) and password
    (``password_file``, else ``HIDEMO_MQTT_PASSWORD``): never from the command line. A
    password without a user name, or a password file that cannot be read, is a ValueError
    with the fix."""
    environ = os.environ if environ is None else environ
    username = config.username or environ.get(USERNAME_ENV) or None
    password = environ.get(PASSWORD_ENV) or None
    if config.password_file is not None:
        password = read_secret(config.password_file, "sinks.mqtt.password_file")
    if password is not None and username is None:
        raise ValueError(f"an MQTT password is set but no user name: set sinks.mqtt.username "
                         f"or {USERNAME_ENV}")
    return username, password


def read_secret(path: Path, what: str) -> str:
    try:
        text = path.read_text().strip()
    except OSError as error:
        raise ValueError(f"{what} {path}: {error.strerror}") from None
    if not text:
        raise ValueError(f"{what} {path} is empty")
    return text


class MqttView:
    """The supervisor's :class:`~stream.run.view.View` that publishes each prediction, and
    each transcript line from classify's transcript topic (``transcripts``: a SUB socket
    read a bounded bite at every supervisor turn)."""

    def __init__(self, publisher: MqttPublisher, context: zmq.Context | None = None,
                 transcripts: zmq.Socket | None = None) -> None:
        self.publisher = publisher
        self.context = context
        self.transcripts = transcripts
        self.rejections = Rejections("transcript", "supervisor")

    def prediction(self, record: Prediction) -> None:
        self.publisher.publish(f"{record.stream}/prediction", json_line(record))

    def event(self, event: JsonDict) -> None:
        pass

    def update(self, statuses: dict[str, StageStatus], restarts: dict[str, int]) -> None:
        if self.transcripts is None:
            return
        for _ in range(TRANSCRIPT_READS):
            try:
                parts = self.transcripts.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 2:
                self.rejections.add("parts", f"{len(parts)} parts")
                continue
            try:
                stream = parts[0].decode()
                line = TextLine.model_validate_json(parts[1])
            except (UnicodeDecodeError, ValidationError) as error:
                self.rejections.add("schema", error)
                continue
            self.publisher.publish(f"{stream}/transcript", line.body())

    def close(self) -> None:
        if self.transcripts is not None:
            self.transcripts.close(linger=0)
        if self.context is not None:
            Gatekeeper.stop_for(self.context)
            self.context.term()
        self.publisher.close()


def open_mqtt(config: MqttConfig, endpoints: Endpoints,
              endpoint_config: EndpointConfig) -> MqttView:
    """The run's MQTT view: the publisher started (connecting in the background) and, with
    ``transcripts``, subscribed to classify's transcript topic."""
    publisher = MqttPublisher.from_config(config)
    context = socket_ = None
    if config.transcripts:
        context = zmq.Context()
        try:
            socket_ = open_endpoint(context, endpoints, "transcript", "connect",
                                    endpoint_config)
            socket_.setsockopt(zmq.SUBSCRIBE, b"")
        except zmq.ZMQError:
            Gatekeeper.stop_for(context)
            context.term()
            raise
    publisher.start()
    return MqttView(publisher, context, socket_)
