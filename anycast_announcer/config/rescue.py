"""The ``rescue:`` section: flow rescue among the servers of an anycast group.

``anycast_announcer.rescue`` turns it into the kernel data path; the rules here are the
ones a user can break (and must hear about from check-config).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Annotated

from pydantic import Field

from anycast_announcer.config.types import (
    Bool,
    Float,
    Int,
    IPAddress,
    IPv4NetworkText,
    Port,
    StrictModel,
    WholeSeconds,
)
from anycast_announcer.overlay import member_mac

__all__ = ["RescueConfig", "rescue_problems"]


OverlayDevice = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$",
        description="interface name: letters, digits, '_', '.', '-'; at most 15 characters",
    ),
]


class RescueConfig(StrictModel):
    """Flow rescue: hand TCP packets of connections held by another server of the group.

    Packets the fabric delivers for an anycast address whose connection this server does
    not hold go over a VXLAN overlay to the other members (then to the one that answered),
    instead of being answered with a reset. See docs/rescue.md.
    """

    members: list[IPAddress] = Field(
        min_length=2,
        description="underlay addresses of every server of the anycast group, this one "
        "included; the same list on every server",
    )
    local_address: IPAddress | None = Field(
        default=None,
        description="this server's entry in members; default: the member configured on a "
        "local interface",
    )
    vni: Int = Field(
        default=4242,
        ge=1,
        le=16_777_214,
        description="VXLAN network identifier of the rescue overlay; feedback uses vni + 1",
    )
    udp_port: Port = Field(default=4800, description="VXLAN UDP port (both overlays)")
    device: OverlayDevice = "anycast-rsc"
    feedback_device: OverlayDevice = "anycast-fb"
    overlay_ipv4: IPv4NetworkText = Field(
        default=ipaddress.IPv4Network("169.254.90.0/24"),
        description="addresses of the overlay devices (split in two halves: rescue, "
        "feedback); local to the group, never routed",
    )
    probation: WholeSeconds = Field(
        default=3,
        ge=1,
        le=60,
        description="seconds a flow is replicated to every member before, nobody having "
        "claimed it, it is handed to the local stack (which resets it)",
    )
    learn_timeout: WholeSeconds = Field(
        default=5,
        ge=2,
        le=600,
        description="seconds a learnt owner is remembered after its last feedback",
    )
    feedback_interval: Float = Field(
        default=1.0,
        ge=0.1,
        le=60,
        description="an owner confirms a rescued flow to its forwarder at most once per "
        "this many seconds (after a burst of 3)",
    )
    orphan_window: WholeSeconds = Field(
        default=10,
        ge=1,
        le=3600,
        description="seconds after its probation during which the next packet of an "
        "unclaimed flow goes to the local stack (which resets it); later packets, or any "
        "after that one, start a new probation",
    )
    icmp_rate: Int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="ICMP 'fragmentation needed' / 'packet too big' relayed per second",
    )
    flow_table_size: Int = Field(
        default=65536, ge=1024, le=16_777_216, description="entries per flow set"
    )
    clamp_mss: Bool = Field(
        default=True,
        description="advertise an MSS that lets clients' packets fit the overlay",
    )
    underlay_mtu: Int | None = Field(
        default=None,
        ge=1280,
        le=65535,
        description="MTU of the path between members; default: the smallest MTU of the "
        "interfaces that route to them",
    )
    takeover_warmup: Float = Field(
        default=1.0,
        ge=0,
        le=60,
        description="seconds conntrack watches traffic before a first install rescues",
    )


def rescue_problems(rescue: RescueConfig) -> Iterator[str]:
    """Rules across the rescue section's fields; each yields ``rescue.path: message``."""
    seen: dict[str, int] = {}
    macs: dict[str, int] = {}
    first = rescue.members[0]
    for index, member in enumerate(rescue.members):
        where = f"rescue.members[{index}]"
        if member.is_unspecified or member.is_multicast or member.is_loopback:
            yield f"{where}: {member} is not a usable underlay address"
        if member.version != first.version:
            yield (
                f"{where}: {member} is IPv{member.version} but members[0] is "
                f"IPv{first.version}; the underlay must be one address family"
            )
        if str(member) in seen:
            yield f"{where}: duplicate member {member} (also members[{seen[str(member)]}])"
            continue
        seen[str(member)] = index
        mac = member_mac(member, feedback=False)
        if mac in macs:
            yield f"{where}: its overlay MAC {mac} collides with members[{macs[mac]}]"
        macs[mac] = index
    if rescue.local_address is not None and str(rescue.local_address) not in seen:
        yield f"rescue.local_address: {rescue.local_address} is not one of rescue.members"
    if rescue.device == rescue.feedback_device:
        yield "rescue.feedback_device: must differ from rescue.device"
    half = rescue.overlay_ipv4.num_addresses // 2
    if half - 2 < len(rescue.members):
        yield (
            f"rescue.overlay_ipv4: {rescue.overlay_ipv4} holds {max(half - 2, 0)} members "
            f"per half, {len(rescue.members)} are configured"
        )
    if rescue.probation <= rescue.feedback_interval:
        yield "rescue.probation: must be longer than feedback_interval"
    if rescue.learn_timeout < 2 * rescue.feedback_interval:
        yield "rescue.learn_timeout: must be at least twice feedback_interval"
