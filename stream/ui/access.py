"""Who may see the page: where it binds, and the token a non-loopback bind requires.

The page shows live video of people, so it binds to loopback unless told otherwise, and a
bind that faces the network (``0.0.0.0``, a LAN address, a host name) is refused unless a
token is configured: ``HIDEMO_UI_TOKEN`` in the environment or ``ui.token_file``
(``--ui-token-file``); never a command-line value, which any local user could read in the
process list, and never the saved configuration. A browser passes it as ``?token=...``
(the page hands it on to its WebSocket) or ``Authorization: Bearer ...``; it is compared in
constant time.

The run's other HTTP endpoints (metrics and health, :mod:`stream.run.service`) follow the
same rule with their own variable and options: a :class:`TokenRule` names them.

Example:
    >>> parse_bind("127.0.0.1:8080")
    ('127.0.0.1', 8080)
    >>> is_loopback_host("0.0.0.0")
    False
    >>> browser_urls("0.0.0.0", 8080, "?token=T", {"eth0": ["192.168.1.5"], "lo": ["127.0.0.1"]})
    ['http://192.168.1.5:8080/?token=T']
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TOKEN_ENV = "HIDEMO_UI_TOKEN"
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class TokenRule:
    """Whose token: the environment variable, the options that set the bind and the token
    file, why a network bind needs it, and how a client then passes it."""

    env: str
    bind_option: str
    file_option: str
    why: str
    then: str
    """What to do with the token once set; ``{bind}`` is replaced."""
    example_port: int


UI_TOKEN = TokenRule(env=TOKEN_ENV, bind_option="--ui-bind", file_option="--ui-token-file",
                     why="the page shows live video", then="open http://{bind}/?token=<token>",
                     example_port=8080)


def parse_bind(bind: str, option: str = UI_TOKEN.bind_option,
               example_port: int = UI_TOKEN.example_port) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) as (host, port), or ValueError naming
    ``option``."""
    host, sep, port = bind.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{option} {bind!r} is not HOST:PORT (e.g. 127.0.0.1:{example_port})")
    return host, int(port)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host or interface name may face the network
        return False


def resolve_token(bind: str, token_file: Path | None,
                  environ: Mapping[str, str] | None = None,
                  rule: TokenRule = UI_TOKEN) -> str | None:
    """The token of ``rule``'s endpoint (None: none needed, loopback only), or ValueError
    with the fix."""
    environ = os.environ if environ is None else environ
    token = environ.get(rule.env) or None
    if token_file is not None:
        try:
            token = token_file.read_text().strip() or None
        except OSError as error:
            raise ValueError(f"{rule.file_option} {token_file}: {error.strerror}") from None
        if token is None:
            raise ValueError(f"{rule.file_option} {token_file} is empty")
    host, _ = parse_bind(bind, rule.bind_option, rule.example_port)
    if token is None and not is_loopback_host(host):
        then = rule.then.replace("{bind}", bind)
        raise ValueError(
            f"{rule.bind_option} {bind} faces the network: {rule.why}, so it needs a "
            f"token. Set {rule.env}=<a long random string> (e.g. `export {rule.env}="
            f"$(python -c 'import secrets; print(secrets.token_urlsafe(24))')`) or pass "
            f"{rule.file_option} FILE, then {then}; or bind to "
            f"127.0.0.1")
    if token is not None and len(token) < MIN_TOKEN_CHARS:
        raise ValueError(f"the token in {rule.env} or {rule.file_option} is {len(token)} "
                         f"characters; use at least {MIN_TOKEN_CHARS} (e.g. "
                         f"secrets.token_urlsafe(24))")
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


def interface_addresses() -> dict[str, list[str]]:
    """This host's IP addresses per network interface that is up (psutil)."""
    import psutil

    stats = psutil.net_if_stats()
    families = (socket.AF_INET, socket.AF_INET6)
    return {name: [a.address for a in addresses if a.family in families]
            for name, addresses in psutil.net_if_addrs().items()
            if name in stats and stats[name].isup}


def browser_urls(host: str, port: int, query: str = "",
                 interfaces: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The addresses a browser can open the page at, bound to ``host:port``.

    A wildcard bind (``0.0.0.0``; ``::``, IPv6 and on most systems IPv4 too) is not an
    address anyone can open: it stands for each of this host's interface addresses
    (``interfaces``; None: :func:`interface_addresses`), loopback and IPv6 link-local ones
    left out (a browser on another machine cannot use them); empty when the host has no
    other address. Any other host is its own single address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a host name
        return [f"http://{host}:{port}/{query}"]
    if not address.is_unspecified:
        return [f"http://{_shown(address)}:{port}/{query}"]
    found = interface_addresses() if interfaces is None else interfaces
    urls = []
    for addresses in found.values():
        for text in addresses:
            try:
                one = ipaddress.ip_address(text.split("%")[0])
            except ValueError:
                continue
            if one.is_loopback or one.is_link_local or one.is_unspecified:
                continue
            if one.version == 6 and address.version == 4:
                continue  # an IPv4 wildcard does not listen on IPv6
            url = f"http://{_shown(one)}:{port}/{query}"
            if url not in urls:
                urls.append(url)
    return sorted(urls, key=lambda url: ("[" in url, url))


def _shown(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return f"[{address}]" if address.version == 6 else str(address)
