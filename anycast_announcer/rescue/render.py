"""The nftables table of one address family, rendered from a plan (pure, deterministic).

Chains, in packet order (``F`` is the flow key ``saddr . sport . daddr . dport``):

- ``raw_prerouting`` / ``raw_output`` (underlay family, priority raw): VXLAN from anything
  but a member, or on an interface not toward the fabric, is dropped
  (``underlay_refused``); VXLAN between members is not tracked.
- ``prerouting`` (priority mangle, after conntrack at -200):
  loopback is left alone; the overlays go to ``from_overlay`` / ``from_feedback``;
  anything not for an anycast address is left alone; TCP goes to ``fabric_tcp``; an ICMP
  "fragmentation needed" / "packet too big" quoting an anycast source to ``fabric_icmp``.
- ``fabric_tcp``: a pure SYN or a packet conntrack knows (established, related,
  untracked) is local. Anything else is not ours: a learnt flow goes to its owner only
  (never budgeted); a flow in probation is replicated to every peer, within the budget
  (``blind``); the first packet of a flow past its probation, within its orphan window,
  goes to the local stack (which resets it) and ends the window; any other flow, within
  the budget, starts a probation (``probation`` and ``rescuing``, added together, never
  refreshed) and is replicated. Copies are dropped here; so is a packet over the budget,
  or of a new flow when a flow set is full (``blind_refused``): fail closed, no reset.
- ``blind``: the copy budget, per client source prefix (``blind_src``, a meter) and in
  all; a packet over either is dropped. Replication is one ``dup`` to the broadcast label,
  which the VXLAN device sends to every peer (head-end replication), so a packet costs
  N-1 underlay packets and the limits are the budget divided by N-1.
- ``fabric_icmp``: relayed to every peer (rate-limited per sender and in all), and
  delivered locally too.
- ``from_overlay``: a frame sent to the broadcast label is made the host's; only TCP /
  ICMP for an anycast address, from a known member MAC (one map lookup); then
  ``from_<peer>``: conntrack must know the flow (else ``bad_<peer>``, dropped), ICMP is
  rate-limited per peer, it is accepted (``rx_<peer>``) and, rate-limited per flow, a
  feedback copy goes back to the forwarder over the feedback overlay. When ``fed_<peer>``
  is full no feedback goes back for a flow it does not hold yet (fail closed): to the
  forwarder the flow then looks unclaimed, so it stays in probation, copied to every
  peer within the blind budget, and is an orphan if the set has not drained by the end
  of its probation. Nothing arriving here is ever forwarded again.
- ``from_feedback``: the forwarder learns ``F -> peer`` (``owner_<peer>``) and drops it,
  but only for a flow it copied to that peer: one in probation (copied to all) or one
  already learnt from it. Any other claim is refused (``claims_refused``).
- ``resets`` (postrouting): a TCP reset from an anycast address gets the reset guard's
  mark bit, the pass the guard (tc, outside nftables: see ``guard``) asks of every reset
  it lets out; so while this table is missing (a ruleset flush), or warm (a reinstall
  after one), resets are dropped, and the clients retransmit into the full table.
- With the flow directory (``plan.directory``; see the section below and docs/rescue.md):
  ``fabric_tcp`` first registers a local established flow with its directory member
  (``registered``, over the feedback overlay; the set's comment names the bucket map,
  so a map change empties it and owners register again), and sends an unclaimed flow's packets to
  its directory member (``targeted`` / ``dir_send``: ``asked`` then ``queried``, its own
  budget) before the blind path; ``from_overlay`` sends broadcast frames straight to the
  peer chains and turns a unicast copy of an unknown flow of its own buckets into a
  query (``dir_query``: on to the registered owner with TTL 1 and the asker's MAC, set by
  the ``netdev`` table's ``egress`` chain from the mark; nothing with TTL 1 is sent on
  again); ``from_feedback`` accepts claims for asked flows and records registrations
  (``reg_<peer>`` -> ``dir_<peer>``).
- ``mss`` (output): SYN-ACKs from anycast addresses advertise an MSS that fits the overlay.
- ``info``: one rule whose comment carries the digest of everything else, so the
  reconciler can tell whether the installed table is the one it would render.

``RenderMode.WARM`` renders the same table with ``fabric_tcp`` accepting everything and
``resets`` empty: it lets conntrack learn the flows that existed before the first install
(take-over) before any packet is treated as someone else's.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace

from anycast_announcer.rescue.counters import DIRECTORY_COUNTERS
from anycast_announcer.rescue.model import TABLE, Directory, Family, Member, RescuePlan

__all__ = [
    "DIRECTORY_COUNTERS",
    "MARKER_PREFIX",
    "REGISTERED",
    "ChainShape",
    "RenderMode",
    "RenderedTable",
    "SetShape",
    "TableShape",
    "render_table",
    "table_shape",
]

MARKER_PREFIX = "anycast-announcer rescue v1"
_METER_MEMORY = 10
"""Seconds a per-source meter (blind copies, ICMP senders) outlives its last packet."""
_ICMP_SOURCES = 4096
"""ICMP senders metered at once; beyond it, new senders share the aggregate limit only."""
RAW_PRIORITY = -300
MANGLE_PRIORITY = -150
TABLE_COMMENT = "anycast-announcer flow rescue; remove with: anycast-announcer rescue remove"


EGRESS_PRIORITY = 0
REGISTERED = "registered"
"""The owner's set of the flows it registered with their directory members."""


class RenderMode(enum.Enum):
    """FULL rescues; WARM only lets conntrack learn (first install, take-over)."""

    FULL = "full"
    WARM = "warm"


@dataclass(frozen=True, slots=True)
class SetShape:
    """A named set as it is declared (and as ``nft -j`` reports it back)."""

    name: str
    key: tuple[str, ...]
    flags: frozenset[str] = frozenset()
    timeout: int | None = None
    size: int | None = None
    dynamic: bool = False
    """Filled from the packet path; its elements survive a reconcile."""
    elements: tuple[str, ...] = ()
    comment: str | None = None
    """Part of the set's identity: a set whose elements are only valid for something
    else in the plan names it here (``registered``: the bucket map), so a plan where
    that changed declares a different set, and the reconcile replaces it empty."""

    def comparable(self) -> tuple[object, ...]:
        """What must match for an installed set to be kept (``nft -j`` omits 'dynamic')."""
        return (self.key, self.flags, self.timeout, self.size, self.comment)

    def declaration(self) -> str:
        """The ``set NAME { ... }`` line."""
        parts = [f"type {' . '.join(self.key)};"]
        flags = sorted(self.flags | ({"dynamic"} if self.dynamic else set()))
        if flags:
            parts.append(f"flags {','.join(flags)};")
        if self.timeout is not None:
            parts.append(f"timeout {self.timeout}s;")
        if self.size is not None:
            parts.append(f"size {self.size};")
        if self.comment is not None:
            parts.append(f'comment "{self.comment}";')
        if self.elements:
            parts.append(f"elements = {{ {', '.join(self.elements)} }};")
        return f"set {self.name} {{ {' '.join(parts)} }}"


@dataclass(frozen=True, slots=True)
class ChainShape:
    """A chain; base chains have a hook and a priority (type filter, policy accept)."""

    name: str
    hook: str | None = None
    priority: int | None = None

    def header(self) -> str:
        """The first line inside ``chain NAME { ... }`` of a base chain, else ''."""
        if self.hook is None:
            return ""
        return f"type filter hook {self.hook} priority {self.priority}; policy accept;"


@dataclass(frozen=True, slots=True)
class TableShape:
    """The objects of one family's table, without rules."""

    family: Family
    sets: tuple[SetShape, ...]
    chains: tuple[ChainShape, ...]
    counters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RenderedTable:
    """The complete ``table`` text of one family, its objects and its digest."""

    family: Family
    text: str
    shape: TableShape
    digest: str
    mode: RenderMode
    egress: str = ""
    """The flow directory's ``netdev`` table alone (replaced whole; also part of
    ``text``), for when only it must be written back; '' when the plan has none here."""

    @property
    def marker(self) -> str:
        """The comment of the ``info`` rule, compared with the installed one; the netdev
        table's rule carries the same one (it is written with this table)."""
        return f"{MARKER_PREFIX} {self.mode.value} {self.digest}"


# -- objects --------------------------------------------------------------------------------


def _flow_key(family: Family) -> tuple[str, ...]:
    return (family.addr_type, "inet_service", family.addr_type, "inet_service")


def _flow(family: Family) -> str:
    kw = family.keyword
    return f"{kw} saddr . tcp sport . {kw} daddr . tcp dport"


def _flow_set(name: str, family: Family, timeout: int, size: int) -> SetShape:
    return SetShape(
        name=name,
        key=_flow_key(family),
        flags=frozenset({"timeout"}),
        timeout=timeout,
        size=size,
        dynamic=True,
    )


def _peer_counters(peer: Member) -> list[str]:
    return [f"{kind}_{peer.token}" for kind in ("fwd", "rx", "bad", "fbtx", "fbrx")]


def table_shape(plan: RescuePlan, family: Family) -> TableShape:
    """Sets, chains and counters of ``family``'s table."""
    sets: list[SetShape] = []
    chains: list[ChainShape] = []
    counters: list[str] = []
    if family is plan.underlay:
        members = tuple(str(m.address) for m in plan.members)
        if plan.fabric_interfaces:
            sets.append(
                SetShape(
                    "fabric",
                    ("ifname",),
                    elements=tuple(f'"{name}"' for name in plan.fabric_interfaces),
                )
            )
        sets.append(SetShape("members", (family.addr_type,), elements=members))
        chains += [
            ChainShape("raw_prerouting", "prerouting", RAW_PRIORITY),
            ChainShape("raw_output", "output", RAW_PRIORITY),
        ]
        counters += ["underlay_refused", "underlay_sent"]
    prefixes = plan.prefixes_of(family)
    if prefixes:
        timers, size = plan.timers, plan.timers.flow_table_size
        sets.append(
            SetShape(
                "anycast",
                (family.addr_type,),
                flags=frozenset({"interval"}),
                elements=tuple(str(p) for p in prefixes),
            )
        )
        sets += [
            _flow_set("probation", family, timers.probation, size),
            # Probation and orphan window, from the first replicated packet; added, never
            # refreshed, so a stale entry cannot outlive it (a client reusing the 4-tuple
            # of an old orphan later gets a probation, not a reset).
            _flow_set("rescuing", family, timers.probation + timers.orphan_window, size),
            SetShape(
                "blind_src",
                (family.addr_type,),
                flags=frozenset({"timeout"}),
                timeout=_METER_MEMORY,
                size=size,
                dynamic=True,
            ),
            SetShape(
                "icmp_src",
                (family.addr_type,),
                flags=frozenset({"timeout"}),
                timeout=_METER_MEMORY,
                size=_ICMP_SOURCES,
                dynamic=True,
            ),
        ]
        for peer in plan.peers:
            sets += [
                _flow_set(f"owner_{peer.token}", family, timers.learn, size),
                _flow_set(f"fed_{peer.token}", family, timers.feedback_memory, size),
            ]
        if (directory := _directory(plan)) is not None:
            sets += _directory_sets(plan, family, directory)
        chains.append(ChainShape("prerouting", "prerouting", MANGLE_PRIORITY))
        if plan.reset_guard_mark:
            chains.append(ChainShape("resets", "postrouting", MANGLE_PRIORITY))
        if plan.clamp_mss:
            chains.append(ChainShape("mss", "output", MANGLE_PRIORITY))
        chains += [
            ChainShape("fabric_tcp"),
            ChainShape("blind"),
            ChainShape("fabric_icmp"),
            ChainShape("from_overlay"),
            ChainShape("from_feedback"),
            *(ChainShape(f"from_{peer.token}") for peer in plan.peers),
        ]
        if _directory(plan) is not None:
            chains += _directory_chains(plan)
        counters += [
            "replicated",
            "orphans",
            "icmp_relayed",
            "overlay_refused",
            "blind_limited",
            "blind_source_limited",
            "blind_refused",
            "claims_refused",
            "icmp_limited",
        ]
        for peer in plan.peers:
            counters += _peer_counters(peer)
        if _directory(plan) is not None:
            counters += list(DIRECTORY_COUNTERS)
    chains.append(ChainShape("info"))
    return TableShape(family, tuple(sets), tuple(chains), tuple(counters))


# -- rules ----------------------------------------------------------------------------------


def _dup(plan: RescuePlan, family: Family, peer: Member, *, feedback: bool) -> str:
    device = plan.feedback.name if feedback else plan.rescue.name
    return f'dup to {peer.label(family, feedback=feedback)} device "{device}"'


def _dup_all(plan: RescuePlan, family: Family) -> str:
    # One statement whatever the group size: the VXLAN device replicates (see model).
    return f'dup to {plan.all_label(family)} device "{plan.rescue.name}"'


def _icmp_matches(plan: RescuePlan, family: Family) -> list[str]:
    """One match per prefix: the quoted packet's source is inside the prefix."""
    if family is Family.IPV4:
        # ICMP header (8 bytes), then the quoted IPv4 header: saddr at byte 12.
        head, offset = "icmp type destination-unreachable icmp code frag-needed", 160
    else:
        # ICMPv6 header (8 bytes), then the quoted IPv6 header: saddr at byte 8.
        head, offset = "icmpv6 type packet-too-big", 128
    matches = []
    for prefix in plan.prefixes_of(family):
        length = prefix.prefixlen
        if length == 0:
            matches.append(head)
            continue
        value = int(prefix.network_address) >> (prefix.max_prefixlen - length)
        matches.append(f"{head} @th,{offset},{length} {value:#x}")
    return matches


def _underlay_rules(plan: RescuePlan, family: Family) -> dict[str, list[str]]:
    kw, port = family.keyword, plan.rescue.port
    local = f"udp dport {port} fib daddr type local"
    interfaces = (
        [f"{local} iifname != @fabric counter name underlay_refused drop"]
        if plan.fabric_interfaces
        else []
    )
    return {
        "raw_prerouting": [
            f"{local} {kw} saddr != @members counter name underlay_refused drop",
            *interfaces,
            f"udp dport {port} {kw} saddr @members notrack",
        ],
        # Every VXLAN packet this server sends to the group (both overlays, every replica
        # of a blind copy): the underlay cost of rescue, as the flood benchmark counts it.
        "raw_output": [f"udp dport {port} {kw} daddr @members counter name underlay_sent notrack"],
    }


def _prerouting(plan: RescuePlan, family: Family) -> list[str]:
    kw = family.keyword
    return [
        'iifname "lo" accept',
        f'iifname "{plan.rescue.name}" jump from_overlay',
        f'iifname "{plan.feedback.name}" jump from_feedback',
        f"{kw} daddr != @anycast accept",
        "meta l4proto tcp jump fabric_tcp",
        *(f"{match} jump fabric_icmp" for match in _icmp_matches(plan, family)),
    ]


def _fabric_tcp(plan: RescuePlan, family: Family, mode: RenderMode) -> list[str]:
    if mode is RenderMode.WARM:
        return ["ct state established,related accept", "accept"]
    flow, directory = _flow(family), _directory(plan)
    rules = [
        "tcp flags & (fin|syn|rst|ack) == syn accept",
        *(_registration(plan, family, directory) if directory is not None else []),
        "ct state established,related accept",
        "ct state untracked accept",
    ]
    for peer in plan.peers:
        rules.append(
            f"{flow} @owner_{peer.token} counter name fwd_{peer.token} "
            f"{_dup(plan, family, peer, feedback=False)} drop"
        )
    rules += [
        f"{flow} @probation jump blind",
        f"{flow} @probation counter name replicated {_dup_all(plan, family)} drop",
        # Once: the local stack resets the flow now. A later packet of it (the reset was
        # lost) starts a new probation, and no stale window can claim the 4-tuple for a
        # new connection that reuses it.
        # A flow nobody claimed yet: first ask its directory member (one copy); the blind
        # path below is the fallback, for flows the directory cannot answer for.
        *(["jump targeted"] if directory is not None else []),
        f"{flow} @rescuing delete @rescuing {{ {flow} }} counter name orphans accept",
        "jump blind",
        f"add @probation {{ {flow} }} add @rescuing {{ {flow} }} "
        f"counter name replicated {_dup_all(plan, family)} drop",
        # A full set made the add fail: drop (fail closed) rather than let the local
        # stack reset a flow that may be someone else's.
        "counter name blind_refused drop",
    ]
    return rules


def _blind(plan: RescuePlan, family: Family) -> list[str]:
    budget, fanout = plan.budget, len(plan.peers)
    rate, burst = budget.per_packet(budget.rate, fanout), budget.per_packet(budget.burst, fanout)
    source_rate = budget.per_packet(budget.source_rate, fanout)
    source_burst = budget.per_packet(budget.source_burst, fanout)
    source = f"{family.keyword} saddr & {budget.source_mask(family)}"
    return [
        f"update @blind_src {{ {source} limit rate over {source_rate}/second "
        f"burst {source_burst} packets }} counter name blind_source_limited drop",
        f"limit rate over {rate}/second burst {burst} packets counter name blind_limited drop",
    ]


def _fabric_icmp(plan: RescuePlan, family: Family) -> list[str]:
    rate, per_source = plan.timers.icmp_per_second, plan.timers.icmp_source_per_second
    return [
        # Over its sender's budget: delivered here, not relayed.
        f"update @icmp_src {{ {family.keyword} saddr limit rate over {per_source}/second "
        f"burst {per_source} packets }} counter name icmp_limited return",
        f"limit rate {rate}/second burst {rate} packets counter name icmp_relayed "
        f"{_dup_all(plan, family)}",
    ]


def _from_overlay(plan: RescuePlan, family: Family) -> list[str]:
    kw = family.keyword
    icmp = "icmp" if family is Family.IPV4 else "ipv6-icmp"
    peers = ", ".join(f"{peer.rescue_mac} : jump from_{peer.token}" for peer in plan.peers)
    # With no peer yet (a learnt membership before its first member), the map would be
    # empty, and nft rejects "vmap {  }" as a syntax error (1.0.6 and 1.1.3 alike).
    # Without the rule every packet reaches the drop below, as with an empty map.
    by_peer = [f"ether saddr vmap {{ {peers} }}"] if plan.peers else []
    if (directory := _directory(plan)) is not None:
        return _from_overlay_directory(plan, family, directory, by_peer)
    return [
        # Sent to the broadcast label (replicated): TCP takes only the host's packets.
        "meta pkttype broadcast meta pkttype set host",
        f"{kw} daddr != @anycast counter name overlay_refused drop",
        f"meta l4proto != {{ tcp, {icmp} }} counter name overlay_refused drop",
        *by_peer,
        "counter name overlay_refused drop",
    ]


def _from_peer(plan: RescuePlan, family: Family, peer: Member) -> list[str]:
    flow, timers = _flow(family), plan.timers
    limit = f"limit rate {timers.feedback_per_minute}/minute burst {timers.feedback_burst} packets"
    icmp = timers.icmp_per_second
    return [
        f"ct state != {{ established, related }} counter name bad_{peer.token} drop",
        f"meta l4proto != tcp limit rate over {icmp}/second burst {icmp} packets "
        "counter name icmp_limited drop",
        f"counter name rx_{peer.token}",
        "meta l4proto != tcp accept",
        # Feedback only while the flow's meter is under its limit. A full fed set makes
        # the update fail and the rule not match: no feedback (fail closed), where "over
        # the limit -> accept, else feed back" would send a copy for every packet.
        f"update @fed_{peer.token} {{ {flow} {limit} }} "
        f"counter name fbtx_{peer.token} {_dup(plan, family, peer, feedback=True)} accept",
        "accept",
    ]


def _from_feedback(plan: RescuePlan, family: Family) -> list[str]:
    kw, flow = family.keyword, _flow(family)
    rules = [
        f"{kw} daddr != @anycast counter name overlay_refused drop",
        "meta l4proto != tcp counter name overlay_refused drop",
    ]
    for peer in plan.peers:
        rules += [
            # Learnt, as the answer to a copy sent to every peer: forget the flow's
            # probation history, so that when the owner stops confirming it (idle, gone,
            # or its entry lost to a reconcile) it gets a whole new probation instead of
            # an orphan's reset.
            f"ether saddr {peer.feedback_mac} {flow} @probation "
            f"update @owner_{peer.token} {{ {flow} }} "
            f"delete @probation {{ {flow} }} delete @rescuing {{ {flow} }} "
            f"counter name fbrx_{peer.token} drop",
            # Renewed, as the answer to copies sent to this peer alone.
            f"ether saddr {peer.feedback_mac} {flow} @owner_{peer.token} "
            f"update @owner_{peer.token} {{ {flow} }} counter name fbrx_{peer.token} drop",
        ]
    if (directory := _directory(plan)) is not None:
        rules += _directory_feedback(plan, family, directory)
    # A claim for a flow never copied to that peer (forged, or too late): not learnt.
    rules.append("counter name claims_refused drop")
    return rules


def _mss(plan: RescuePlan, family: Family) -> list[str]:
    mss = plan.mss(family)
    return [
        f"tcp flags & (syn|ack) == syn|ack {family.keyword} saddr @anycast "
        f"tcp option maxseg size > {mss} tcp option maxseg size set {mss}"
    ]


def _resets(plan: RescuePlan, family: Family) -> list[str]:
    # The reset guard (see guard) lets out only the resets that carry this bit: while
    # the full table exists, every one of them.
    return [
        f"tcp flags & rst == rst {family.keyword} saddr @anycast "
        f"meta mark set meta mark | {plan.reset_guard_mark:#x}"
    ]


def _rules(plan: RescuePlan, family: Family, mode: RenderMode) -> dict[str, list[str]]:
    rules: dict[str, list[str]] = {}
    if family is plan.underlay:
        rules.update(_underlay_rules(plan, family))
    if plan.prefixes_of(family):
        rules["prerouting"] = _prerouting(plan, family)
        rules["mss"] = _mss(plan, family)
        # Not while warm: the warm table hands every packet to the local stack, and a
        # moved flow's reset must stay behind the guard until the full table rescues it.
        rules["resets"] = _resets(plan, family) if mode is RenderMode.FULL else []
        rules["fabric_tcp"] = _fabric_tcp(plan, family, mode)
        rules["blind"] = _blind(plan, family)
        rules["fabric_icmp"] = _fabric_icmp(plan, family)
        rules["from_overlay"] = _from_overlay(plan, family)
        rules["from_feedback"] = _from_feedback(plan, family)
        for peer in plan.peers:
            rules[f"from_{peer.token}"] = _from_peer(plan, family, peer)
        if (directory := _directory(plan)) is not None:
            rules.update(_directory_rules(plan, family, directory))
    return rules


# -- the flow directory ---------------------------------------------------------------------
# Owners register their established flows with the flow's directory member over the
# feedback overlay (a registration means "I own this flow", like feedback); a server that
# gets a packet of a flow nobody claimed yet sends it to the flow's directory member,
# which forwards it to the registered owner with the asker's source MAC (netdev egress,
# keyed by the packet mark), so the owner's feedback goes straight to the asker. See
# docs/rescue.md, *The flow directory*.


def _directory(plan: RescuePlan) -> Directory | None:
    """The plan's directory, if there is a peer to ask (an empty map is a syntax error)."""
    return plan.directory if plan.peers else None


def _directory_sets(plan: RescuePlan, family: Family, directory: Directory) -> list[SetShape]:
    size, timers = plan.timers.flow_table_size, plan.timers
    sets = [
        # Asked, and waiting for an answer: its packets go to the directory member only.
        _flow_set("asked", family, directory.answer_timeout, size),
        # Asked, or in the probation that follows the answer timeout (blind copies);
        # then the orphan window of ``rescuing`` (added with it).
        _flow_set("queried", family, directory.answer_timeout + timers.probation, size),
        # Registered within the last register_interval (added, never refreshed), with
        # the directory member of the flow's bucket *in this bucket map*: the comment
        # names the map, so a membership change that moves buckets replaces the set
        # empty and owners register again at their next packet (to the new directory
        # member), instead of being held back by registrations sent to the old one.
        replace(
            _flow_set(REGISTERED, family, directory.register_interval, size),
            comment=f"bucket map {_bucket_map_digest(directory)}",
        ),
    ]
    sets += [
        _flow_set(f"dir_{peer.token}", family, directory.entry_timeout, size) for peer in plan.peers
    ]
    return sets


def _bucket_map_digest(directory: Directory) -> str:
    """Names the bucket -> directory member map (by address, so a member whose overlay
    position moved is the same member) and the bucket function."""
    owners = ",".join(str(owner.address) for owner in directory.owners)
    material = f"{directory.buckets} {directory.seed:#x} {owners}"
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _directory_chains(plan: RescuePlan) -> list[ChainShape]:
    return [
        ChainShape("targeted"),
        ChainShape("dir_ask"),
        ChainShape("dir_blind"),
        ChainShape("dir_local"),
        ChainShape("dir_query"),
        *(ChainShape(f"reg_{peer.token}") for peer in plan.peers),
    ]


def _bucket(family: Family, directory: Directory) -> str:
    """The flow's bucket, computed alike by every member's kernel."""
    return f"jhash {_flow(family)} mod {directory.buckets} seed {directory.seed:#x}"


def _buckets(buckets: tuple[int, ...]) -> str:
    return "{ " + ", ".join(str(bucket) for bucket in buckets) + " }"


def _label_map(pairs: tuple[tuple[int, Member], ...], family: Family, *, feedback: bool) -> str:
    items = ", ".join(f"{b} : {m.label(family, feedback=feedback)}" for b, m in pairs)
    return "map { " + items + " }"


def _mark(peer: Member) -> int:
    """The packet mark that names ``peer`` as the asker of a forwarded query: the low 32
    bits of its rescue MAC, unique per member as the MACs are."""
    return int(peer.rescue_mac.replace(":", "")[-8:], 16)


def _registration(plan: RescuePlan, family: Family, directory: Directory) -> list[str]:
    """Local established packets: register the flow with its directory member, at most
    once per ``register_interval`` (never on a SYN: a SYN flood must not become
    registrations; established means the handshake completed).

    ``registered`` holds a flow from its registration for ``register_interval`` (added,
    never refreshed), so most packets pay one set lookup; a full set sends nothing.
    """
    remote = directory.remote(plan.me)
    if not remote:
        return []
    flow, bucket, mine = _flow(family), _bucket(family, directory), directory.mine(plan.me)
    rate = directory.register_rate
    own = [f"ct state established {bucket} {_buckets(mine)} accept"] if mine else []
    return [
        f"ct state established {flow} @registered accept",
        *own,
        f"ct state established limit rate over {rate}/second burst {rate} packets "
        "counter name dir_register_limited accept",
        f"ct state established add @registered {{ {flow} }} counter name dir_registered "
        f"dup to {bucket} {_label_map(remote, family, feedback=True)} "
        f'device "{plan.feedback.name}" accept',
    ]


def _targeted(plan: RescuePlan, family: Family, directory: Directory) -> dict[str, list[str]]:
    """A flow nobody claimed: asked (its packets to the directory member), then, still
    unclaimed after ``answer_timeout``, blind copies until ``probation`` ends, then the
    orphan window; the same timeline as without the directory, with a targeted start."""
    flow, bucket = _flow(family), _bucket(family, directory)
    mine, remote = directory.mine(plan.me), directory.remote(plan.me)
    ttl = "ip ttl" if family is Family.IPV4 else "ip6 hoplimit"
    # Probation and orphan window start after the answer timeout: the blind copies get
    # the whole probation (as many retransmissions as without the directory).
    window = directory.answer_timeout + plan.timers.probation + plan.timers.orphan_window
    start = (
        f"add @asked {{ {flow} }} add @queried {{ {flow} }} "
        f"add @rescuing {{ {flow} timeout {window}s }}"
    )
    query = (
        f"counter name dir_queries dup to {bucket} "
        f'{_label_map(remote, family, feedback=False)} device "{plan.rescue.name}" drop'
    )
    local = f"{bucket} {_buckets(mine)}"

    # A copy sent on by a directory member carries TTL 1, and no directory member sends
    # on a packet with TTL 1: a loop between members whose tables disagree cannot form.
    def forward(peer: Member, first: str = "") -> str:
        return (
            f"{flow} @dir_{peer.token} {first}{ttl} set 1 counter name dir_forwarded "
            f"{_dup(plan, family, peer, feedback=False)} drop"
        )

    return {
        "targeted": [
            f"{flow} @asked goto dir_ask",
            f"{flow} @queried goto dir_blind",
            # Past its probation: the caller's orphan window.
            f"{flow} @rescuing return",
            # A new query (its repeats within answer_timeout are not budgeted again).
            f"limit rate over {directory.query_rate}/second burst {directory.query_burst} "
            "packets counter name dir_limited return",
            *([f"{local} jump dir_local", f"{local} return"] if mine else []),
            *([f"{start} {query}"] if remote else []),
        ],
        "dir_ask": [
            *([f"{local} jump dir_local", f"{local} goto dir_blind"] if mine else []),
            *([query] if remote else []),
        ],
        "dir_blind": [
            "jump blind",
            f"counter name replicated {_dup_all(plan, family)} drop",
        ],
        # This server is the flow's directory member: straight to the registered owner.
        "dir_local": [forward(peer, f"{start} ") for peer in plan.peers],
        # A query from a peer (marked with its name): to the registered owner, with the
        # asker's MAC (netdev egress), so the owner's feedback goes to the asker.
        "dir_query": [*(forward(peer) for peer in plan.peers), "counter name dir_unknown drop"],
    }


def _from_overlay_directory(
    plan: RescuePlan, family: Family, directory: Directory, by_peer: list[str]
) -> list[str]:
    """``from_overlay`` with the directory: broadcast frames (blind copies) go straight
    to the peer chains and are never sent on; a unicast copy of a flow conntrack does not
    know, in one of this server's buckets, is a query."""
    kw = family.keyword
    icmp = "icmp" if family is Family.IPV4 else "ipv6-icmp"
    ttl = "ip ttl" if family is Family.IPV4 else "ip6 hoplimit"
    mine = directory.mine(plan.me)
    marks = ", ".join(f"{peer.rescue_mac} : {_mark(peer):#x}" for peer in plan.peers)
    query = (
        [
            f"meta l4proto tcp {ttl} != 1 ct state != {{ established, related }} "
            f"{_bucket(family, directory)} {_buckets(mine)} "
            f"meta mark set ether saddr map {{ {marks} }} goto dir_query"
        ]
        if mine
        else []
    )
    broadcast = [f"meta pkttype broadcast meta pkttype set host {rule}" for rule in by_peer]
    return [
        f"{kw} daddr != @anycast counter name overlay_refused drop",
        f"meta l4proto != {{ tcp, {icmp} }} counter name overlay_refused drop",
        # Sent to the broadcast label (replicated): TCP takes only the host's packets.
        *broadcast,
        *query,
        *by_peer,
        "counter name overlay_refused drop",
    ]


def _directory_feedback(plan: RescuePlan, family: Family, directory: Directory) -> list[str]:
    """``from_feedback``: an answer to a query is a claim like any other, accepted for a
    flow this server asked about; a registration is recorded when the flow is in one of
    this server's buckets."""
    flow, rules = _flow(family), []
    for peer in plan.peers:
        rules.append(
            f"ether saddr {peer.feedback_mac} {flow} @queried "
            f"update @owner_{peer.token} {{ {flow} }} "
            f"delete @asked {{ {flow} }} delete @queried {{ {flow} }} "
            f"delete @rescuing {{ {flow} }} counter name fbrx_{peer.token} drop"
        )
    mine = directory.mine(plan.me)
    if mine:
        peers = ", ".join(f"{peer.feedback_mac} : goto reg_{peer.token}" for peer in plan.peers)
        rules.append(
            f"{_bucket(family, directory)} {_buckets(mine)} ether saddr vmap {{ {peers} }}"
        )
    return rules


def _directory_rules(
    plan: RescuePlan, family: Family, directory: Directory
) -> dict[str, list[str]]:
    rules = _targeted(plan, family, directory)
    flow = _flow(family)
    for peer in plan.peers:
        rules[f"reg_{peer.token}"] = [
            f"update @dir_{peer.token} {{ {flow} }} counter name dir_recorded drop"
        ]
    return rules


def _egress_table(plan: RescuePlan, marker: str = "") -> list[str]:
    """The netdev table that gives a forwarded query its asker's source MAC.

    Declared, deleted and declared again: one transaction replaces it whole whether it
    existed or not (nft 1.0.6 has no ``destroy``). Its rule carries ``marker`` (the
    underlay table's), so the reconciler can tell it is there and current.
    """
    if _directory(plan) is None:
        return []
    macs = ", ".join(f"{_mark(peer):#x} : {peer.rescue_mac}" for peer in plan.peers)
    return [
        f"table netdev {TABLE} {{ }}",
        f"delete table netdev {TABLE}",
        f"table netdev {TABLE} {{",
        f'\tcomment "{TABLE_COMMENT}"',
        "\tcounter dir_relayed { }",
        "\tchain egress {",
        f'\t\ttype filter hook egress device "{plan.rescue.name}" '
        f"priority {EGRESS_PRIORITY}; policy accept;",
        # Only marks set by dir_query name a peer; any other mark misses the map.
        f"\t\tether saddr set meta mark map {{ {macs} }} counter name dir_relayed"
        + (f' comment "{marker}"' if marker else ""),
        "\t}",
        "}",
    ]


# -- text -----------------------------------------------------------------------------------


def _chain_text(chain: ChainShape, rules: list[str]) -> list[str]:
    lines = [f"\tchain {chain.name} {{"]
    if chain.hook is not None:
        lines.append(f"\t\t{chain.header()}")
    lines += [f"\t\t{rule}" for rule in rules]
    lines.append("\t}")
    return lines


def _digest(body: str, device_indexes: Mapping[str, int]) -> str:
    # dup resolves the device name to an ifindex when the rule is loaded: a device
    # recreated under the same name needs the rules reloaded, so its index is hashed too.
    material = body + "\n" + json.dumps(dict(sorted(device_indexes.items())))
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def render_table(
    plan: RescuePlan,
    family: Family,
    *,
    mode: RenderMode = RenderMode.FULL,
    device_indexes: Mapping[str, int] | None = None,
) -> RenderedTable:
    """The ``table <family> anycast_rescue { ... }`` text for ``nft -f``."""
    shape = table_shape(plan, family)
    rules = _rules(plan, family, mode)
    body = [f"table {family.value} {TABLE} {{", f'\tcomment "{TABLE_COMMENT}"']
    body += [f"\t{s.declaration()}" for s in shape.sets]
    body += [f"\tcounter {name} {{ }}" for name in shape.counters]
    for chain in shape.chains:
        if chain.name != "info":
            body += _chain_text(chain, rules.get(chain.name, []))
    underlay = family is plan.underlay
    # The digest covers the netdev table too (without the marker it will carry).
    egress = _egress_table(plan) if underlay else []
    digest = _digest("\n".join(body + egress), device_indexes or {})
    marker = RenderedTable(family, "", shape, digest, mode).marker
    egress = _egress_table(plan, marker) if underlay else []
    body += _chain_text(ChainShape("info"), [f'return comment "{marker}"'])
    body.append("}")
    egress_text = "\n".join(egress) + "\n" if egress else ""
    text = "\n".join(body) + "\n" + egress_text
    return RenderedTable(family, text, shape, digest, mode, egress_text)
