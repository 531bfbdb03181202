"""CurveZMQ for the outside-facing sockets: key pairs, the allow-list, who may connect.

Loopback and ipc need no keys (only this machine's users reach them). A tcp endpoint on
any other host is reachable from the network, so the pipeline refuses it without keys
(:meth:`stream.config.EndpointConfig.curve_on` says which endpoints are secured). With
keys, the side that binds (classify: the predictions PUB and the text SUB) is a CURVE
server: every connection is encrypted, and pyzmq's ZAP authenticator
(:class:`zmq.auth.thread.ThreadAuthenticator`) admits only the client public keys found in
the allow-list folder; a peer with no key or an unknown key is refused during the handshake
and never sees a message. The connecting side (the
supervisor's own subscriber, :mod:`stream.text_client`, a user's subscriber) is a CURVE
client: its own key pair plus the server's public key.

``hidemo keys --out DIR`` writes the files this module reads (:func:`write_keys`)::

    DIR/server.key         server public key: give it to every client
    DIR/server.key_secret  server key pair: stays with the pipeline (mode 0600)
    DIR/client.key         a client public key
    DIR/client.key_secret  that client's key pair (mode 0600)
    DIR/authorized_clients/client.key   the allow-list: one public key file per client

Example:
    >>> paths = write_keys(Path("keys"))  # doctest: +SKIP
    >>> secure = client_security(ClientKeys.from_dir(Path("keys")))  # doctest: +SKIP
    >>> secure(socket); socket.connect("tcp://10.0.0.5:5560")  # doctest: +SKIP

The internal hops (status, frames, credits, results, the web view's topics) are secured
too wherever another local user or host could reach them (tcp transport, or a shared
``ipc_dir``): ``hidemo run`` then makes :class:`RunKeys`, one server and one client key
pair that live only for the run and reach the children in the run's private folder. Every
binding process admits only the run's client key (:class:`Gatekeeper`, ZAP domain
:data:`INTERNAL_DOMAIN`); every connecting process trusts only the run's server key. One
ZAP handler serves a whole context, so the outside endpoints' allow-list is a second
domain (:data:`OUTSIDE_DOMAIN`) of the same :class:`Gatekeeper`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import recv_monitor_message

from stream.config import CurveConfig
from stream.transport.status import Rejections

log = logging.getLogger(__name__)

SERVER = "server"
CLIENT = "client"
ALLOW_LIST = "authorized_clients"
FIX = "make keys with `hidemo keys --out DIR`"
INTERNAL_DOMAIN = "hidemo-internal"
"""ZAP domain of the internal hops: only the run's own client key is admitted."""
OUTSIDE_DOMAIN = "hidemo-outside"
"""ZAP domain of the outside endpoints: the client keys of the allow-list folder."""

Secure = Callable[[zmq.Socket], None]
"""Sets a socket's CURVE options; called before it binds or connects."""


@dataclass(frozen=True)
class KeyFiles:
    """What :func:`write_keys` wrote."""

    server_public: Path
    server_secret: Path
    client_public: Path
    client_secret: Path
    authorized_clients: Path


def write_keys(out: Path, *, force: bool = False) -> KeyFiles:
    """A fresh server key pair, a client key pair and an allow-list holding the client.

    Refuses to replace existing keys unless ``force``: every deployed client would lose its
    access at once. Secret files are readable by their owner only.
    """
    files = KeyFiles(out / f"{SERVER}.key", out / f"{SERVER}.key_secret",
                     out / f"{CLIENT}.key", out / f"{CLIENT}.key_secret", out / ALLOW_LIST)
    if files.server_secret.exists() and not force:
        raise FileExistsError(f"{files.server_secret} exists: clients use these keys; pass "
                              f"--force to replace them")
    out.mkdir(parents=True, exist_ok=True)
    files.authorized_clients.mkdir(exist_ok=True)
    for name in (SERVER, CLIENT):
        secret = out / f"{name}.key_secret"
        secret.unlink(missing_ok=True)  # created below with 0600 before the key is written
        os.close(os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        zmq.auth.create_certificates(out, name)
        secret.chmod(0o600)
    (files.authorized_clients / files.client_public.name).write_bytes(
        files.client_public.read_bytes())
    return files


def keys_command(out: Path, *, force: bool = False) -> int:
    """``hidemo keys --out DIR``: write the keys and say where each file goes."""
    files = write_keys(out, force=force)
    print(f"server key pair: {files.server_secret} (keep it with the pipeline)\n"
          f"server public key: {files.server_public} (give it to every client)\n"
          f"client key pair: {files.client_secret} (for the pipeline and one client)\n"
          f"allow-list: {files.authorized_clients}/ (add a client's .key to admit it)\n"
          f"use: --set endpoints.curve.dir={out} (and secure=always to force CURVE on "
          f"loopback); clients: --curve-keys {out}")
    return 0


def _load(path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    """(public, secret) z85 keys from a pyzmq certificate file, with a clear error."""
    if not path.is_file():
        raise ValueError(f"CURVE key file {path} not found; {FIX}")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as error:
        raise ValueError(f"CURVE key file {path} is not a key: {error}; {FIX}") from None
    if secret and secret_key is None:
        raise ValueError(f"CURVE key file {path} holds no secret key (want *.key_secret)")
    return public, secret_key


@dataclass(frozen=True)
class ServerKeys:
    """The binding side's key pair and the folder of client public keys it admits."""

    public: bytes
    secret: bytes
    authorized_clients: Path

    @classmethod
    def from_config(cls, config: CurveConfig) -> ServerKeys:
        public, secret = _load(config.server_secret, secret=True)
        assert secret is not None
        if not config.authorized_clients.is_dir():
            raise ValueError(f"CURVE allow-list folder {config.authorized_clients} not "
                             f"found; {FIX}")
        return cls(public, secret, config.authorized_clients)


@dataclass(frozen=True)
class ClientKeys:
    """A connecting side's key pair and the public key of the server it trusts."""

    public: bytes
    secret: bytes
    server_public: bytes

    @classmethod
    def from_files(cls, client_secret: Path, server_key: Path) -> ClientKeys:
        public, secret = _load(client_secret, secret=True)
        assert secret is not None
        return cls(public, secret, _load(server_key, secret=False)[0])

    @classmethod
    def from_config(cls, config: CurveConfig) -> ClientKeys:
        """The pipeline's own client (the supervisor's subscriber)."""
        return cls.from_files(config.client_secret, config.server_secret)

    @classmethod
    def from_dir(cls, keys: Path, name: str = CLIENT) -> ClientKeys:
        """An outside client's keys from a folder holding ``NAME.key_secret`` and
        ``server.key`` (what ``--curve-keys DIR`` of the clients reads)."""
        return cls.from_files(keys / f"{name}.key_secret", keys / f"{SERVER}.key")


def client_security(keys: ClientKeys) -> Secure:
    """Makes a socket a CURVE client of the server whose public key ``keys`` holds."""

    def secure(socket: zmq.Socket) -> None:
        socket.curve_secretkey = keys.secret
        socket.curve_publickey = keys.public
        socket.curve_serverkey = keys.server_public

    return secure


@dataclass(frozen=True)
class RunKeys:
    """The CURVE keys of one run's internal hops (z85 text): made by :meth:`generate` when
    the run starts, handed to its children in the run's private folder, never written
    anywhere else. A process without them cannot connect to any internal socket."""

    server_public: str
    server_secret: str = field(repr=False)
    client_public: str
    client_secret: str = field(repr=False)

    @classmethod
    def generate(cls) -> RunKeys:
        server_public, server_secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        return cls(server_public.decode("ascii"), server_secret.decode("ascii"),
                   client_public.decode("ascii"), client_secret.decode("ascii"))

    def serve(self, socket: zmq.Socket) -> None:
        """Makes ``socket`` a CURVE server of the run, checked in :data:`INTERNAL_DOMAIN`
        (its context needs a started :class:`Gatekeeper` admitting :attr:`client_public`)."""
        socket.curve_secretkey = self.server_secret.encode("ascii")
        socket.curve_publickey = self.server_public.encode("ascii")
        socket.curve_server = True
        socket.zap_domain = INTERNAL_DOMAIN.encode("ascii")

    def connect(self, socket: zmq.Socket) -> None:
        """Makes ``socket`` a CURVE client that trusts only the run's server key."""
        socket.curve_secretkey = self.client_secret.encode("ascii")
        socket.curve_publickey = self.client_public.encode("ascii")
        socket.curve_serverkey = self.server_public.encode("ascii")


class Gatekeeper:
    """The one ZAP handler of a context (libzmq allows one per context), admitting CURVE
    client keys per domain: the run's client key in :data:`INTERNAL_DOMAIN`, the
    allow-list in :data:`OUTSIDE_DOMAIN`. A key is checked against its socket's domain
    only, so an allow-listed outside client cannot reach an internal hop.

    :meth:`of` starts it on first use; :meth:`stop_for` stops it, after the sockets it
    guards are closed and before the context is destroyed (its thread owns a socket of
    that context, and libzmq admits every client on a CURVE socket whose handler is gone).
    """

    _running: ClassVar[dict[int, Gatekeeper]] = {}

    def __init__(self, context: zmq.Context) -> None:
        self.context = context
        self.allowed: dict[str, frozenset[bytes]] = {}
        self.authenticator = ThreadAuthenticator(context, log=log)
        self.authenticator.start()

    @classmethod
    def of(cls, context: zmq.Context) -> Gatekeeper:
        keeper = cls._running.get(id(context))
        if keeper is None or keeper.context is not context:
            keeper = cls._running[id(context)] = cls(context)
        return keeper

    @classmethod
    def stop_for(cls, context: zmq.Context) -> None:
        keeper = cls._running.pop(id(context), None)
        if keeper is not None and keeper.context is context:
            keeper.authenticator.stop()

    def allow(self, domain: str, public_keys: set[bytes] | frozenset[bytes]) -> None:
        """Admit ``public_keys`` (z85) on sockets of ``domain`` (added to those admitted)."""
        self.allowed[domain] = self.allowed.get(domain, frozenset()) | frozenset(public_keys)
        self.authenticator.configure_curve_callback(domain=domain, credentials_provider=self)

    def callback(self, domain: str, key: bytes) -> bool:
        """pyzmq's credentials-provider hook: whether client ``key`` may use ``domain``."""
        return key in self.allowed.get(domain, frozenset())


def serve_internal(context: zmq.Context, keys: RunKeys) -> Secure:
    """Secures a binding socket of an internal hop with ``keys`` (starting the context's
    :class:`Gatekeeper` if needed)."""
    Gatekeeper.of(context).allow(INTERNAL_DOMAIN, {keys.client_public.encode("ascii")})
    return keys.serve


class RefusalMonitor:
    """Counts the handshakes a CURVE server socket refused (``curve-handshake``: a peer with
    no key, which ZeroMQ reports as a protocol error or without detail depending on when the
    peer hangs up; ``curve-refused``: a key not on the allow-list), from
    ZeroMQ's socket monitor, into ``rejections`` of that endpoint. A refused peer retries
    on its own (every 100 ms by default), so the count is of attempts, not of peers."""

    EVENTS: ClassVar[dict[int, str]] = {
        zmq.EVENT_HANDSHAKE_FAILED_AUTH: "curve-refused",
        zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "curve-handshake",
        zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "curve-handshake"}

    def __init__(self, socket: zmq.Socket, endpoint: str, stage: str = "classify") -> None:
        self.socket = socket
        events = 0
        for event in self.EVENTS:
            events |= event
        self.monitor = socket.get_monitor_socket(events)
        self.rejections = Rejections(endpoint, stage)

    def poll(self, limit: int = 1000) -> None:
        """Count the refusals reported since the last call."""
        for _ in range(limit):
            try:
                event = recv_monitor_message(self.monitor, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            reason = self.EVENTS.get(event["event"], "curve-handshake")
            self.rejections.add(reason, f"peer refused during the CURVE handshake "
                                        f"({event['endpoint']!r})")

    def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):  # the socket may be closed already
            self.socket.disable_monitor()
        self.monitor.close(linger=0)


class CurveServer:
    """The outside endpoints' CURVE server: the server key pair, and the context's
    :class:`Gatekeeper` admitting the allow-list in :data:`OUTSIDE_DOMAIN`.

    Start it before any CURVE server socket binds, and stop it before the context is
    destroyed (the handler thread owns sockets of that context, and ``zmq_close`` is not
    thread-safe). :meth:`stop` first closes the sockets it secured: libzmq lets every client
    in on a CURVE socket whose ZAP handler is gone, so no such socket outlives it.

    It also has the shape of a prediction sink (``name``, ``emit``, ``close``), so a stage
    that closes its sinks on exit stops it at the right moment.
    """

    name = "curve"

    def __init__(self, gatekeeper: Gatekeeper, keys: ServerKeys) -> None:
        self.gatekeeper = gatekeeper
        self.keys = keys
        self.sockets: list[zmq.Socket] = []
        self.monitors: list[RefusalMonitor] = []

    @classmethod
    def start(cls, context: zmq.Context, config: CurveConfig) -> CurveServer:
        keys = ServerKeys.from_config(config)
        own = _load(config.client_secret, secret=True)[0]
        allowed = {_load(path, secret=False)[0]
                   for path in keys.authorized_clients.glob("*.key")}
        if own not in allowed:
            raise ValueError(f"the pipeline's own client key {config.client_secret} is not "
                             f"in the allow-list {keys.authorized_clients}: copy its .key file "
                             f"there, or {FIX}")
        gatekeeper = Gatekeeper.of(context)
        gatekeeper.allow(OUTSIDE_DOMAIN, allowed)
        log.info("CURVE: %d allow-listed client key(s) in %s", len(allowed),
                 keys.authorized_clients)
        return cls(gatekeeper, keys)

    def secure(self, socket: zmq.Socket, endpoint: str = "curve") -> None:
        """Makes ``socket`` a CURVE server whose peers the gatekeeper checks against the
        allow-list; refused handshakes are counted by a :class:`RefusalMonitor` under
        ``endpoint``."""
        socket.curve_secretkey = self.keys.secret
        socket.curve_publickey = self.keys.public
        socket.curve_server = True
        socket.zap_domain = OUTSIDE_DOMAIN.encode("ascii")
        self.sockets.append(socket)
        self.monitors.append(RefusalMonitor(socket, endpoint))

    def stop(self) -> None:
        for monitor in self.monitors:
            monitor.close()
        self.monitors.clear()
        for socket in self.sockets:
            socket.close(linger=0)
        self.sockets.clear()
        Gatekeeper.stop_for(self.gatekeeper.context)

    def emit(self, record: object, line: bytes) -> None:
        """Nothing to publish: present so the server can ride with the sinks."""

    def close(self) -> None:
        self.stop()
