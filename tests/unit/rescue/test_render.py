"""The rendered nftables text: deterministic, complete, and closed to loops and strangers.

The kernel accepts these texts (tests/integration/rescue/test_render_nft.py runs
``nft -c`` on them); here we check what they say.
"""

from __future__ import annotations

import re
from dataclasses import replace

from anycast_announcer.rescue.model import Family, RescuePlan
from anycast_announcer.rescue.render import RenderMode, render_table, table_shape
from tests.unit.rescue.plans import BASE, plan


def chains(text: str) -> dict[str, list[str]]:
    """Rules per chain of a rendered table."""
    found: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        stripped = line.strip()
        match = re.fullmatch(r"chain (\S+) \{", stripped)
        if match:
            current = match.group(1)
            found[current] = []
        elif stripped == "}":
            current = None
        elif current is not None and not stripped.startswith("type filter hook"):
            found[current].append(stripped)
    return found


NO_DIRECTORY = "  directory: {enabled: false}\n"
"""Blind replication alone (the directory's rules are tested in test_render_directory)."""


def full(p: RescuePlan, family: Family = Family.IPV4) -> dict[str, list[str]]:
    return chains(render_table(p, family, device_indexes={"anycast-rsc": 7}).text)


def test_rendering_is_deterministic() -> None:
    first = render_table(plan(), Family.IPV4, device_indexes={"anycast-rsc": 7})
    second = render_table(plan(), Family.IPV4, device_indexes={"anycast-rsc": 7})
    assert first == second
    assert first.marker.startswith("anycast-announcer rescue v1 full ")


def test_the_digest_follows_the_device_indexes_and_the_mode() -> None:
    """dup binds a device index at load time: a recreated device needs a reload."""
    base = render_table(plan(), Family.IPV4, device_indexes={"anycast-rsc": 7})
    moved = render_table(plan(), Family.IPV4, device_indexes={"anycast-rsc": 8})
    warm = render_table(
        plan(), Family.IPV4, mode=RenderMode.WARM, device_indexes={"anycast-rsc": 7}
    )
    assert len({base.digest, moved.digest, warm.digest}) == 3
    assert warm.marker.split()[-2] == "warm"


def test_fabric_packets_of_unknown_flows_go_to_the_peers() -> None:
    rules = full(plan(NO_DIRECTORY))["fabric_tcp"]
    assert rules[0] == "tcp flags & (fin|syn|rst|ack) == syn accept"
    assert rules[1] == "ct state established,related accept"
    replicate = rules[-2]
    assert replicate.startswith("add @probation")
    # One dup to the broadcast label, whatever the group size: the device replicates.
    assert replicate.count("dup to") == 1
    assert 'dup to 169.254.90.126 device "anycast-rsc"' in replicate
    assert replicate.endswith(" drop")
    # A full set fails the add: the packet is dropped, not reset by the local stack.
    assert rules[-1] == "counter name blind_refused drop"
    assert rules[-3] == "jump blind"
    learnt = [r for r in rules if "@owner_10_2_2_2" in r]
    assert learnt == [
        "ip saddr . tcp sport . ip daddr . tcp dport @owner_10_2_2_2 counter name "
        'fwd_10_2_2_2 dup to 169.254.90.2 device "anycast-rsc" drop'
    ]
    flow = "ip saddr . tcp sport . ip daddr . tcp dport"
    budgeted, in_probation, orphan = rules[-6], rules[-5], rules[-4]
    assert budgeted == f"{flow} @probation jump blind"
    assert in_probation.startswith(f"{flow} @probation counter name replicated dup to")
    assert orphan == (f"{flow} @rescuing delete @rescuing {{ {flow} }} counter name orphans accept")
    # A new probation adds both sets and refreshes neither: a window cannot outlive itself.
    assert replicate.startswith(f"add @probation {{ {flow} }} add @rescuing {{ {flow} }} ")
    assert "update @rescuing" not in "\n".join(rules)


def test_the_orphan_window_follows_probation() -> None:
    shape = table_shape(plan("  probation: 4\n  orphan_window: 7\n"), Family.IPV4)
    sets = {s.name: s for s in shape.sets}
    assert sets["probation"].timeout == 4
    assert sets["rescuing"].timeout == 11


def test_learnt_owners_come_before_probation_and_orphans() -> None:
    rules = full(plan())["fabric_tcp"]
    owners = max(i for i, r in enumerate(rules) if "@owner_" in r)
    assert owners < next(i for i, r in enumerate(rules) if "counter name orphans" in r)


def test_the_warm_table_rescues_nothing_but_keeps_the_overlays() -> None:
    warm = chains(render_table(plan(), Family.IPV4, mode=RenderMode.WARM).text)
    assert warm["fabric_tcp"] == ["ct state established,related accept", "accept"]
    assert warm["from_10_2_2_2"] == full(plan())["from_10_2_2_2"]


def test_only_the_full_table_marks_resets_for_the_guard() -> None:
    """A warm table hands moved flows to the local stack: their resets stay unmarked,
    so the guard drops them (a reinstall after a flush resets nobody)."""
    p = plan()
    assert full(p)["resets"] == [
        "tcp flags & rst == rst ip saddr @anycast meta mark set meta mark | 0x100000"
    ]
    assert chains(render_table(p, Family.IPV4, mode=RenderMode.WARM).text)["resets"] == []
    assert "resets" not in full(plan("  reset_guard_mark: 0\n"))


def test_nothing_that_arrives_over_an_overlay_is_forwarded_again() -> None:
    """No loops: the overlay chains never jump to the fabric chains, and the only copy
    they make is one feedback packet back over the feedback device."""
    rendered = full(plan())
    overlay_chains = ["from_overlay", "from_feedback", "from_10_2_2_2", "from_10_2_3_2"]
    for name in overlay_chains:
        for rule in rendered[name]:
            assert "fabric" not in rule
            assert 'device "anycast-rsc"' not in rule
    feedback = [r for r in rendered["from_10_2_2_2"] if "dup" in r]
    assert feedback == [
        "update @fed_10_2_2_2 { ip saddr . tcp sport . ip daddr . tcp dport "
        "limit rate 60/minute burst 3 packets } counter name fbtx_10_2_2_2 "
        'dup to 169.254.90.130 device "anycast-fb" accept'
    ]


def test_overlay_accepts_only_held_connections_of_our_addresses_from_members() -> None:
    rendered = full(plan(NO_DIRECTORY))
    overlay = rendered["from_overlay"]
    assert overlay[0] == "meta pkttype broadcast meta pkttype set host"
    assert overlay[1] == "ip daddr != @anycast counter name overlay_refused drop"
    assert overlay[2] == "meta l4proto != { tcp, icmp } counter name overlay_refused drop"
    assert overlay[3] == (
        "ether saddr vmap { 02:52:0a:02:02:02 : jump from_10_2_2_2, "
        "02:52:0a:02:03:02 : jump from_10_2_3_2 }"
    )
    assert overlay[-1] == "counter name overlay_refused drop"
    peer = rendered["from_10_2_2_2"]
    assert peer[0] == "ct state != { established, related } counter name bad_10_2_2_2 drop"
    feedback = rendered["from_feedback"]
    assert any(
        r.startswith(
            "ether saddr 02:46:0a:02:03:02 ip saddr . tcp sport . ip daddr . tcp dport "
            "@probation update @owner_10_2_3_2"
        )
        for r in feedback
    )


def test_no_peer_yet_renders_no_empty_map() -> None:
    """A learnt membership before its first member has no peers: nftables 1.1 (Debian 13)
    rejects an empty anonymous map or set, so no rule may render one."""
    alone = replace(plan(), peers=())
    for family in (Family.IPV4, Family.IPV6):
        text = render_table(alone, family, device_indexes={"anycast-rsc": 7}).text
        rules = [line for line in text.splitlines() if not line.strip().startswith("counter ")]
        assert not [line for line in rules if re.search(r"\{\s*\}", line)]
        overlay = chains(text)["from_overlay"]
        assert not [rule for rule in overlay if "vmap" in rule]
        assert overlay[-1] == "counter name overlay_refused drop"


def test_underlay_accepts_vxlan_only_from_members() -> None:
    rendered = full(plan())
    assert rendered["raw_prerouting"][0] == (
        "udp dport 4800 fib daddr type local ip saddr != @members counter name "
        "underlay_refused drop"
    )
    text = render_table(plan(), Family.IPV4).text
    assert "set members { type ipv4_addr; elements = { 10.2.1.2, 10.2.2.2, 10.2.3.2 }; }" in text
    # The IPv6 table of an IPv4 underlay has no underlay chains.
    assert "raw_prerouting" not in chains(render_table(plan(), Family.IPV6).text)


def test_icmp_matches_the_quoted_source_bits_of_each_prefix() -> None:
    base = BASE.replace(
        "  - {prefix: 10.255.0.1/32, services: [web]}",
        "  - {prefix: 10.255.0.1/32, services: [web]}\n"
        "  - {prefix: 10.254.0.0/22, services: [web]}",
    ).replace('"fd00:255::1/128"', '"fd00:255::/64"')
    p = plan(base=base)
    v4 = [r for r in full(p)["prerouting"] if "jump fabric_icmp" in r]
    assert v4 == [
        "icmp type destination-unreachable icmp code frag-needed @th,160,22 0x2bf80 "
        "jump fabric_icmp",
        "icmp type destination-unreachable icmp code frag-needed @th,160,32 0xaff0001 "
        "jump fabric_icmp",
    ]
    assert int.from_bytes(bytes([10, 254, 0, 0]), "big") == (0x2BF80 << 10)
    v6 = [r for r in full(p, Family.IPV6)["prerouting"] if "jump fabric_icmp" in r]
    assert v6 == ["icmpv6 type packet-too-big @th,128,64 0xfd00025500000000 jump fabric_icmp"]
    relay = full(p)["fabric_icmp"]
    assert relay[1].startswith("limit rate 100/second burst 100 packets counter name icmp_relayed")


def test_mss_clamp_follows_the_overlay_mtu_and_can_be_off() -> None:
    assert full(plan(mtu=1500))["mss"] == [
        "tcp flags & (syn|ack) == syn|ack ip saddr @anycast tcp option maxseg size > 1410 "
        "tcp option maxseg size set 1410"
    ]
    assert "1390" in full(plan(mtu=1500), Family.IPV6)["mss"][0]
    assert "mss" not in full(plan("  clamp_mss: false\n"))


def test_feedback_is_rate_limited_per_flow_and_fails_closed() -> None:
    """The feedback copy sits in the rule that updates the meter: when the set is full
    the update fails, that rule does not match, and the next one accepts without a copy."""
    rules = full(plan("  feedback_interval: 0.5\n"))["from_10_2_3_2"]
    assert rules[4:] == [
        "update @fed_10_2_3_2 { ip saddr . tcp sport . ip daddr . tcp dport "
        "limit rate 120/minute burst 3 packets } counter name fbtx_10_2_3_2 "
        'dup to 169.254.90.131 device "anycast-fb" accept',
        "accept",
    ]


def test_shape_lists_every_object_the_rules_use() -> None:
    p = plan()
    # The ip table; the netdev table after it has objects of its own.
    text = render_table(p, Family.IPV4).text.split("table netdev")[0]
    shape = table_shape(p, Family.IPV4)
    used_counters = set(re.findall(r"counter name (\w+)", text))
    assert used_counters == set(shape.counters)
    used_sets = set(re.findall(r"@(\w+)", text)) - {"th"}  # @th,OFFSET,LEN is raw payload
    assert used_sets == {s.name for s in shape.sets}
    jumped = set(re.findall(r"jump (\w+)", text))
    assert jumped <= {c.name for c in shape.chains}
    dynamic = {s.name for s in shape.sets if s.dynamic}
    assert dynamic == {
        "probation",
        "rescuing",
        "blind_src",
        "icmp_src",
        "owner_10_2_2_2",
        "fed_10_2_2_2",
        "owner_10_2_3_2",
        "fed_10_2_3_2",
        "asked",
        "queried",
        "registered",
        "dir_10_2_2_2",
        "dir_10_2_3_2",
    }
    for name in dynamic:
        assert re.search(rf"set {name} {{ [^}}]*flags dynamic,timeout;", text)


class TestCopyBudget:
    """Blind copies are bounded per server and per source prefix, in underlay packets."""

    def test_the_budget_is_divided_by_the_fan_out(self) -> None:
        p = plan(
            "  blind_copy_rate: 1000\n  blind_copy_burst: 4000\n"
            "  blind_source_rate: 250\n  blind_source_burst: 1000\n"
        )
        blind = full(p)["blind"]
        # Two peers: every blind packet is two underlay packets.
        assert blind == [
            "update @blind_src { ip saddr & 255.255.255.0 limit rate over 125/second "
            "burst 500 packets } counter name blind_source_limited drop",
            "limit rate over 500/second burst 2000 packets counter name blind_limited drop",
        ]

    def test_ipv6_sources_are_counted_per_configured_prefix(self) -> None:
        blind = full(plan("  blind_source_prefix_ipv6: 56\n"), Family.IPV6)["blind"]
        assert blind[0].startswith("update @blind_src { ip6 saddr & ffff:ffff:ffff:ff00:: ")

    def test_copies_to_a_learnt_owner_are_not_budgeted(self) -> None:
        rules = full(plan())["fabric_tcp"]
        learnt = [i for i, r in enumerate(rules) if "@owner_" in r]
        assert max(learnt) < min(i for i, r in enumerate(rules) if "jump blind" in r)

    def test_a_budget_never_rounds_to_zero(self) -> None:
        blind = full(plan("  blind_copy_rate: 1\n  blind_source_rate: 1\n"))["blind"]
        assert "limit rate over 1/second" in blind[1]


class TestAntiSpoofing:
    def test_a_claim_is_learnt_only_for_a_flow_copied_to_that_peer(self) -> None:
        flow = "ip saddr . tcp sport . ip daddr . tcp dport"
        feedback = full(plan(NO_DIRECTORY))["from_feedback"]
        mine = [r for r in feedback if r.startswith("ether saddr 02:46:0a:02:02:02 ")]
        assert len(mine) == 2
        assert all(" @probation " in r or " @owner_10_2_2_2 update" in r for r in mine)
        assert f"{flow} @owner_10_2_2_2 update @owner_10_2_2_2" in mine[1]
        assert feedback[-1] == "counter name claims_refused drop"

    def test_overlay_packets_only_on_fabric_interfaces(self) -> None:
        p = replace(plan(), fabric_interfaces=("eth1", "eth2"))
        raw = full(p)["raw_prerouting"]
        assert raw[1] == (
            "udp dport 4800 fib daddr type local iifname != @fabric "
            "counter name underlay_refused drop"
        )
        assert (
            'set fabric { type ifname; elements = { "eth1", "eth2" }; }'
            in render_table(p, Family.IPV4).text
        )

    def test_configured_fabric_interfaces_win_over_the_routes(self) -> None:
        p = plan("  fabric_interfaces: [bond0]\n")
        assert p.fabric_interfaces == ("bond0",)

    def test_icmp_is_budgeted_per_sender_and_per_peer(self) -> None:
        rendered = full(plan("  icmp_rate: 50\n  icmp_source_rate: 5\n"))
        icmp = rendered["fabric_icmp"]
        assert icmp[0] == (
            "update @icmp_src { ip saddr limit rate over 5/second burst 5 packets } "
            "counter name icmp_limited return"
        )
        assert icmp[1].startswith("limit rate 50/second burst 50 packets counter name icmp_relayed")
        peer = rendered["from_10_2_2_2"]
        assert peer[1] == (
            "meta l4proto != tcp limit rate over 50/second burst 50 packets "
            "counter name icmp_limited drop"
        )
