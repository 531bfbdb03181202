"""The credit window between classify and an unpaced capture, over real ZeroMQ sockets."""

from __future__ import annotations

import threading
import time

import zmq

from stream.transport.credits import CreditPublisher, CreditWindow


def _pair(context: zmq.Context, name: str, stream: str) -> tuple[zmq.Socket, zmq.Socket]:
    pub = context.socket(zmq.PUB)
    pub.bind(f"inproc://{name}")
    sub = context.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, stream.encode())
    sub.connect(f"inproc://{name}")
    time.sleep(0.05)  # let the subscription reach the publisher
    return pub, sub


def test_window_waits_for_classify_and_ignores_other_streams() -> None:
    context = zmq.Context()
    try:
        pub, sub = _pair(context, "credits-a", "s1")
        publisher = CreditPublisher(pub)
        window = CreditWindow(sub, "s1", in_flight=2, timeout_s=5.0)
        assert window.allows(1, 0) and window.allows(1, 1) and not window.allows(1, 2)

        def acknowledge() -> None:
            time.sleep(0.2)
            publisher.ack("s10", 1, 50)  # a stream whose name starts with ours: not ours
            publisher.ack("s1", 0, 90)  # an older generation: not this one
            publisher.flush()
            time.sleep(0.1)
            publisher.ack("s1", 1, 0)
            publisher.ack("s1", 1, 1)  # the highest of a batch goes out
            publisher.flush()

        thread = threading.Thread(target=acknowledge)
        started = time.monotonic()
        thread.start()
        window.wait(1, 3, stop=lambda: False)  # needs frame 1 acknowledged
        waited = time.monotonic() - started
        thread.join()
        assert window.acked == 1 and window.timeouts == 0
        assert waited >= 0.25  # it did not go before the real acknowledgement
        assert not window.allows(1, 4)
    finally:
        context.destroy(linger=0)


def test_window_sends_anyway_after_the_timeout_and_on_stop() -> None:
    context = zmq.Context()
    try:
        _, sub = _pair(context, "credits-b", "s1")
        window = CreditWindow(sub, "s1", in_flight=1, timeout_s=0.2)
        started = time.monotonic()
        window.wait(1, 5, stop=lambda: False)  # nobody acknowledges: a lost frame
        assert 0.2 <= time.monotonic() - started < 1.0 and window.timeouts == 1
        started = time.monotonic()
        window.wait(1, 5, stop=lambda: True)
        assert time.monotonic() - started < 0.1 and window.timeouts == 1
    finally:
        context.destroy(linger=0)
