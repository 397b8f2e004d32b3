"""The ``rescue:`` section: flow rescue among the servers of an anycast group.

``anycast_announcer.rescue`` turns it into the kernel data path; the rules here are the
ones a user can break (and must hear about from check-config).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Generator, Iterator
from typing import Annotated

from pydantic import Field

from anycast_announcer.config.syntax import community_problem
from anycast_announcer.config.types import (
    Bool,
    Float,
    Int,
    IPAddress,
    IPNetworkText,
    IPv4NetworkText,
    Port,
    StrictModel,
    WholeSeconds,
)
from anycast_announcer.overlay import member_mac, overlay_capacity, overlay_prefix_for

__all__ = [
    "GATE_TIMEOUT_DEFAULT",
    "HOLD_DOWN_DEFAULT",
    "REREGISTER_AFTER_DEFAULT",
    "DirectoryConfig",
    "MembershipConfig",
    "RescueConfig",
    "rescue_problems",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

HOLD_DOWN_DEFAULT = 900
"""Seconds a departed member stays in the data path (docs/rescue.md, *Membership*)."""
REREGISTER_AFTER_DEFAULT = 5.0
"""Seconds between a bucket-map change and the second emptying of ``registered``: a few
times the 0.9-1.5 s a membership change takes to reach every member in the lab."""
GATE_TIMEOUT_DEFAULT = 10
"""Seconds a starting sidecar waits for its group before it announces anyway (docs/rescue.md,
*The start-up gate*): several times the 0.9-1.5 s membership takes in the lab."""


OverlayDevice = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$",
        description="interface name: letters, digits, '_', '.', '-'; at most 15 characters",
    ),
]


class MembershipConfig(StrictModel):
    """Group membership learnt from the BGP fabric instead of listed (docs/rescue.md).

    Each member announces its underlay host address tagged with ``community`` while its
    data path is installed; the leaves pass these *member routes* to every server.
    """

    community: str = Field(
        description="standard community 'A:B' naming the group; the same on every member"
    )
    underlay_prefixes: list[IPNetworkText] = Field(
        min_length=1,
        description="member routes are accepted only for host addresses inside these "
        "(the servers' underlay subnets)",
    )
    route_prefixes: list[IPNetworkText] | None = Field(
        default=None,
        description="announce member routes in these signalling ranges instead of the "
        "underlay addresses themselves: one per underlay prefix, same family and length, "
        "the same host bits (FRR ignores a route whose next hop is its own prefix, as a "
        "member's /32 announced from that address is)",
    )
    hold_down: Int = Field(
        default=HOLD_DOWN_DEFAULT,
        ge=0,
        le=86_400,
        description="seconds a member whose route was withdrawn stays in the data path, "
        "so its live connections are still rescued back to it",
    )
    gate_timeout: Int = Field(
        default=GATE_TIMEOUT_DEFAULT,
        ge=1,
        le=600,
        description="at start, anycast prefixes wait until an End-of-RIB from a peer says the "
        "group's member routes are all in and the data path holds those members; if that "
        "takes longer than this many seconds after the first BGP session came up, they are "
        "announced anyway (with a warning)",
    )


class DirectoryConfig(StrictModel):
    """The flow directory: a moved flow's first copy goes to one member (docs/rescue.md).

    Every member hashes a flow's 4-tuple to one of ``buckets`` buckets, and every bucket
    has one *directory member*, chosen by rendezvous hashing over the member list. Owners
    register their established flows with the flow's directory member; a server that
    receives a flow it does not hold asks that member, which forwards the packet to the
    owner. Blind replication remains the fallback. ``buckets`` must be the same on every
    member (a mismatch only costs the fallback, never a session).
    """

    enabled: Bool = Field(
        default=True,
        description="send a moved flow's first packets to its directory member instead of "
        "to every member",
    )
    buckets: Int = Field(
        default=1024,
        ge=1,
        le=4096,
        description="hash buckets the flows are split into; the same on every member",
    )
    register_interval: WholeSeconds = Field(
        default=60,
        ge=1,
        le=3600,
        description="an owner registers an established flow with its directory member "
        "at most once per this many seconds",
    )
    entry_timeout: WholeSeconds = Field(
        default=180,
        ge=2,
        le=86_400,
        description="seconds a directory member remembers a flow after its last "
        "registration; longer than register_interval",
    )
    answer_timeout: WholeSeconds = Field(
        default=1,
        ge=1,
        le=60,
        description="seconds a flow's packets go to its directory member only; unclaimed "
        "after that, the flow starts a blind probation",
    )
    query_rate: Int = Field(
        default=1000,
        ge=1,
        le=10_000_000,
        description="packets per second this server may send to directory members "
        "(beyond it, such packets take the blind path and its budget)",
    )
    query_burst: Int = Field(
        default=4000, ge=1, le=10_000_000, description="burst of query_rate (packets)"
    )
    register_rate: Int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="registrations per second this server may send in all",
    )
    reregister_after: Float = Field(
        default=REREGISTER_AFTER_DEFAULT,
        ge=0,
        le=3600,
        description="seconds after a membership change that moved buckets when this "
        "server forgets its registrations once more, so a bucket's new directory member "
        "that took the new member list up to this much later than this server gets "
        "them too; 0: only once, with the change; shorter than register_interval",
    )


class RescueConfig(StrictModel):
    """Flow rescue: hand TCP packets of connections held by another server of the group.

    Packets the fabric delivers for an anycast address whose connection this server does
    not hold go over a VXLAN overlay to the other members (then to the one that answered),
    instead of being answered with a reset. See docs/rescue.md.
    """

    members: list[IPAddress] = Field(
        default=[],
        description="underlay addresses of the servers of the anycast group, this one "
        "included; the same list on every server. With membership: static members added "
        "to the learnt ones (data-path-only members); may be empty",
    )
    membership: MembershipConfig | None = Field(
        default=None,
        description="learn the group's members from member routes in BGP",
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
    blind_copy_rate: Int = Field(
        default=1000,
        ge=1,
        le=10_000_000,
        description="underlay packets per second this server may send as blind copies "
        "(packets of a flow whose owner is not known yet, copied to every other member); "
        "beyond it such packets are dropped, never reset (docs/rescue.md, copy budget)",
    )
    blind_copy_burst: Int = Field(
        default=4000, ge=1, le=10_000_000, description="burst of blind_copy_rate (packets)"
    )
    blind_source_rate: Int = Field(
        default=250,
        ge=1,
        le=10_000_000,
        description="the same budget per client source prefix (underlay packets per second)",
    )
    blind_source_burst: Int = Field(
        default=1000, ge=1, le=10_000_000, description="burst of blind_source_rate (packets)"
    )
    blind_source_prefix_ipv4: Int = Field(
        default=24, ge=8, le=32, description="IPv4 client prefix length blind_source_rate counts"
    )
    blind_source_prefix_ipv6: Int = Field(
        default=48, ge=16, le=128, description="IPv6 client prefix length blind_source_rate counts"
    )
    icmp_source_rate: Int = Field(
        default=10,
        ge=1,
        le=100_000,
        description="ICMP errors per second relayed for one sender (icmp_rate bounds all "
        "of them, and what each peer may relay to this server)",
    )
    reset_guard_mark: Int = Field(
        default=0x0010_0000,
        ge=0,
        le=0xFFFF_FFFF,
        description="skb mark bit of the reset guard: on the fabric interfaces, TCP resets "
        "from anycast addresses leave only with it, and the rescue table sets it, so a "
        "ruleset flush cannot make the host reset rescued flows (docs/rescue.md); "
        "0 turns the guard off",
    )
    fabric_interfaces: list[OverlayDevice] | None = Field(
        default=None,
        min_length=1,
        description="interfaces toward the fabric, the only ones overlay packets are "
        "accepted on; default: the interfaces this host routes the other members through",
    )
    directory: DirectoryConfig = Field(
        default_factory=DirectoryConfig,
        description="the flow directory (targeted first copies)",
    )


def rescue_problems(rescue: RescueConfig) -> Iterator[str]:
    """Rules across the rescue section's fields; each yields ``rescue.path: message``."""
    if rescue.membership is None and len(rescue.members) < 2:
        yield (
            "rescue.members: list at least 2 members (every server of the group), or "
            "configure rescue.membership to learn them from BGP"
        )
    if rescue.membership is not None:
        yield from _membership_problems(rescue, rescue.membership)
    seen = yield from _member_problems(rescue.members)
    if (
        rescue.membership is None
        and rescue.local_address is not None
        and str(rescue.local_address) not in seen
    ):
        yield f"rescue.local_address: {rescue.local_address} is not one of rescue.members"
    if rescue.device == rescue.feedback_device:
        yield "rescue.feedback_device: must differ from rescue.device"
    capacity = overlay_capacity(rescue.overlay_ipv4)
    if capacity < len(rescue.members):
        yield (
            f"rescue.overlay_ipv4: {rescue.overlay_ipv4} holds {capacity} members "
            f"per half, {len(rescue.members)} are configured; "
            f"use a /{overlay_prefix_for(len(rescue.members))} or larger"
        )
    if rescue.probation <= rescue.feedback_interval:
        yield "rescue.probation: must be longer than feedback_interval"
    if rescue.learn_timeout < 2 * rescue.feedback_interval:
        yield "rescue.learn_timeout: must be at least twice feedback_interval"
    mark = rescue.reset_guard_mark
    if mark & (mark - 1):
        yield (
            f"rescue.reset_guard_mark: {mark:#x} has more than one bit set; use one bit "
            "no other mark user on this host sets, or 0 for no guard"
        )
    directory = rescue.directory
    if directory.entry_timeout <= directory.register_interval:
        # An entry must outlive the gap between two registrations of a live flow.
        yield "rescue.directory.entry_timeout: must be longer than register_interval"
    if directory.reregister_after >= directory.register_interval:
        # Registrations expire by then anyway: a second emptying would only cost.
        yield (
            f"rescue.directory.reregister_after: {directory.reregister_after:g} must be "
            f"shorter than register_interval ({directory.register_interval}); 0 turns it off"
        )


def _membership_problems(rescue: RescueConfig, membership: MembershipConfig) -> Iterator[str]:
    if (problem := community_problem(membership.community)) is not None:
        yield f"rescue.membership.community: {membership.community!r} {problem}"
    networks = membership.underlay_prefixes
    for index, network in enumerate(networks):
        if network.version != networks[0].version:
            yield (
                f"rescue.membership.underlay_prefixes[{index}]: {network} is "
                f"IPv{network.version} but underlay_prefixes[0] is IPv{networks[0].version}; "
                "the underlay must be one address family"
            )
    yield from _route_prefix_problems(membership)
    for index, member in enumerate(rescue.members):
        if not _inside(member, networks):
            yield (
                f"rescue.members[{index}]: {member} is outside rescue.membership.underlay_prefixes"
            )
    local = rescue.local_address
    if local is not None and not _inside(local, networks):
        yield (f"rescue.local_address: {local} is outside rescue.membership.underlay_prefixes")


def _route_prefix_problems(membership: MembershipConfig) -> Iterator[str]:
    routes = membership.route_prefixes
    if routes is None:
        return
    underlay = membership.underlay_prefixes
    if len(routes) != len(underlay):
        yield (
            f"rescue.membership.route_prefixes: {len(routes)} given for "
            f"{len(underlay)} underlay_prefixes; one per underlay prefix"
        )
        return
    for index, (route, network) in enumerate(zip(routes, underlay, strict=True)):
        if (route.version, route.prefixlen) != (network.version, network.prefixlen):
            yield (
                f"rescue.membership.route_prefixes[{index}]: {route} must have the family "
                f"and length of underlay_prefixes[{index}] ({network})"
            )
        if any(route.overlaps(n) for n in underlay if n.version == route.version):
            yield (
                f"rescue.membership.route_prefixes[{index}]: {route} overlaps the underlay; "
                "member routes must not be underlay addresses here"
            )


def _inside(address: IPAddress, networks: list[IPNetwork]) -> bool:
    return any(address.version == n.version and address in n for n in networks)


def _member_problems(members: list[IPAddress]) -> Generator[str, None, dict[str, int]]:
    """Each static member usable, of one family, unique, with a unique overlay MAC."""
    seen: dict[str, int] = {}
    macs: dict[str, int] = {}
    for index, member in enumerate(members):
        where = f"rescue.members[{index}]"
        if member.is_unspecified or member.is_multicast or member.is_loopback:
            yield f"{where}: {member} is not a usable underlay address"
        if member.version != members[0].version:
            yield (
                f"{where}: {member} is IPv{member.version} but members[0] is "
                f"IPv{members[0].version}; the underlay must be one address family"
            )
        if str(member) in seen:
            yield f"{where}: duplicate member {member} (also members[{seen[str(member)]}])"
            continue
        seen[str(member)] = index
        mac = member_mac(member, feedback=False)
        if mac in macs:
            yield f"{where}: its overlay MAC {mac} collides with members[{macs[mac]}]"
        macs[mac] = index
    return seen
