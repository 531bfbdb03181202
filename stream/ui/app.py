"""The web application (Starlette): the page, its WebSocket, and two JSON endpoints.

- ``GET /``: the page (``static/index.html``, ``static/app.js``); no external assets, so it
  works offline.
- ``WS /ws``: one connection per page. Text messages are JSON (``hello`` with the current
  state, then ``prediction``, ``transcript``, ``monitor``); binary ones are frames
  (:func:`stream.ui.hub.frame_message`). The page sends ``ack`` when it has drawn a frame
  (frames are paced by the browser: :class:`stream.ui.hub.Client`).
- ``GET /api/state``: what ``hello`` carries. ``GET /api/stats``: the view's own counters
  (per topic received and refused; per client sent and dropped).

With a token (:mod:`stream.ui.access`) every route but the static files needs it. Host
headers are checked (DNS rebinding) and a WebSocket from a page of another origin is refused
(a site in the same browser could otherwise read the stream).

Example:
    >>> app = build_app(Hub(["demo0"], 60.0), token=None, host="127.0.0.1")  # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import zmq
import zmq.asyncio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from stream.ui.access import allowed_hosts, token_ok
from stream.ui.hub import Client, Hub

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")


def given_token(connection: HTTPConnection) -> str | None:
    auth = connection.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return connection.query_params.get("token")


def same_origin(connection: HTTPConnection) -> bool:
    """A browser's WebSocket says which page opened it (``Origin``); only this server's
    own page may. A client that sends no Origin is not a browser page."""
    origin = connection.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc.lower() == connection.headers.get("host", "").lower()


async def read_topic(hub: Hub, topic: str, socket: zmq.asyncio.Socket) -> None:
    """Feed ``hub`` from one subscription until cancelled."""
    while True:
        parts = await socket.recv_multipart()
        hub.receive(topic, parts)


async def send_loop(websocket: WebSocket, client: Client) -> None:
    """Send ``client``'s queue until the connection ends. If the browser stops reading,
    this task alone waits; the client's queue keeps only the newest and counts the rest."""
    while True:
        for item in await client.take():
            if isinstance(item, bytes):
                await websocket.send_bytes(item)
            else:
                await websocket.send_text(item)
            client.sent(item)


def build_app(hub: Hub, *, token: str | None, host: str,
              subscriptions: Mapping[str, zmq.asyncio.Socket] | None = None) -> Starlette:
    """The application serving ``hub``; ``subscriptions`` (topic -> SUB socket) are read
    while it runs."""
    page = (STATIC / "index.html").read_text()

    def authorised(connection: HTTPConnection) -> bool:
        return token_ok(token, given_token(connection))

    async def index(request: Request) -> Response:
        if not authorised(request):
            return PlainTextResponse("a token is required: open /?token=...", status_code=401)
        return HTMLResponse(page)

    async def state(request: Request) -> Response:
        if not authorised(request):
            return PlainTextResponse("a token is required", status_code=401)
        return JSONResponse(hub.state())

    async def stats(request: Request) -> Response:
        if not authorised(request):
            return PlainTextResponse("a token is required", status_code=401)
        return JSONResponse(hub.stats())

    async def websocket_route(websocket: WebSocket) -> None:
        if not authorised(websocket) or not same_origin(websocket):
            await websocket.close(code=1008)  # policy violation (refused before accept)
            return
        client = hub.join(f"{websocket.client.host}:{websocket.client.port}"
                          if websocket.client else "client")
        if client is None:
            await websocket.close(code=1013)  # try again later: max_clients
            return
        await websocket.accept()
        sender = asyncio.create_task(send_loop(websocket, client))
        try:
            while True:
                if await websocket.receive_text() == "ack":  # raises on disconnect
                    client.ack()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender
            hub.leave(client)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        readers = [asyncio.create_task(read_topic(hub, topic, socket))
                   for topic, socket in (subscriptions or {}).items()]
        try:
            yield
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    return Starlette(
        routes=[Route("/", index), Route("/api/state", state), Route("/api/stats", stats),
                Route("/favicon.ico", lambda request: Response(status_code=204)),
                WebSocketRoute("/ws", websocket_route),
                Mount("/static", StaticFiles(directory=STATIC), name="static")],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host))],
        lifespan=lifespan)
