"""Can the underlay carry a rescued full-size packet? Warnings for check-config and start-up.

A rescued packet is the client's packet plus VXLAN's 50 bytes (IPv4 underlay) or 70
(IPv6 underlay). With ``clamp_mss`` the servers advertise an MSS that makes clients'
segments fit the overlay, so nothing is lost but the clients' upload segments shrink;
without it, a client packet larger than the overlay MTU cannot be rescued.
"""

from __future__ import annotations

from anycast_announcer.rescue.model import OVERHEAD, Family, RescuePlan

__all__ = ["FULL_SIZE", "IPV6_MINIMUM_MTU", "mtu_warnings"]

FULL_SIZE = 1500
"""The packet size of an Ethernet client path, which rescue should carry whole."""
IPV6_MINIMUM_MTU = 1280


def mtu_warnings(plan: RescuePlan) -> list[str]:
    """Warnings (``rescue: ...`` lines) about the plan's underlay MTU; [] when it fits."""
    underlay, overlay = plan.underlay_mtu, plan.rescue.mtu
    overhead = OVERHEAD[plan.underlay.version]
    if overlay < IPV6_MINIMUM_MTU:
        return [
            f"rescue: the underlay MTU {underlay} leaves {overlay} bytes for a rescued "
            f"packet, less than the {IPV6_MINIMUM_MTU} IPv6 needs; raise the MTU between "
            f"members to at least {IPV6_MINIMUM_MTU + overhead}"
        ]
    if overlay >= FULL_SIZE:
        return []
    needed = FULL_SIZE + overhead
    if plan.clamp_mss:
        return [
            f"rescue: the underlay MTU {underlay} leaves {overlay} bytes for a rescued "
            f"packet, less than a full-size {FULL_SIZE}-byte one: the MSS clients may "
            f"send to the anycast addresses is clamped to {plan.mss(Family.IPV4)} (IPv4) "
            f"/ {plan.mss(Family.IPV6)} (IPv6); raise the MTU between members to "
            f"{needed} to avoid that"
        ]
    return [
        f"rescue.clamp_mss: off, and the underlay MTU {underlay} leaves {overlay} bytes "
        f"for a rescued packet: full-size ({FULL_SIZE}-byte) packets from clients cannot "
        f"be rescued; raise the MTU between members to at least {needed} or set "
        "clamp_mss: true"
    ]
