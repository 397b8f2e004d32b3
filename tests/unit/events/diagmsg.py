"""Builders of the kernel's messages, byte for byte, for the pure tests of the codecs."""

from __future__ import annotations

import ipaddress
import socket
import struct

from anycast_announcer.events.netlink import pack_request

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def attr(kind: int, value: bytes) -> bytes:
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(value)
    return struct.pack("=HH", length, kind) + value + bytes(-length % 4)


def _raw(address: IPAddress) -> bytes:
    return address.packed.ljust(16, b"\0")


def diag_payload(
    address: str,
    port: int,
    peer: str | None = None,
    peer_port: int = 0,
    state: int = 7,
    v6only: bool | None = None,
) -> bytes:
    """An inet_diag_msg as the destroy broadcast or a dump sends it."""
    local = ipaddress.ip_address(address)
    family = socket.AF_INET if local.version == 4 else socket.AF_INET6
    unspecified = "0.0.0.0" if local.version == 4 else "::"
    remote = ipaddress.ip_address(peer or unspecified)
    body = struct.pack("=BBBB", family, state, 0, 0)
    body += struct.pack("!HH", port, peer_port) + _raw(local) + _raw(remote)
    body += struct.pack("=I", 0) + bytes(8) + struct.pack("=IIIII", 0, 0, 0, 0, 0)
    if v6only is not None:
        body += attr(11, bytes([int(v6only)]))
    return body + attr(5, b"\x06")  # INET_DIAG_PROTOCOL, as the broadcast adds it


def datagram(payload: bytes, kind: int = 20) -> bytes:
    """A whole one-message datagram (nlmsghdr + payload), SOCK_DIAG_BY_FAMILY by default."""
    return pack_request(kind, 0, 0, payload)
