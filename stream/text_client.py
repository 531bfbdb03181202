"""A minimal text publisher: what an ASR engine or subtitle feed does to add text.

Run beside ``hidemo run`` and type lines; each goes to the stream you name::

    python -m stream.text_client --endpoint tcp://127.0.0.1:5561 --stream demo0
    > I am happy with how I played today.

A program in any language can do the same in a few lines: connect a ZeroMQ PUB socket to the text
endpoint (the pipeline binds it: classify is the side that stays, so no other process can
take the address) and publish ``[stream id, {"text": ..., "time": time.monotonic()}]``
(topic = stream id). Lines sent before the pipeline's subscription reaches a fresh
connection are dropped by ZeroMQ, hence the short wait before the first one. With CURVE
(a non-loopback endpoint, or ``endpoints.secure: always``), pass ``--curve-keys DIR``: a
folder holding this client's ``client.key_secret`` (allow-listed by the pipeline) and the
pipeline's ``server.key``, as ``hidemo keys --out DIR`` writes them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import zmq

from stream.transport.curve import ClientKeys, client_security
from stream.transport.text_topic import TextLine


def publish(socket: zmq.Socket, stream: str, text: str, spoken: float | None = None) -> None:
    """Send one line of ``text`` for ``stream``, spoken at ``spoken`` (monotonic; now)."""
    line = TextLine(text=text, time=time.monotonic() if spoken is None else spoken)
    socket.send_multipart([stream.encode(), line.body()])


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m stream.text_client`` (the docs' CLI reference reads
    it too)."""
    parser = argparse.ArgumentParser(prog="python -m stream.text_client",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:5561",
                        help="the pipeline's text endpoint (endpoints.text; default: "
                             "%(default)s)")
    parser.add_argument("--stream", required=True, help="stream id, e.g. demo0")
    parser.add_argument("--curve-keys", type=Path, metavar="DIR",
                        help="CURVE keys: DIR/client.key_secret and DIR/server.key")
    parser.add_argument("--client-name", default="client",
                        help="which key pair in DIR: NAME.key_secret (default: %(default)s)")
    parser.add_argument("text", nargs="*", help="lines to send (default: read stdin)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    context = zmq.Context.instance()
    socket = context.socket(zmq.PUB)
    if args.curve_keys is not None:
        client_security(ClientKeys.from_dir(args.curve_keys, args.client_name))(socket)
    socket.connect(args.endpoint)
    time.sleep(1.0)  # let the pipeline's subscription arrive before the first line
    for line in args.text or (line.rstrip("\n") for line in sys.stdin):
        if line:
            publish(socket, args.stream, line)
    time.sleep(0.2)
    socket.close(linger=1000)
    return 0


if __name__ == "__main__":
    sys.exit(main())
