"""sock_diag for TCP listeners, pure part: message layout, requests, the kernel filter.

Theory of operation: every TCP socket freed in a network namespace is reported to the
subscribers of ``SKNLGRP_INET_TCP_DESTROY`` (group 1) and ``SKNLGRP_INET6_TCP_DESTROY``
(group 3) as one ``SOCK_DIAG_BY_FAMILY`` message: ``nlmsghdr`` then ``inet_diag_msg``. A
destroyed socket reports state ``TCP_CLOSE`` whatever it was, so the state does not tell a
listener from a connection. The endpoints do: a listener never had a peer, so its
destination port and address are zero; a connection accepted on the service port has the
client's port and address (a connection aborted with SO_LINGER 0 loses its port but keeps
the client's address). :func:`destroy_filter` compiles exactly that test, plus the
watched source ports, to classic BPF, so the kernel drops every other message before it
reaches user space: client churn on the port costs no Python work.

A destroyed listener is only a hint: another socket may still serve the target (an
SO_REUSEPORT sibling, a wildcard socket, an IPv6 dual-stack one). :func:`serves` decides
that from a dump of LISTEN sockets (:func:`listen_request`), and :func:`relevant` tells
which targets a destroyed socket could have been serving at all.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from anycast_announcer.events.netlink import NetlinkFormatError, attributes

__all__ = [
    "SKNLGRP_INET6_TCP_DESTROY",
    "SKNLGRP_INET_TCP_DESTROY",
    "SOCK_DIAG_BY_FAMILY",
    "DiagSocket",
    "IPAddress",
    "ListenTarget",
    "destroy_filter",
    "listen_request",
    "pack_filter",
    "parse_diag",
    "relevant",
    "serves",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
SKNLGRP_INET_TCP_DESTROY = 1
SKNLGRP_INET6_TCP_DESTROY = 3
TCP_LISTEN = 10
INET_DIAG_SKV6ONLY = 11
MAX_FILTER_PORTS = 2000  # 2 instructions a port, under BPF_MAXINSNS (4096)

# inet_diag_msg: family, state, timer, retrans, then inet_diag_sockid (sport, dport,
# src[16], dst[16], if, cookie[8]) and expires, rqueue, wqueue, uid, inode.
_DIAG_MSG = struct.Struct("=BBBB2s2s16s16sI8sIIIII")
_SPORT_AT, _DPORT_AT, _DST_AT = 20, 22, 40  # offsets in the datagram (after nlmsghdr)

# classic BPF opcodes (linux/filter.h)
_LD_W_ABS = 0x20
_LD_H_ABS = 0x28
_JEQ_K = 0x15
_RET_K = 0x06
_ACCEPT = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ListenTarget:
    """An address and TCP port a service must be listening on."""

    address: IPAddress
    port: int

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")

    def __str__(self) -> str:
        host = f"[{self.address}]" if self.address.version == 6 else str(self.address)
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class DiagSocket:
    """The fields of one inet_diag_msg we use (addresses unpacked for its family)."""

    family: int
    state: int
    address: IPAddress
    port: int
    peer: IPAddress
    peer_port: int
    interface: int
    v6only: bool | None  # only LISTEN/CLOSE sockets of a dump carry it


def _address(family: int, raw: bytes) -> IPAddress:
    if family == socket.AF_INET:
        return ipaddress.IPv4Address(raw[:4])
    return ipaddress.IPv6Address(raw)


def parse_diag(payload: bytes) -> DiagSocket:
    """Decode the payload of a SOCK_DIAG_BY_FAMILY message (inet_diag_msg + attributes)."""
    if len(payload) < _DIAG_MSG.size:
        raise NetlinkFormatError(f"inet_diag_msg of {len(payload)} bytes")
    family, state, _, _, sport, dport, src, dst, ifindex, *_ = _DIAG_MSG.unpack_from(payload)
    if family not in (socket.AF_INET, socket.AF_INET6):
        raise NetlinkFormatError(f"inet_diag_msg of family {family}")
    attrs = attributes(payload, _DIAG_MSG.size)
    v6only = attrs.get(INET_DIAG_SKV6ONLY)
    return DiagSocket(
        family=family,
        state=state,
        address=_address(family, src),
        port=int.from_bytes(sport, "big"),
        peer=_address(family, dst),
        peer_port=int.from_bytes(dport, "big"),
        interface=ifindex,
        v6only=bool(v6only[0]) if v6only else None,
    )


def listen_request(family: int, port: int) -> bytes:
    """inet_diag_req_v2 payload: TCP sockets of ``family`` in LISTEN on ``port``.

    The kernel compares ``id.idiag_sport`` with each listener's port itself, so the
    answer holds only the sockets on that port (an empty dump when none).
    """
    sockid = struct.pack("!HH", port, 0) + bytes(32) + struct.pack("=I", 0) + b"\xff" * 8
    return struct.pack("=BBBBI", family, socket.IPPROTO_TCP, 0, 0, 1 << TCP_LISTEN) + sockid


def destroy_filter(ports: Iterable[int]) -> list[tuple[int, int, int, int]]:
    """Classic BPF accepting destroy messages of listener-like sockets on ``ports``.

    Listener-like: destination port 0 and destination address all zero (see the module
    docstring). Each test is "load; if equal skip the next instruction; else return 0",
    so no jump is longer than one instruction and any number of ports up to
    MAX_FILTER_PORTS fits. No ports: a program that drops everything.
    """
    wanted = sorted(set(ports))
    if len(wanted) > MAX_FILTER_PORTS:
        raise ValueError(f"at most {MAX_FILTER_PORTS} ports can be watched, got {len(wanted)}")
    if not wanted:
        return [(_RET_K, 0, 0, 0)]
    program: list[tuple[int, int, int, int]] = []
    for code, offset in ((_LD_H_ABS, _DPORT_AT), *((_LD_W_ABS, _DST_AT + 4 * i) for i in range(4))):
        program += [(code, 0, 0, offset), (_JEQ_K, 1, 0, 0), (_RET_K, 0, 0, 0)]
    program.append((_LD_H_ABS, 0, 0, _SPORT_AT))
    for port in wanted:
        program += [(_JEQ_K, 0, 1, port), (_RET_K, 0, 0, _ACCEPT)]
    program.append((_RET_K, 0, 0, 0))
    return program


def pack_filter(program: list[tuple[int, int, int, int]]) -> bytes:
    """The program as an array of struct sock_filter."""
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


def _is_wildcard(address: IPAddress) -> bool:
    return int(address) == 0


def serves(sock: DiagSocket, target: ListenTarget) -> bool:
    """Whether a LISTEN socket accepts connections to ``target``.

    A socket bound to the target address or to its family's wildcard does; for an IPv4
    target so does an IPv6 socket bound to ``::`` (or to the target's v4-mapped form)
    unless it is IPV6_V6ONLY. An IPv6 socket whose v6only flag is unknown counts as
    dual-stack (the kernel reports the flag for LISTEN sockets in dumps).
    """
    if sock.port != target.port:
        return False
    if target.address.version == 4:
        if sock.family == socket.AF_INET:
            return sock.address == target.address or _is_wildcard(sock.address)
        if sock.v6only:
            return False
        mapped = ipaddress.IPv6Address(int(target.address) | (0xFFFF << 32))
        return _is_wildcard(sock.address) or sock.address == mapped
    return sock.family == socket.AF_INET6 and (
        sock.address == target.address or _is_wildcard(sock.address)
    )


def relevant(destroyed: DiagSocket, targets: Iterable[ListenTarget]) -> set[ListenTarget]:
    """The targets a destroyed socket could have been serving (to be confirmed by a dump).

    Destroy messages carry no v6only flag, so a destroyed IPv6 wildcard counts for IPv4
    targets too: at worst one dump too many, never an event missed.
    """
    return {target for target in targets if serves(destroyed, target)}
