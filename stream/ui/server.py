"""The web view's process: ``python -m stream.ui.server SPEC_JSON``.

Started by :mod:`stream.ui.launcher` with a :class:`UiSpec` (written by ``hidemo run``)
and the token, if any, in ``HIDEMO_UI_TOKEN``. It subscribes to the run's published
outputs (preview, predictions, transcript, monitor), serves the page with uvicorn, and on
exit writes its counters to ``stats_path``. It exits by itself when ``hidemo run`` is gone,
as the stages do.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

import uvicorn
import zmq
import zmq.asyncio

from stream.files import write_document
from stream.transport.endpoints import connect_address, open_endpoint
from stream.ui.access import TOKEN_ENV
from stream.ui.app import build_app
from stream.ui.hub import TOPICS, Hub
from stream.ui.launcher import UiSpec

log = logging.getLogger(__name__)

PARENT_CHECK_S = 1.0


def subscribe(context: zmq.asyncio.Context, spec: UiSpec) -> dict[str, zmq.asyncio.Socket]:
    """A SUB socket per topic, connected as :data:`stream.transport.endpoints.LAYOUT` declares (the
    predictions with the run's CURVE client keys when they are secured). The preview socket
    also connects to every further fused worker's preview endpoint: one SUB takes them all."""
    endpoints = spec.endpoints
    sockets = {}
    for topic in TOPICS:
        socket = open_endpoint(context, endpoints, topic, "connect", spec.endpoint_config)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        sockets[topic] = socket
    for worker in range(1, spec.preview_publishers):
        address = endpoints.for_worker(worker, spec.endpoint_config).preview
        sockets["preview"].connect(connect_address(address))
    return sockets


async def serve(spec: UiSpec, token: str | None) -> Hub:
    context = zmq.asyncio.Context()
    hub = Hub(spec.streams, spec.history_s, spec.max_clients,
              media_streams=spec.media_streams, person_timeout_s=spec.person_timeout_s)
    try:
        app = build_app(hub, token=token, host=spec.host, subscriptions=subscribe(context, spec))
        server = uvicorn.Server(uvicorn.Config(app, host=spec.host, port=spec.port,
                                               log_level="warning", lifespan="on",
                                               ws="websockets-sansio"))
        parent = os.getppid()

        async def orphan_watch() -> None:
            while not server.should_exit:
                await asyncio.sleep(PARENT_CHECK_S)
                if os.getppid() != parent:
                    log.warning("hidemo run is gone; the web view stops")
                    server.should_exit = True

        watch = asyncio.create_task(orphan_watch())
        await server.serve()
        watch.cancel()
    finally:
        context.destroy(linger=0)
    return hub


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m stream.ui.server SPEC_JSON", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s ui %(name)s: %(message)s")
    spec = UiSpec.model_validate_json(Path(args[0]).read_text())
    # uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # handler it found: a quiet one here, so the counters below still get written
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    hub = asyncio.run(serve(spec, os.environ.get(TOKEN_ENV) or None))
    if spec.stats_path is not None:
        try:  # whole or not at all: the run's summary then says its stats are missing
            write_document(spec.stats_path, json.dumps(hub.stats(), indent=2), durable=False)
        except OSError as error:
            log.warning("ui stats %s not written: %s", spec.stats_path, error)
    return 0


if __name__ == "__main__":
    sys.exit(main())
