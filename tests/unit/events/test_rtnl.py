"""The host view built from rtnetlink link and address messages."""

from __future__ import annotations

import ipaddress
import socket
import struct

from anycast_announcer.events.netlink import Message
from anycast_announcer.events.rtnl import HostView, Interest, changes
from tests.unit.events.diagmsg import attr

LO, ETH = 1, 2
ANYCAST = ipaddress.ip_address("10.255.0.1")
ANYCAST6 = ipaddress.ip_address("fd00:255::1")


def link(kind: int, index: int, name: str) -> Message:
    """RTM_NEWLINK (16) / RTM_DELLINK (17) with IFLA_IFNAME."""
    payload = struct.pack("=BxHiII", 0, 0, index, 0, 0) + attr(3, name.encode() + b"\0")
    return Message(kind, 0, 0, 0, payload)


def addr(
    kind: int, index: int, address: str, prefixlen: int = 32, peer: str | None = None
) -> Message:
    """RTM_NEWADDR (20) / RTM_DELADDR (21): IFA_LOCAL and IFA_ADDRESS as the kernel sends them."""
    ip = ipaddress.ip_address(address)
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    payload = struct.pack("=BBBBI", family, prefixlen, 0, 0, index)
    if ip.version == 4:
        other = ipaddress.ip_address(peer) if peer else ip
        payload += attr(1, other.packed) + attr(2, ip.packed)
    else:
        payload += attr(1, ip.packed)
    return Message(kind, 0, 0, 0, payload)


def view() -> HostView:
    """lo and eth1, the anycast addresses on lo."""
    return HostView.from_dumps(
        [link(16, LO, "lo"), link(16, ETH, "eth1")],
        [
            addr(20, LO, "10.255.0.1"),
            addr(20, LO, "fd00:255::1", 128),
            addr(20, ETH, "10.0.1.2", 24),
        ],
    )


def test_present_by_interface_name() -> None:
    """An address counts on its own interface only."""
    host = view()
    assert host.present("lo", ANYCAST)
    assert host.present("lo", ANYCAST6)
    assert not host.present("eth1", ANYCAST)
    assert not host.present("eth9", ANYCAST)


def test_removal_and_readding() -> None:
    """RTM_DELADDR takes it away, RTM_NEWADDR brings it back."""
    host = view()
    host.apply(addr(21, LO, "10.255.0.1"))
    assert not host.present("lo", ANYCAST)
    host.apply(addr(20, LO, "10.255.0.1"))
    assert host.present("lo", ANYCAST)


def test_same_address_with_two_lengths_needs_both_removed() -> None:
    """10.255.0.1/32 and 10.255.0.1/24 are two configured addresses."""
    host = view()
    host.apply(addr(20, LO, "10.255.0.1", 24))
    host.apply(addr(21, LO, "10.255.0.1", 32))
    assert host.present("lo", ANYCAST)
    host.apply(addr(21, LO, "10.255.0.1", 24))
    assert not host.present("lo", ANYCAST)


def test_point_to_point_uses_the_local_address() -> None:
    """IFA_LOCAL is ours; IFA_ADDRESS is the peer on a point-to-point address."""
    host = view()
    host.apply(addr(20, ETH, "10.9.9.1", peer="10.9.9.2"))
    assert host.present("eth1", ipaddress.ip_address("10.9.9.1"))
    assert not host.present("eth1", ipaddress.ip_address("10.9.9.2"))


def test_deleted_and_renamed_links() -> None:
    """A deleted link takes its addresses along; a rename moves them to the new name."""
    host = view()
    host.apply(link(16, ETH, "uplink"))
    assert host.present("uplink", ipaddress.ip_address("10.0.1.2"))
    assert not host.present("eth1", ipaddress.ip_address("10.0.1.2"))
    host.apply(link(17, ETH, "uplink"))
    assert not host.present("uplink", ipaddress.ip_address("10.0.1.2"))


def test_changes_report_only_differences() -> None:
    """States before and after: only flipped interests, with their new presence."""
    interests = [Interest("lo", ANYCAST), Interest("lo", ANYCAST6)]
    host = view()
    before = host.states(interests)
    host.apply(addr(21, LO, "fd00:255::1", 128))
    host.apply(addr(20, ETH, "10.0.1.3", 24))  # not watched
    assert changes(before, host.states(interests)) == [(Interest("lo", ANYCAST6), False)]
