"""rtnetlink links and addresses, pure part: decoding messages into a view of the host.

Theory of operation: the kernel announces every address change to the subscribers of
``RTNLGRP_IPV4_IFADDR`` and ``RTNLGRP_IPV6_IFADDR`` (RTM_NEWADDR / RTM_DELADDR, with an
``ifaddrmsg`` naming the interface by index) and every link change to ``RTNLGRP_LINK``
(RTM_NEWLINK / RTM_DELLINK, with the name). :class:`HostView` folds those messages, and
the answers to full dumps, into "which addresses are on which interface", and answers
the only question the sidecar asks: is this address on that interface? It is pure: the
shell (:mod:`.addresses`) feeds it messages.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from anycast_announcer.events.netlink import Message, NetlinkFormatError, attributes

__all__ = [
    "RTMGRP_ADDRESSES",
    "RTM_GETADDR",
    "RTM_GETLINK",
    "HostView",
    "IPAddress",
    "Interest",
    "addr_dump_request",
    "changes",
    "link_dump_request",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK = 16, 17, 18
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
IFLA_IFNAME = 3
IFA_ADDRESS, IFA_LOCAL = 1, 2
RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR = 1, 5, 9
# The legacy bind() mask: group N is bit N-1.
RTMGRP_ADDRESSES = sum(
    1 << (group - 1) for group in (RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR)
)

Configured = tuple[IPAddress, int]
"""An address as configured: the same address may be there twice, with two lengths."""

_IFINFOMSG = struct.Struct("=BxHiII")
_IFADDRMSG = struct.Struct("=BBBBI")


@dataclass(frozen=True, slots=True)
class Interest:
    """An address the sidecar cares about on one interface (by name)."""

    interface: str
    address: IPAddress

    def __str__(self) -> str:
        return f"{self.address} on {self.interface}"


def link_dump_request() -> bytes:
    """RTM_GETLINK dump payload: every link (an empty ifinfomsg)."""
    return _IFINFOMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)


def addr_dump_request() -> bytes:
    """RTM_GETADDR dump payload: every address of both families."""
    return _IFADDRMSG.pack(socket.AF_UNSPEC, 0, 0, 0, 0)


def _link(payload: bytes) -> tuple[int, str | None]:
    if len(payload) < _IFINFOMSG.size:
        raise NetlinkFormatError(f"ifinfomsg of {len(payload)} bytes")
    _, _, index, _, _ = _IFINFOMSG.unpack_from(payload)
    name = attributes(payload, _IFINFOMSG.size).get(IFLA_IFNAME)
    return index, name.rstrip(b"\0").decode("utf-8", "replace") if name else None


def _address(payload: bytes) -> tuple[int, Configured] | None:
    if len(payload) < _IFADDRMSG.size:
        raise NetlinkFormatError(f"ifaddrmsg of {len(payload)} bytes")
    family, prefixlen, _, _, index = _IFADDRMSG.unpack_from(payload)
    attrs = attributes(payload, _IFADDRMSG.size)
    # IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer's on a
    # point-to-point address and equal to it otherwise (IPv6 usually sends only it).
    raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
    if raw is None:
        return None
    if family == socket.AF_INET and len(raw) == 4:
        return index, (ipaddress.IPv4Address(raw), prefixlen)
    if family == socket.AF_INET6 and len(raw) == 16:
        return index, (ipaddress.IPv6Address(raw), prefixlen)
    return None


@dataclass(slots=True)
class HostView:
    """Links (index -> name) and their addresses, as the messages fed to it describe."""

    names: dict[int, str] = field(default_factory=dict)
    addresses: dict[int, set[Configured]] = field(default_factory=dict)

    def apply(self, message: Message) -> None:
        """Fold one RTM_{NEW,DEL}{LINK,ADDR} message in; other types are ignored."""
        if message.type in (RTM_NEWLINK, RTM_DELLINK):
            index, name = _link(message.payload)
            if message.type == RTM_DELLINK:
                self.names.pop(index, None)
                self.addresses.pop(index, None)
            elif name is not None:
                self.names[index] = name
        elif message.type in (RTM_NEWADDR, RTM_DELADDR):
            found = _address(message.payload)
            if found is None:
                return
            index, configured = found
            if message.type == RTM_NEWADDR:
                self.addresses.setdefault(index, set()).add(configured)
            else:
                self.addresses.get(index, set()).discard(configured)

    @classmethod
    def from_dumps(cls, links: Iterable[Message], addresses: Iterable[Message]) -> HostView:
        """A view built from the answers to a link dump and an address dump."""
        view = cls()
        for message in (*links, *addresses):
            view.apply(message)
        return view

    def present(self, interface: str, address: IPAddress) -> bool:
        """Whether ``address`` is configured on the interface named ``interface``."""
        return any(
            configured == address
            for index, name in self.names.items()
            if name == interface
            for configured, _ in self.addresses.get(index, ())
        )

    def states(self, interests: Iterable[Interest]) -> dict[Interest, bool]:
        """Presence of each interest (for diffing before and after a change)."""
        return {i: self.present(i.interface, i.address) for i in interests}


def changes(
    before: Mapping[Interest, bool], after: Mapping[Interest, bool]
) -> list[tuple[Interest, bool]]:
    """The interests whose presence differs, with the new presence (sorted, stable)."""
    return sorted(
        ((i, now) for i, now in after.items() if before.get(i) != now), key=lambda c: str(c[0])
    )
