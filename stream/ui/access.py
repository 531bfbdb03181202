"""Who may see the page: where it binds, and the token a non-loopback bind requires.

The page shows live video of people, so it binds to loopback unless told otherwise, and a
bind that faces the network (``0.0.0.0``, a LAN address, a host name) is refused unless a
token is configured: ``HIDEMO_UI_TOKEN`` in the environment or ``ui.token_file``
(``--ui-token-file``); never a command-line value, which any local user could read in the
process list, and never the saved configuration. A browser passes it as ``?token=...``
(the page hands it on to its WebSocket) or ``Authorization: Bearer ...``; it is compared in
constant time.

Example:
    >>> parse_bind("127.0.0.1:8080")
    ('127.0.0.1', 8080)
    >>> is_loopback_host("0.0.0.0")
    False
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path

TOKEN_ENV = "HIDEMO_UI_TOKEN"
MIN_TOKEN_CHARS = 16


def parse_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as (host, port), or ValueError naming
    ``--ui-bind``."""
    host, sep, port = bind.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--ui-bind {bind!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
    return host, int(port)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host or interface name may face the network
        return False


def resolve_token(bind: str, token_file: Path | None,
                  environ: Mapping[str, str] | None = None) -> str | None:
    """The page's token (None: none needed, loopback only), or ValueError with the fix."""
    environ = os.environ if environ is None else environ
    token = environ.get(TOKEN_ENV) or None
    if token_file is not None:
        try:
            token = token_file.read_text().strip() or None
        except OSError as error:
            raise ValueError(f"--ui-token-file {token_file}: {error.strerror}") from None
        if token is None:
            raise ValueError(f"--ui-token-file {token_file} is empty")
    host, _ = parse_bind(bind)
    if token is None and not is_loopback_host(host):
        raise ValueError(
            f"--ui-bind {bind} faces the network: the page shows live video, so it needs a "
            f"token. Set {TOKEN_ENV}=<a long random string> (e.g. `export {TOKEN_ENV}="
            f"$(python -c 'import secrets; print(secrets.token_urlsafe(24))')`) or pass "
            f"--ui-token-file FILE, then open http://{bind}/?token=<token>; or bind to "
            f"127.0.0.1")
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the web view's token is {len(token)} characters; use at least "
                         f"{MIN_TOKEN_CHARS} (e.g. secrets.token_urlsafe(24))")
    return token


def token_ok(expected: str | None, given: str | None) -> bool:
    """Whether ``given`` matches ``expected`` (always, when no token is set), in constant
    time."""
    if expected is None:
        return True
    if given is None:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def allowed_hosts(host: str) -> list[str]:
    """The Host headers the page answers: on loopback only loopback names, so a web page
    elsewhere cannot reach it by pointing a DNS name at 127.0.0.1 (DNS rebinding)."""
    if is_loopback_host(host):
        return ["127.0.0.1", "localhost", "[::1]", "::1"]
    return ["*"]
