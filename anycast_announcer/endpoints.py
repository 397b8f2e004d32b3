"""Where a check's service listens: the host and port of tcp and http(s) checks (pure).

Drains wait for connections to these ports and the listener watch follows these
sockets, so both read them from one place; a command check names no endpoint.
"""

from __future__ import annotations

import urllib.parse

from anycast_announcer.config import CheckConfig, HttpCheck, TcpCheck

__all__ = ["check_endpoint", "check_port"]


def check_endpoint(check: CheckConfig) -> tuple[str, int] | None:
    """(host, port) a tcp or http(s) check connects to; None for a command check or a
    URL whose port is not a number."""
    if isinstance(check, TcpCheck):
        return check.host, check.port
    if isinstance(check, HttpCheck):
        parts = urllib.parse.urlsplit(check.url)
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        return parts.hostname or "", port
    return None


def check_port(check: CheckConfig) -> int | None:
    """The port a tcp or http(s) check connects to (None for a command check)."""
    endpoint = check_endpoint(check)
    return endpoint[1] if endpoint is not None else None
