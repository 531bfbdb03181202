"""What CURVE costs a frame hop: one PUSH/PULL pair on loopback tcp, plain and encrypted.

With tcp transport every internal hop carries the run's CURVE keys (docs/security.md); this
measures the round trip of one frame-sized message with and without them, in one process,
so the figure is the encryption and decryption alone (no pipeline around it).

    .venv/bin/python scripts/measure_curve_hop.py [--repeats 200]
"""

from __future__ import annotations

import argparse
import statistics
import time

import zmq

SIZES = {"320x240 BGR": 320 * 240 * 3, "640x480 BGR": 640 * 480 * 3,
         "1280x720 BGR": 1280 * 720 * 3}


def hop_ms(curve: bool, size: int, repeats: int) -> float:
    """Median milliseconds to send one ``size``-byte message and receive it."""
    context = zmq.Context()
    try:
        pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
        if curve:
            server_public, server_secret = zmq.curve_keypair()
            client_public, client_secret = zmq.curve_keypair()
            pull.curve_server = True
            pull.curve_secretkey, pull.curve_publickey = server_secret, server_public
            push.curve_serverkey = server_public
            push.curve_secretkey, push.curve_publickey = client_secret, client_public
        pull.bind("tcp://127.0.0.1:0")
        push.connect(pull.getsockopt(zmq.LAST_ENDPOINT))
        payload = b"x" * size
        push.send(payload)
        pull.recv()  # connected, handshake done
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            push.send(payload)
            pull.recv()
            times.append((time.perf_counter() - started) * 1000.0)
        return statistics.median(times)
    finally:
        context.destroy(linger=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    print(f"libzmq {zmq.zmq_version()}, pyzmq {zmq.__version__}, {args.repeats} repeats")
    print("| message | plain ms | CURVE ms | CURVE extra ms |\n|---|---|---|---|")
    for name, size in SIZES.items():
        plain, secured = hop_ms(False, size, args.repeats), hop_ms(True, size, args.repeats)
        print(f"| {name} ({size / 2**20:.2f} MiB) | {plain:.2f} | {secured:.2f} | "
              f"{secured - plain:.2f} |")


if __name__ == "__main__":
    main()
