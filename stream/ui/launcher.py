"""Starts the web view's process beside the pipeline and keeps it up, apart from it.

The view is not a stage (:class:`stream.side_process.SideProcess`): :class:`UiProcess`
starts ``python -m stream.ui.server`` and restarts it with backoff when it dies (at most
``max_restarts`` times, then the pipeline goes on without it). Its log goes to ``ui.log``
beside the stages' logs.

Example:
    >>> ui = UiProcess(spec_path, log_path, token=None)  # doctest: +SKIP
    >>> ui.start(); ...; ui.stop()  # doctest: +SKIP
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from stream.config import EndpointConfig
from stream.side_process import SideProcess
from stream.strictjson import JsonDict
from stream.transport.endpoints import Endpoints
from stream.ui.access import TOKEN_ENV

STOP_TIMEOUT_S = 5.0


class UiSpec(BaseModel):
    """What the web server needs (written by ``hidemo run``, read by
    :mod:`stream.ui.server`): where to listen, what to subscribe to, for which streams.
    The token never goes in here (it travels in the server's environment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: int = Field(ge=1, le=65535)
    streams: list[str]
    history_s: float = Field(gt=0)
    max_clients: int = Field(ge=1)
    endpoints: Endpoints
    """The run's addresses, with the stream ids its publishers admit and its internal keys."""
    endpoint_config: EndpointConfig
    stats_path: Path | None = None
    preview_publishers: int = Field(1, ge=1)
    """How many processes publish previews (fused placement: one per worker, each on its
    own endpoint, :meth:`stream.transport.endpoints.Endpoints.for_worker`)."""
    media_streams: list[str] = Field(default_factory=list)
    """Streams read from a file: their transcript is shown on the media clock (seconds into
    the source); the others' on the wall clock."""
    person_timeout_s: float = Field(3.0, gt=0)
    """Persons not seen for this long (classify's ``person_timeout_s``) fold into the
    page's "N earlier"."""


class UiProcess(SideProcess):
    """The web server process, restarted when it dies, stopped with the run."""

    def __init__(self, spec_path: Path, log_path: Path, token: str | None,
                 max_restarts: int = 5) -> None:
        super().__init__("the web view", log_path, max_restarts=max_restarts,
                         stop_timeout_s=STOP_TIMEOUT_S)
        self.spec_path = spec_path
        self.token = token

    def command(self) -> list[str]:
        return [sys.executable, "-m", "stream.ui.server", str(self.spec_path)]

    def environment(self) -> dict[str, str]:
        """The token travels in the environment, never on the command line or in the spec."""
        env = super().environment()
        env.pop(TOKEN_ENV, None)
        if self.token is not None:
            env[TOKEN_ENV] = self.token
        return env

    def report(self) -> JsonDict:
        return {"restarts": self.restarts, "exit_codes": list(self.exit_codes),
                "log": str(self.log_path), "warnings": list(self.warnings)}


def check_port(host: str, port: int) -> str | None:
    """Why the page cannot listen on ``host:port`` now, or None."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as error:
        return (f"--ui-bind {host}:{port}: {error.strerror}; choose another port "
                f"(--ui-bind {host}:PORT)")
    finally:
        probe.close()
    return None
