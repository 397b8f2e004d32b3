"""The rescue overlay's addressing: names and addresses derived from a member's underlay
address (pure).

It stands outside ``rescue/`` because config validation needs it too (overlay MAC
collisions are a config error), and ``rescue/`` is built from the config.

Every server computes the same overlay MAC for a member from its underlay address, so
no server has to learn another's: a forwarder addresses a rescued frame to the owner's
MAC, and an owner tells which member forwarded a frame from its source MAC.

- MAC: ``02:52:a:b:c:d`` (rescue overlay) and ``02:46:a:b:c:d`` (feedback overlay),
  locally administered unicast; ``a.b.c.d`` is the IPv4 underlay address, or the first
  four bytes of the SHA-256 of an IPv6 one (config validation rejects collisions).
- nft names: ``10_2_1_2`` / ``fd00_2_1__2`` (the compressed address, ':' and '.' as '_').
- Overlay addresses come from the member's position in the sorted member list: they are
  only next-hop labels and rp_filter fodder, never routed.
"""

from __future__ import annotations

import hashlib
import ipaddress

__all__ = [
    "BROADCAST_MAC",
    "IPAddress",
    "member_mac",
    "member_token",
    "overlay_capacity",
    "overlay_ipv4",
    "overlay_ipv4_all",
    "overlay_ipv4_halves",
    "overlay_ipv6",
    "overlay_ipv6_all",
    "overlay_prefix_for",
]

BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
"""The MAC of the "every peer" label: no FDB entry matches it, so the VXLAN device
replicates the frame to every all-zeros entry (one per peer): head-end replication."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_RESCUE_TAG = 0x52  # 'R'
_FEEDBACK_TAG = 0x46  # 'F'


def member_mac(address: IPAddress, *, feedback: bool) -> str:
    """The overlay MAC of a member on the rescue (or feedback) overlay."""
    raw = address.packed if address.version == 4 else hashlib.sha256(address.packed).digest()[:4]
    tag = _FEEDBACK_TAG if feedback else _RESCUE_TAG
    return ":".join(f"{byte:02x}" for byte in (0x02, tag, *raw))


def member_token(address: IPAddress) -> str:
    """A name fragment for nft objects that stays the same for the same member."""
    return str(address).replace(":", "_").replace(".", "_")


def overlay_ipv4_halves(
    network: ipaddress.IPv4Network,
) -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """The rescue and the feedback halves of the configured overlay network."""
    lower, upper = network.subnets(prefixlen_diff=1)
    return lower, upper


def overlay_ipv4(
    network: ipaddress.IPv4Network, index: int, *, feedback: bool
) -> ipaddress.IPv4Interface:
    """Member ``index``'s address (with the half's prefix length) on one overlay."""
    half = overlay_ipv4_halves(network)[1 if feedback else 0]
    return ipaddress.IPv4Interface(f"{half[index + 1]}/{half.prefixlen}")


def overlay_capacity(network: ipaddress.IPv4Network) -> int:
    """How many members ``network`` holds: per half, the network and broadcast addresses
    and the "every peer" label are not members'."""
    return max(network.num_addresses // 2 - 3, 0)


def overlay_prefix_for(members: int) -> int:
    """The longest ``overlay_ipv4`` prefix length that holds ``members`` members."""
    length = 31
    while length > 0 and overlay_capacity(ipaddress.IPv4Network(f"0.0.0.0/{length}")) < members:
        length -= 1
    return length


def overlay_ipv4_all(network: ipaddress.IPv4Network) -> ipaddress.IPv4Address:
    """The rescue overlay's "every peer" label: the half's last address before broadcast."""
    half = overlay_ipv4_halves(network)[0]
    return half[half.num_addresses - 2]


def overlay_ipv6_all() -> ipaddress.IPv6Address:
    """The rescue overlay's "every peer" label over IPv6."""
    return ipaddress.IPv6Address("fe80::a:ffff")


def overlay_ipv6(index: int, *, feedback: bool) -> ipaddress.IPv6Interface:
    """Member ``index``'s link-local address on one overlay (fe80::a:N, fe80::b:N)."""
    group = 0xB if feedback else 0xA
    return ipaddress.IPv6Interface(f"fe80::{group:x}:{index + 1:x}/64")
