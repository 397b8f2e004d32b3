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
    "IPAddress",
    "member_mac",
    "member_token",
    "overlay_ipv4",
    "overlay_ipv4_halves",
    "overlay_ipv6",
]

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


def overlay_ipv6(index: int, *, feedback: bool) -> ipaddress.IPv6Interface:
    """Member ``index``'s link-local address on one overlay (fe80::a:N, fe80::b:N)."""
    group = 0xB if feedback else 0xA
    return ipaddress.IPv6Interface(f"fe80::{group:x}:{index + 1:x}/64")
