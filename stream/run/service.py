"""The run's HTTP endpoints for operators: ``/metrics``, ``/healthz``, ``/readyz``.

Served from a thread of the supervisor's process (``hidemo run --metrics-bind HOST:PORT``),
by the standard library's WSGI server, one thread per connection: a scrape reads the
supervisor's state (:mod:`stream.run.metrics`, :mod:`stream.run.health`) and never waits
on it. ``/metrics`` is prometheus_client's own WSGI application (text format, or
OpenMetrics when asked). ``/healthz`` and ``/readyz`` answer 200 with ``{"alive": true}``
or ``{"ready": true}``, and 503 with the reasons otherwise.

Who may ask: as the web view (:mod:`stream.ui.access`), loopback by default, and a bind
that faces the network needs a token (``HIDEMO_METRICS_TOKEN`` or ``--metrics-token-file``),
sent as ``Authorization: Bearer <token>`` on every endpoint. On loopback, a request whose
``Host`` is not a loopback name is refused (a web page cannot reach the endpoints by
pointing a DNS name at 127.0.0.1).

Example:
    >>> service = Service.bind("127.0.0.1:9109", token=None)  # doctest: +SKIP
    >>> service.serve(metrics.registry, alive, ready)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from stream.run.health import Verdict
from stream.ui.access import TokenRule, allowed_hosts, is_loopback_host, parse_bind, token_ok

METRICS_TOKEN = TokenRule(
    env="HIDEMO_METRICS_TOKEN", bind_option="--metrics-bind",
    file_option="--metrics-token-file",
    why="the metrics and health endpoints name the run's streams, sources and engines",
    then="give Prometheus the same token (authorization: {credentials_file: FILE})",
    example_port=9109)
REQUEST_TIMEOUT_S = 10.0
"""A client that sends nothing for this long is dropped (its thread freed)."""

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Wsgi = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    timeout = REQUEST_TIMEOUT_S

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a scrape every few seconds is not news


def given_token(environ: dict[str, Any]) -> str | None:
    scheme, _, value = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def host_name(header: str) -> str:
    """The host of a ``Host`` header (``127.0.0.1:9109`` -> ``127.0.0.1``, ``[::1]:80`` ->
    ``[::1]``)."""
    if header.startswith("["):
        return header[:header.find("]") + 1]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def application(metrics: Wsgi, alive: Callable[[], Verdict], ready: Callable[[], Verdict],
                token: str | None, hosts: list[str]) -> Wsgi:
    """The WSGI app: the checks (host, token), then the three endpoints."""
    any_host = "*" in hosts

    def answer(start: StartResponse, status: str, body: object,
               headers: list[tuple[str, str]] | None = None) -> list[bytes]:
        data = json.dumps(body).encode()
        start(status, [("Content-Type", "application/json"),
                       ("Content-Length", str(len(data))), *(headers or [])])
        return [data]

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        if not any_host and host_name(environ.get("HTTP_HOST", "")) not in hosts:
            return answer(start, "400 Bad Request", {"error": "unknown Host header"})
        if not token_ok(token, given_token(environ)):
            return answer(start, "401 Unauthorized", {"error": "a bearer token is needed"},
                          [("WWW-Authenticate", 'Bearer realm="hidemo"')])
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            return metrics(environ, start)
        if path in ("/healthz", "/readyz"):
            verdict, key = (alive(), "alive") if path == "/healthz" else (ready(), "ready")
            status = "200 OK" if verdict.ok else "503 Service Unavailable"
            return answer(start, status, verdict.body(key))
        return answer(start, "404 Not Found",
                      {"error": f"no {path[:64]!r}; try /metrics, /healthz or /readyz"})

    return app


class Service:
    """The bound server socket; :meth:`serve` starts answering in a thread."""

    def __init__(self, server: WSGIServer, host: str, token: str | None) -> None:
        self.server = server
        self.host = host
        self.token = token
        self._thread: threading.Thread | None = None

    @classmethod
    def bind(cls, bind: str, token: str | None) -> Service:
        """Listen on ``bind`` (``HOST:PORT``) now, so a port in use is an error before any
        stage starts (ValueError naming ``--metrics-bind`` and the fix)."""
        host, port = parse_bind(bind, METRICS_TOKEN.bind_option, METRICS_TOKEN.example_port)
        server_class = _Server6 if ":" in host else _Server
        try:
            server = make_server(host, port, _unset, server_class=server_class,
                                 handler_class=_QuietHandler)
        except OSError as error:
            raise ValueError(f"--metrics-bind {bind}: {error.strerror or error}; choose "
                             f"another port (--metrics-bind {host}:PORT)") from None
        return cls(server, host, token)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def serve(self, registry: CollectorRegistry, alive: Callable[[], Verdict],
              ready: Callable[[], Verdict]) -> None:
        hosts = allowed_hosts(self.host) if is_loopback_host(self.host) else ["*"]
        self.server.set_app(application(make_wsgi_app(registry), alive, ready, self.token,
                                        hosts))
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.2},
                                        name="metrics-server", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join(5.0)
        self.server.server_close()


def _unset(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
    start("503 Service Unavailable", [("Content-Type", "text/plain")])
    return [b"starting\n"]
