"""The desired rescue data path of one server, as values (pure).

Theory of operation. The fabric hashes each TCP flow to one server of the anycast group;
when the set of servers changes, some established flows land on a server that does not
hold them. With rescue, such a server does not answer with a reset: it copies the packet
(nftables ``dup``) over a VXLAN overlay to the other members, whose conntrack accepts it
if it holds the connection and drops it otherwise. The owner then sends a *feedback*
copy back over a second overlay (rate-limited per flow), and the forwarder remembers
"flow -> owner" for ``learn_timeout`` seconds, so a long-lived rescued flow costs about
one copy per packet. Copies of flows whose owner is not known yet (*blind* copies) are
bounded by a budget (:class:`Budget`): an aggregate rate per server and a rate per client
source prefix, in underlay packets; beyond it those packets are dropped, never reset, and
so are packets of new flows when a flow set is full (fail closed). A feedback copy teaches
an owner only for a flow this server copied to that peer (in probation, or already learnt
from it): a forged claim for any other flow is refused. Copies to a learnt owner are never
budgeted. A flow nobody claims within ``probation`` seconds is an *orphan*:
its packets go to the local stack for ``orphan_window`` seconds, which resets it, so its
client learns fast; a flow seen again after that window gets a new probation. ICMP
"fragmentation needed" / "packet too big" quoting one of our anycast addresses is
relayed to every member, rate-limited in all and per sender, so the owner's PMTU cache
learns it; each peer may relay at most ``icmp_rate`` per second to this server.

Blind copies and relayed ICMP leave as one packet to a broadcast label: the VXLAN device
replicates it to every peer (head-end replication through all-zeros FDB entries), so a
rule holds one ``dup`` whatever the group size.

Everything lives in the kernel (two VXLAN devices with static neighbours and FDB
entries, and one nftables table per address family); no packet goes through Python.

This module turns the config and two host facts (this server's underlay address and the
underlay MTU) into a :class:`RescuePlan`; ``render`` turns a plan into nftables text,
``diff`` compares it with what is installed, and ``kernel`` applies the difference.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from anycast_announcer.config import Config, RescueConfig
from anycast_announcer.overlay import (
    BROADCAST_MAC,
    IPAddress,
    member_mac,
    member_token,
    overlay_capacity,
    overlay_ipv4,
    overlay_ipv4_all,
    overlay_ipv6,
    overlay_ipv6_all,
    overlay_prefix_for,
)
from anycast_announcer.rescue.directory import SEED, bucket_owners

__all__ = [
    "OVERHEAD",
    "TABLE",
    "ZERO_MAC",
    "Budget",
    "Directory",
    "Family",
    "FdbEntry",
    "Member",
    "Neighbor",
    "Overlay",
    "RescuePlan",
    "Timers",
    "build_plan",
    "plan_from_settings",
]

TABLE = "anycast_rescue"
"""The nftables table, one per address family (``ip`` and ``ip6``: ``dup`` is not in inet)."""

ZERO_MAC = "00:00:00:00:00:00"
"""The VXLAN FDB's default entry: frames to an unknown MAC go to every such entry."""

OVERHEAD = {4: 50, 6: 70}
"""Bytes VXLAN adds over an IPv4 / IPv6 underlay (outer IP + UDP + VXLAN + Ethernet)."""

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Family(enum.Enum):
    """An nftables address family the data path has a table in."""

    IPV4 = "ip"
    IPV6 = "ip6"

    @property
    def version(self) -> int:
        """4 or 6."""
        return 4 if self is Family.IPV4 else 6

    @property
    def keyword(self) -> str:
        """The header keyword in rules: ``ip`` or ``ip6``."""
        return self.value

    @property
    def addr_type(self) -> str:
        """The nftables data type of an address of this family."""
        return "ipv4_addr" if self is Family.IPV4 else "ipv6_addr"

    @staticmethod
    def of(version: int) -> Family:
        """The family of IP version 4 or 6."""
        return Family.IPV4 if version == 4 else Family.IPV6


@dataclass(frozen=True, slots=True)
class Member:
    """One server of the group, as every member derives it from the member list."""

    address: IPAddress
    index: int
    """Position in the sorted member list: picks its overlay addresses."""
    token: str
    rescue_mac: str
    feedback_mac: str
    rescue_ipv4: ipaddress.IPv4Interface
    feedback_ipv4: ipaddress.IPv4Interface
    rescue_ipv6: ipaddress.IPv6Interface
    feedback_ipv6: ipaddress.IPv6Interface

    @staticmethod
    def make(address: IPAddress, index: int, overlay: ipaddress.IPv4Network) -> Member:
        """The member at ``index`` of the sorted list, with everything derived."""
        return Member(
            address=address,
            index=index,
            token=member_token(address),
            rescue_mac=member_mac(address, feedback=False),
            feedback_mac=member_mac(address, feedback=True),
            rescue_ipv4=overlay_ipv4(overlay, index, feedback=False),
            feedback_ipv4=overlay_ipv4(overlay, index, feedback=True),
            rescue_ipv6=overlay_ipv6(index, feedback=False),
            feedback_ipv6=overlay_ipv6(index, feedback=True),
        )

    def label(self, family: Family, *, feedback: bool) -> str:
        """The next hop ``dup`` names to reach this member on one overlay."""
        if family is Family.IPV4:
            interface4 = self.feedback_ipv4 if feedback else self.rescue_ipv4
            return str(interface4.ip)
        interface6 = self.feedback_ipv6 if feedback else self.rescue_ipv6
        return str(interface6.ip)


@dataclass(frozen=True, slots=True, order=True)
class Neighbor:
    """A permanent neighbour entry: overlay label -> member MAC."""

    address: str
    mac: str


@dataclass(frozen=True, slots=True, order=True)
class FdbEntry:
    """A VXLAN forwarding entry: member MAC -> member underlay address."""

    mac: str
    destination: str


@dataclass(frozen=True, slots=True)
class Overlay:
    """One VXLAN device as it should be."""

    name: str
    vni: int
    port: int
    local: IPAddress
    mac: str
    mtu: int
    ipv4: ipaddress.IPv4Interface
    ipv6: ipaddress.IPv6Interface
    neighbors: tuple[Neighbor, ...]
    fdb: tuple[FdbEntry, ...]

    @property
    def udp_checksum(self) -> bool:
        """Outer UDP checksums: off over IPv4 (RFC 7348 allows it, the inner TCP checksum
        protects the payload, and it is a pass over every rescued byte); required over
        IPv6 (RFC 8200), so on."""
        return self.local.version == 6


@dataclass(frozen=True, slots=True)
class Timers:
    """Flow bookkeeping parameters (whole seconds where nftables sets hold them)."""

    probation: int
    orphan_window: int
    learn: int
    feedback_per_minute: int
    feedback_burst: int
    icmp_per_second: int
    flow_table_size: int
    icmp_source_per_second: int = 10

    @property
    def feedback_memory(self) -> int:
        """How long an owner keeps a flow's feedback limiter after its last packet."""
        return max(10, 3 * -(-60 // self.feedback_per_minute))


@dataclass(frozen=True, slots=True)
class Budget:
    """The copy budget of blind copies, in underlay packets (see the module docstring)."""

    rate: int
    burst: int
    source_rate: int
    source_burst: int
    source_prefix_ipv4: int
    source_prefix_ipv6: int

    @staticmethod
    def per_packet(underlay: int, fanout: int) -> int:
        """Blind packets per ``underlay`` packets: each blind packet costs ``fanout``."""
        return max(1, underlay // max(1, fanout))

    def source_mask(self, family: Family) -> str:
        """The client prefix mask (an nft address literal) that ``source_rate`` counts."""
        if family is Family.IPV4:
            bits = self.source_prefix_ipv4
            return str(ipaddress.IPv4Address((0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF))
        bits = self.source_prefix_ipv6
        mask = ((1 << 128) - 1) << (128 - bits) & ((1 << 128) - 1)
        return str(ipaddress.IPv6Address(mask))


@dataclass(frozen=True, slots=True)
class Directory:
    """The flow directory (see ``directory``): the bucket table and its limits."""

    owners: tuple[Member, ...]
    """The directory member of each bucket (one entry per bucket)."""
    register_interval: int
    entry_timeout: int
    answer_timeout: int
    query_rate: int
    query_burst: int
    register_rate: int
    reregister_after: float
    """Seconds after a bucket-map change when owners empty ``registered`` once more
    (the shell's timer, not a rule: see ``rescue.reregistration``); 0: never."""
    seed: int = SEED

    @property
    def buckets(self) -> int:
        """How many buckets the flows are hashed into."""
        return len(self.owners)

    def mine(self, me: Member) -> tuple[int, ...]:
        """The buckets ``me`` answers for."""
        return tuple(bucket for bucket, owner in enumerate(self.owners) if owner == me)

    def remote(self, me: Member) -> tuple[tuple[int, Member], ...]:
        """(bucket, directory member) for every bucket another member answers for."""
        return tuple((bucket, owner) for bucket, owner in enumerate(self.owners) if owner != me)


@dataclass(frozen=True, slots=True)
class RescuePlan:
    """Everything the kernel data path of one server should be."""

    me: Member
    peers: tuple[Member, ...]
    members: tuple[Member, ...]
    prefixes: tuple[IPNetwork, ...]
    rescue: Overlay
    feedback: Overlay
    timers: Timers
    clamp_mss: bool
    underlay_mtu: int
    takeover_warmup: float
    budget: Budget
    fabric_interfaces: tuple[str, ...] = ()
    """Overlay packets are accepted only on these (empty: on any interface)."""
    reset_guard_mark: int = 0
    """The skb mark bit of the reset guard on ``fabric_interfaces`` (0: no guard)."""
    directory: Directory | None = None
    """The flow directory, when enabled and there is a peer to ask."""

    def all_label(self, family: Family) -> str:
        """The next hop that reaches every peer at once on the rescue overlay."""
        address = (
            overlay_ipv4_all(self.rescue.ipv4.network.supernet())
            if family is Family.IPV4
            else overlay_ipv6_all()
        )
        return str(address)

    @property
    def underlay(self) -> Family:
        """The family of the members' underlay addresses."""
        return Family.of(self.me.address.version)

    @property
    def families(self) -> tuple[Family, ...]:
        """Families with a table: the underlay's and every anycast prefix's."""
        wanted = {self.underlay} | {Family.of(prefix.version) for prefix in self.prefixes}
        return tuple(family for family in Family if family in wanted)

    def prefixes_of(self, family: Family) -> tuple[IPNetwork, ...]:
        """The anycast prefixes of one family."""
        return tuple(p for p in self.prefixes if p.version == family.version)

    def mss(self, family: Family) -> int:
        """The largest MSS whose segments (with IP and TCP headers) fit the overlay."""
        return self.rescue.mtu - (40 if family is Family.IPV4 else 60)


def _overlay(
    settings: RescueConfig,
    me: Member,
    peers: tuple[Member, ...],
    mtu: int,
    *,
    feedback: bool,
) -> Overlay:
    neighbors: list[Neighbor] = []
    fdb: list[FdbEntry] = []
    for peer in peers:
        mac = peer.feedback_mac if feedback else peer.rescue_mac
        neighbors += [
            Neighbor(peer.label(Family.IPV4, feedback=feedback), mac),
            Neighbor(peer.label(Family.IPV6, feedback=feedback), mac),
        ]
        fdb.append(FdbEntry(mac, str(peer.address)))
        if not feedback:  # head-end replication of frames to the "every peer" label
            fdb.append(FdbEntry(ZERO_MAC, str(peer.address)))
    if not feedback:
        neighbors += [
            Neighbor(str(overlay_ipv4_all(settings.overlay_ipv4)), BROADCAST_MAC),
            Neighbor(str(overlay_ipv6_all()), BROADCAST_MAC),
        ]
    return Overlay(
        name=settings.feedback_device if feedback else settings.device,
        vni=settings.vni + 1 if feedback else settings.vni,
        port=settings.udp_port,
        local=me.address,
        mac=me.feedback_mac if feedback else me.rescue_mac,
        mtu=mtu,
        ipv4=me.feedback_ipv4 if feedback else me.rescue_ipv4,
        ipv6=me.feedback_ipv6 if feedback else me.rescue_ipv6,
        neighbors=tuple(sorted(neighbors)),
        fdb=tuple(sorted(fdb)),
    )


def plan_from_settings(
    settings: RescueConfig,
    prefixes: tuple[IPNetwork, ...],
    *,
    local_address: IPAddress,
    underlay_mtu: int,
    learnt: Iterable[IPAddress] = (),
    fabric_interfaces: tuple[str, ...] = (),
) -> RescuePlan:
    """The plan for the member ``local_address`` (ValueError if it is not a member).

    ``learnt``: members learnt from member routes (``rescue.membership``), merged with the
    static ``members``; with membership this server is a member by definition.
    ``fabric_interfaces``: the interfaces routing to the other members (host facts),
    used unless the config names them.
    """
    group = set(settings.members)
    if settings.membership is not None:
        group |= {a for a in learnt if a.version == local_address.version} | {local_address}
    ordered = sorted(group, key=lambda a: (a.version, int(a)))
    if len(ordered) > (capacity := overlay_capacity(settings.overlay_ipv4)):
        # check-config counts a static list; a learnt group can outgrow the range later.
        raise ValueError(
            f"{len(ordered)} members do not fit rescue.overlay_ipv4 {settings.overlay_ipv4} "
            f"(it holds {capacity}); use a /{overlay_prefix_for(len(ordered))} or larger"
        )
    members = tuple(
        Member.make(address, index, settings.overlay_ipv4) for index, address in enumerate(ordered)
    )
    mine = [m for m in members if m.address == local_address]
    if not mine:
        raise ValueError(f"{local_address} is not one of rescue.members")
    me = mine[0]
    peers = tuple(m for m in members if m is not me)
    overlay_mtu = underlay_mtu - OVERHEAD[me.address.version]
    per_minute = max(1, round(60 / settings.feedback_interval))
    return RescuePlan(
        me=me,
        peers=peers,
        members=members,
        prefixes=tuple(
            sorted(set(prefixes), key=lambda p: (p.version, int(p.network_address), p.prefixlen))
        ),
        rescue=_overlay(settings, me, peers, overlay_mtu, feedback=False),
        feedback=_overlay(settings, me, peers, overlay_mtu, feedback=True),
        timers=Timers(
            probation=settings.probation,
            orphan_window=settings.orphan_window,
            learn=settings.learn_timeout,
            feedback_per_minute=per_minute,
            feedback_burst=3,
            icmp_per_second=settings.icmp_rate,
            flow_table_size=settings.flow_table_size,
            icmp_source_per_second=settings.icmp_source_rate,
        ),
        clamp_mss=settings.clamp_mss,
        underlay_mtu=underlay_mtu,
        takeover_warmup=settings.takeover_warmup,
        budget=Budget(
            rate=settings.blind_copy_rate,
            burst=settings.blind_copy_burst,
            source_rate=settings.blind_source_rate,
            source_burst=settings.blind_source_burst,
            source_prefix_ipv4=settings.blind_source_prefix_ipv4,
            source_prefix_ipv6=settings.blind_source_prefix_ipv6,
        ),
        fabric_interfaces=tuple(sorted(set(settings.fabric_interfaces or fabric_interfaces))),
        reset_guard_mark=settings.reset_guard_mark,
        directory=_directory(settings, members) if peers else None,
    )


def _directory(settings: RescueConfig, members: tuple[Member, ...]) -> Directory | None:
    config = settings.directory
    if not config.enabled:
        return None
    owners = bucket_owners([m.address for m in members], config.buckets)
    return Directory(
        owners=tuple(members[index] for index in owners),
        register_interval=config.register_interval,
        entry_timeout=config.entry_timeout,
        answer_timeout=config.answer_timeout,
        query_rate=config.query_rate,
        query_burst=config.query_burst,
        register_rate=config.register_rate,
        reregister_after=config.reregister_after,
    )


def build_plan(
    config: Config,
    *,
    local_address: IPAddress,
    underlay_mtu: int,
    learnt: Iterable[IPAddress] = (),
    fabric_interfaces: tuple[str, ...] = (),
) -> RescuePlan:
    """The plan of a config with a ``rescue:`` section (ValueError without one).

    ``local_address`` and ``underlay_mtu`` are host facts (``kernel.host_facts``), or
    ``rescue.local_address`` / ``rescue.underlay_mtu`` when the config sets them.
    """
    if config.rescue is None:
        raise ValueError("the config has no rescue section")
    prefixes = tuple(prefix.prefix for prefix in config.prefixes)
    return plan_from_settings(
        config.rescue,
        prefixes,
        local_address=local_address,
        underlay_mtu=underlay_mtu,
        learnt=learnt,
        fabric_interfaces=fabric_interfaces,
    )
