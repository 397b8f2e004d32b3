"""Counting established TCP connections to a local address and ports (netlink sock_diag).

A drain waits for the sessions on this server to end before it moves the route; this is
how it knows. Blocking netlink calls: run them in a thread (``asyncio.to_thread``).

An IPv4 client accepted by a dual-stack listener (``[::]`` with ``IPV6_V6ONLY`` off, the
default of Go, Java and nginx's ``ipv6only=off``) is an AF_INET6 socket whose addresses
are IPv4-mapped (``::ffff:10.255.0.1``): for an IPv4 address both families are dumped
and mapped addresses compared unmapped, or those sessions would be invisible to drains.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Collection
from typing import Any

from pyroute2 import DiagSocket

__all__ = ["count_established", "unmapped"]

_TCP_ESTABLISHED = 1

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def unmapped(address: IPAddress) -> IPAddress:
    """``address``, with an IPv4-mapped IPv6 address turned into the IPv4 one it maps."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def count_established(address: str, ports: Collection[int]) -> int:
    """Established TCP connections whose local end is ``address`` on one of ``ports``
    (for an IPv4 address, also those a dual-stack IPv6 socket accepted)."""
    wanted = ipaddress.ip_address(address)
    families = (socket.AF_INET, socket.AF_INET6) if wanted.version == 4 else (socket.AF_INET6,)
    count = 0
    diag: Any
    with DiagSocket() as diag:
        diag.bind()
        for family in families:
            for message in diag.get_sock_stats(family=family, states=1 << _TCP_ESTABLISHED):
                local = message.get("idiag_src")
                if (
                    local is not None
                    and message.get("idiag_sport") in ports
                    and unmapped(ipaddress.ip_address(local)) == wanted
                ):
                    count += 1
    return count
