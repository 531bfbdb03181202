"""The socket layout in one table, and the bound on what every receiving socket accepts."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import zmq

from stream.config import EndpointConfig
from stream.transport.curve import write_keys
from stream.transport.endpoints import (
    LAYOUT,
    SUBSCRIPTION_MAX_BYTES,
    Endpoints,
    connect_address,
    max_message_bytes,
    open_endpoint,
    open_socket,
)

PAIRS = {zmq.PUSH: zmq.PULL, zmq.PULL: zmq.PUSH, zmq.PUB: zmq.SUB, zmq.SUB: zmq.PUB}


def test_the_layout_covers_every_endpoint_with_matching_socket_types() -> None:
    addresses = {f.name for f in dataclasses.fields(Endpoints)} - {"topics", "keys"}
    assert set(LAYOUT) == addresses
    for name, hop in LAYOUT.items():
        assert PAIRS[hop.bind.kind] == hop.connect.kind, name
    # the pipeline binds the text topic: a publisher connects, nobody can take the address
    assert LAYOUT["text"].bind.opened_by == ("classify",)
    assert LAYOUT["text"].bind.kind == zmq.SUB
    assert {name for name, hop in LAYOUT.items() if hop.outside} == {"predictions", "text"}


def test_the_pipeline_connects_to_its_own_wildcard_binds_on_loopback() -> None:
    assert connect_address("tcp://*:5560") == "tcp://127.0.0.1:5560"
    assert connect_address("tcp://0.0.0.0:5560") == "tcp://127.0.0.1:5560"
    assert connect_address("tcp://[::]:5560") == "tcp://[::1]:5560"
    for kept in ("tcp://10.0.0.5:5560", "ipc:///tmp/run/predictions"):
        assert connect_address(kept) == kept


def test_every_receiving_socket_is_bounded(tmp_path: Path) -> None:
    config = EndpointConfig(max_frame_mb=32, predictions=f"ipc://{tmp_path}/predictions",
                            text=f"ipc://{tmp_path}/text")
    endpoints = Endpoints.for_config(config, tmp_path)
    context = zmq.Context()
    try:
        for name in LAYOUT:
            for side in ("bind", "connect"):
                socket = open_endpoint(context, endpoints, name, side, config)
                limit = socket.getsockopt(zmq.MAXMSGSIZE)
                if socket.type == zmq.XPUB:  # every PUB of the layout is a gated XPUB
                    assert limit == SUBSCRIPTION_MAX_BYTES, (name, side)
                elif socket.type != zmq.PUSH:
                    assert 0 < limit == max_message_bytes(name, config), (name, side)
                socket.close(linger=0)
        assert max_message_bytes("detect_in", config) == 32 * 2**20  # frame hops: config
        assert max_message_bytes("status", config) == 2**20
        assert max_message_bytes("credits", config) == 4 * 2**10
        assert max_message_bytes("text", config) == 64 * 2**10
        # a socket opened without a limit still gets the default one
        plain = open_socket(context, zmq.PULL, f"ipc://{tmp_path}/plain", bind=True)
        assert plain.getsockopt(zmq.MAXMSGSIZE) == 64 * 2**20
    finally:
        context.destroy(linger=0)


def test_an_oversized_message_is_dropped_with_its_peer_and_others_still_arrive(
        tmp_path: Path) -> None:
    endpoint = f"ipc://{tmp_path}/in"
    context = zmq.Context()
    try:
        pull = open_socket(context, zmq.PULL, endpoint, bind=True, hwm=10, max_bytes=2**20)
        big = open_socket(context, zmq.PUSH, endpoint, bind=False, hwm=10)
        big.send(b"x" * (2**20 + 1))  # one byte over the limit
        assert not pull.poll(1000), "an oversized message was delivered"
        small = open_socket(context, zmq.PUSH, endpoint, bind=False, hwm=10)
        small.send(b"ok")
        assert pull.poll(3000) and pull.recv() == b"ok"
        assert not pull.poll(200)
    finally:
        context.destroy(linger=0)


def test_a_secured_endpoint_is_never_opened_without_curve(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    write_keys(keys)
    config = EndpointConfig(predictions=f"ipc://{tmp_path}/predictions",
                            text=f"ipc://{tmp_path}/text", secure="always",
                            curve={"dir": keys})
    endpoints = Endpoints.for_config(config, tmp_path)
    context = zmq.Context()
    try:
        with pytest.raises(ValueError, match="needs CURVE"):
            open_endpoint(context, endpoints, "predictions", "bind", config)
        sub = open_endpoint(context, endpoints, "predictions", "connect", config)
        assert sub.getsockopt(zmq.MECHANISM) == zmq.CURVE
        internal = open_endpoint(context, endpoints, "status", "bind", config)
        assert internal.getsockopt(zmq.MECHANISM) == zmq.NULL  # internal hops: private ipc
    finally:
        context.destroy(linger=0)
