"""The Host header check on the TCP listener, against DNS rebinding.

A web page on an attacker's site can make a browser on the server (or on an operator's
laptop with a tunnel) resolve the attacker's name to 127.0.0.1 and then read
``http://attacker.example:9179/status`` with the page's own origin. The browser sends
``Host: attacker.example``; a server that only answers its own names is immune.

Accepted on the TCP listener: loopback names (``localhost``, ``127.0.0.1``, ``::1``),
the host of ``http.listen``, the names in ``http.allowed_hosts``, and an IP address
written as the address the client actually connected to (a page cannot make a browser
send an IP literal of its own choosing for its own origin). Everything else, including a
missing Host header, is answered 421. The unix socket is not checked: no browser can
reach it, and its permissions already decide who may connect.

``GET /metrics`` is not checked either. Prometheus scrapes by whatever name service
discovery gives it (``srv1.dc1.example:9179``, a CNAME, an address relabelled into a
name), and a sidecar cannot know those names; a fleet of 200 servers would need each
one's own names in its config, and a renamed DNS record would turn every target down.
What a rebinding page could read there is the same text the monitoring system already
holds: counters and states labelled with names from the config file, no token, no
secret, nothing it can change (docs/security.md, "The status API").
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from anycast_announcer.http.app import error_response

__all__ = ["LOOPBACK_NAMES", "UNCHECKED_PATHS", "host_check_middleware", "host_of"]

LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "127.0.0.1", "::1"})
UNCHECKED_PATHS = frozenset({"/metrics"})
"""Read-only paths any Host may read (why: the module's docstring)."""
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104  # names, not a bind


def host_of(header: str) -> str:
    """The host part of a Host header, lowercased: ``[::1]:9179`` -> ``::1``."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    host, sep, port = value.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host
    return value


def _is_local_address(host: str, request: web.Request) -> bool:
    """``host`` is an IP literal equal to the address this connection was made to."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    transport = request.transport
    sockname = transport.get_extra_info("sockname") if transport is not None else None
    if not isinstance(sockname, tuple):
        return False
    try:
        return ipaddress.ip_address(sockname[0].split("%")[0]) == address
    except ValueError:
        return False


def _over_unix_socket(request: web.Request) -> bool:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock is not None and sock.family == socket.AF_UNIX


def host_check_middleware(listen_host: str, allowed_hosts: Iterable[str] = ()) -> Middleware:
    """A middleware answering 421 to TCP requests whose Host is not one of ours."""
    allowed = set(LOOPBACK_NAMES) | {host_of(name) for name in allowed_hosts}
    listen = host_of(f"[{listen_host}]" if ":" in listen_host else listen_host)
    if listen not in _WILDCARDS:
        allowed.add(listen)

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        if _over_unix_socket(request) or (
            request.method in {"GET", "HEAD"} and request.path in UNCHECKED_PATHS
        ):
            return await handler(request)
        header = request.headers.get(hdrs.HOST)
        host = host_of(header) if header else ""
        if host in allowed or _is_local_address(host, request):
            return await handler(request)
        shown = repr(header[:80]) if header else "missing"
        return error_response(
            421,
            f"Host {shown} is not a name of this sidecar; use 127.0.0.1 or add it to "
            "http.allowed_hosts",
        )

    return check_host
