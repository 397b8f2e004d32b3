"""Routes as values, and the BGP attribute encodings they carry.

A ``Route`` is what one BGP session should carry for one prefix. Routes are frozen and
comparable, so "what changed" is a dictionary diff and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

__all__ = [
    "AS_TRANS",
    "Route",
    "RouteKey",
    "link_bandwidth_community",
    "link_bandwidth_global_as",
    "weight_community_value",
]

AS_TRANS = 23456
"""RFC 6793's stand-in for a 4-byte AS in a 2-byte field."""

_TRANSITIVE_TYPE = 0x00
_NON_TRANSITIVE_TYPE = 0x40
_LINK_BANDWIDTH_SUBTYPE = 0x04


@dataclass(frozen=True, slots=True, order=True)
class RouteKey:
    """Which session (peer address) carries which prefix."""

    peer: str
    prefix: str


@dataclass(frozen=True, slots=True)
class Route:
    """One prefix as sent on one session, with every attribute we set."""

    peer: str
    prefix: str
    med: int | None = None
    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    extended_communities: tuple[str, ...] = field(default=())
    as_path: tuple[int, ...] = ()
    bandwidth_bps: float | None = None
    """Informational: the bits/s this route's link-bandwidth community encodes."""

    @property
    def key(self) -> RouteKey:
        """The session/prefix pair this route occupies."""
        return RouteKey(self.peer, self.prefix)


def link_bandwidth_global_as(local_as: int, override: int | None = None) -> int:
    """The 2-byte AS for the community: the override, the local AS, or AS_TRANS."""
    if override is not None:
        return override
    return local_as if local_as <= 0xFFFF else AS_TRANS


def link_bandwidth_community(
    global_as: int, bits_per_second: float, *, transitive: bool = True
) -> str:
    """The link-bandwidth extended community as ExaBGP's hex literal.

    Layout (draft-ietf-idr-link-bandwidth): type (0x00 transitive, 0x40 not), subtype 0x04,
    2-byte AS, then the bandwidth in bytes per second as a 4-byte IEEE 754 float.
    """
    if not 0 <= global_as <= 0xFFFF:
        raise ValueError(f"link-bandwidth AS must fit 2 bytes, got {global_as}")
    if bits_per_second < 0:
        raise ValueError("bandwidth must not be negative")
    type_byte = _TRANSITIVE_TYPE if transitive else _NON_TRANSITIVE_TYPE
    packed = struct.pack(
        "!BBHf", type_byte, _LINK_BANDWIDTH_SUBTYPE, global_as, bits_per_second / 8
    )
    return "0x" + packed.hex()


def weight_community_value(bandwidth_mbps: float, unit_mbps: float) -> int:
    """A plain community's value for a bandwidth: units of ``unit_mbps``, 1..65535."""
    return max(1, min(0xFFFF, round(bandwidth_mbps / unit_mbps)))
