"""Counting established TCP connections to a local address and ports (netlink sock_diag).

A drain waits for the sessions on this server to end before it moves the route; this is
how it knows. Blocking netlink calls: run them in a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from typing import Any

from pyroute2 import DiagSocket

__all__ = ["count_established"]

_TCP_ESTABLISHED = 1


def count_established(address: str, ports: Collection[int]) -> int:
    """Established TCP connections whose local end is ``address`` on one of ``ports``."""
    wanted = ipaddress.ip_address(address)
    family = socket.AF_INET if wanted.version == 4 else socket.AF_INET6
    count = 0
    diag: Any
    with DiagSocket() as diag:
        diag.bind()
        for message in diag.get_sock_stats(family=family, states=1 << _TCP_ESTABLISHED):
            local = message.get("idiag_src")
            if (
                local is not None
                and message.get("idiag_sport") in ports
                and ipaddress.ip_address(local) == wanted
            ):
                count += 1
    return count
