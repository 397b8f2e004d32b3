"""The flow directory's rules: registration, targeted copies, answers, and their limits.

The kernel accepts them (tests/integration/rescue/test_render_nft.py); the rescue lab
shows them at work (tests/integration/rescue/test_rescue_lab.py).
"""

from __future__ import annotations

import re

from anycast_announcer.rescue.model import Family, RescuePlan
from anycast_announcer.rescue.render import DIRECTORY_COUNTERS, render_table, table_shape
from tests.unit.rescue.plans import BASE, plan
from tests.unit.rescue.test_render import full

FLOW = "ip saddr . tcp sport . ip daddr . tcp dport"
BUCKET = f"jhash {FLOW} mod 1024 seed 0x616e7963"


def buckets_in(rule: str, after: str) -> set[int]:
    """The bucket numbers of the anonymous set or map that follows ``after``."""
    body = rule.split(after, 1)[1].split("{", 1)[1].split("}", 1)[0]
    return {int(item.split(":")[0]) for item in body.split(",")}


def mine_and_remote(p: RescuePlan) -> tuple[set[int], set[int]]:
    assert p.directory is not None
    return set(p.directory.mine(p.me)), {b for b, _ in p.directory.remote(p.me)}


def test_owners_register_established_flows_once_an_interval_but_never_syns() -> None:
    p = plan()
    rules = full(p)["fabric_tcp"]
    assert rules[0] == "tcp flags & (fin|syn|rst|ack) == syn accept"
    local = rules.index("ct state established,related accept")
    register = rules[1:local]
    assert all(rule.startswith("ct state established ") for rule in register)
    mine, remote = mine_and_remote(p)
    # Registered within the interval: one lookup, accepted.
    assert register[0] == f"ct state established {FLOW} @registered accept"
    # Flows of this server's own buckets need no registration.
    assert register[1] == (
        f"ct state established {BUCKET} {{ {', '.join(map(str, sorted(mine)))} }} accept"
    )
    assert "limit rate over 10000/second" in register[2]
    assert "counter name dir_register_limited accept" in register[2]
    sent = register[3]
    # Added (never refreshed) before the copy: a full set sends nothing.
    assert sent.startswith(
        f"ct state established add @registered {{ {FLOW} }} counter name dir_registered "
        f"dup to {BUCKET} map"
    )
    assert sent.endswith('device "anycast-fb" accept')
    assert buckets_in(sent, "map") == remote
    assert sent.count("dup to") == 1


def test_an_unclaimed_flow_asks_its_directory_member_before_the_blind_path() -> None:
    rules = full(plan())["fabric_tcp"]
    targeted = rules.index("jump targeted")
    # Before the orphan window and the blind path: an asked flow is in rescuing from its
    # first query, and targeted hands it to the orphan rule only past its probation.
    assert rules[targeted + 1].startswith(f"{FLOW} @rescuing delete @rescuing")
    assert rules[targeted + 2] == "jump blind"
    assert rules[targeted + 3].startswith(f"add @probation {{ {FLOW} }} add @rescuing")
    owners = max(i for i, r in enumerate(rules) if "@owner_" in r)
    probation = max(i for i, r in enumerate(rules) if r.startswith(f"{FLOW} @probation"))
    assert owners < probation < targeted


def test_a_query_is_one_copy_to_one_member_within_its_budget() -> None:
    p = plan("  directory: {query_rate: 300, query_burst: 900}\n")
    rendered = full(p)
    mine, remote = mine_and_remote(p)
    targeted = rendered["targeted"]
    assert targeted[:4] == [
        f"{FLOW} @asked goto dir_ask",
        f"{FLOW} @queried goto dir_blind",
        f"{FLOW} @rescuing return",
        "limit rate over 300/second burst 900 packets counter name dir_limited return",
    ]
    assert targeted[4].startswith(f"{BUCKET} {{ ")
    assert targeted[4].endswith(" jump dir_local")
    assert buckets_in(targeted[4], BUCKET) == mine
    # This server's bucket and no entry: the caller's blind path, at once.
    assert targeted[5].endswith(" return")
    start = (
        f"add @asked {{ {FLOW} }} add @queried {{ {FLOW} }} add @rescuing {{ {FLOW} timeout 14s }}"
    )
    query = targeted[6]
    assert query.startswith(f"{start} counter name dir_queries dup to {BUCKET} map")
    assert buckets_in(query, "map") == remote
    assert query.count("dup to") == 1
    assert query.endswith('device "anycast-rsc" drop')
    assert p.directory is not None
    # Each bucket's label is its directory member's rescue label.
    for bucket, owner in p.directory.remote(p.me):
        label = owner.label(Family.IPV4, feedback=False)
        assert re.search(rf"[{{,] {bucket} : {re.escape(label)}[ ,]", query)
    # Repeats within the answer timeout: the same copy, not budgeted again; an entry
    # gone from this server's own directory meanwhile: blind copies, never a reset.
    ask = rendered["dir_ask"]
    assert ask[1].endswith(" goto dir_blind")
    assert ask[2] == query.removeprefix(f"{start} ")
    assert rendered["dir_blind"] == [
        "jump blind",
        'counter name replicated dup to 169.254.90.126 device "anycast-rsc" drop',
    ]


def test_the_directory_member_forwards_with_ttl_one_and_drops_the_unknown() -> None:
    rendered = full(plan())
    forward = (
        'ip ttl set 1 counter name dir_forwarded dup to 169.254.90.2 device "anycast-rsc" drop'
    )
    assert [r for r in rendered["dir_query"] if "@dir_10_2_2_2" in r] == [
        f"{FLOW} @dir_10_2_2_2 {forward}"
    ]
    assert rendered["dir_query"][-1] == "counter name dir_unknown drop"
    # As the flow's own directory member, this server asks nobody: the flow is asked.
    assert [r for r in rendered["dir_local"] if "@dir_10_2_2_2" in r] == [
        f"{FLOW} @dir_10_2_2_2 add @asked {{ {FLOW} }} add @queried {{ {FLOW} }} "
        f"add @rescuing {{ {FLOW} timeout 14s }} {forward}"
    ]
    v6 = full(plan(), Family.IPV6)["dir_query"]
    assert "ip6 hoplimit set 1" in v6[0]


def test_queries_are_unicast_unknown_flows_of_own_buckets_and_never_relayed_twice() -> None:
    p = plan()
    overlay = full(p)["from_overlay"]
    assert overlay[0] == "ip daddr != @anycast counter name overlay_refused drop"
    # Blind copies (broadcast) go straight to the peers' chains: never sent on.
    assert overlay[2].startswith("meta pkttype broadcast meta pkttype set host ether saddr vmap")
    query = overlay[3]
    assert query.startswith(
        f"meta l4proto tcp ip ttl != 1 ct state != {{ established, related }} {BUCKET} {{ "
    )
    assert buckets_in(query, BUCKET) == mine_and_remote(p)[0]
    assert query.endswith(
        "meta mark set ether saddr map { 02:52:0a:02:02:02 : 0xa020202, "
        "02:52:0a:02:03:02 : 0xa020302 } goto dir_query"
    )
    assert overlay[4].startswith("ether saddr vmap")
    assert overlay[-1] == "counter name overlay_refused drop"


def test_a_forwarded_query_leaves_with_the_askers_mac() -> None:
    text = render_table(plan(), Family.IPV4).text
    egress = text.split("table netdev anycast_rescue {\n", 1)[1]
    assert 'type filter hook egress device "anycast-rsc" priority 0; policy accept;' in egress
    assert (
        "ether saddr set meta mark map { 0xa020202 : 02:52:0a:02:02:02, "
        "0xa020302 : 02:52:0a:02:03:02 } counter name dir_relayed" in egress
    )
    # Replaced whole in the same transaction, whether or not it was there.
    assert "table netdev anycast_rescue { }\ndelete table netdev anycast_rescue\n" in text
    # One netdev table per host: with the underlay family's table only.
    assert "netdev" not in render_table(plan(), Family.IPV6).text


def test_answers_are_claims_for_asked_flows_and_registrations_are_recorded() -> None:
    p = plan()
    feedback = full(p)["from_feedback"]
    assert (
        f"ether saddr 02:46:0a:02:02:02 {FLOW} @queried update @owner_10_2_2_2 {{ {FLOW} }} "
        f"delete @asked {{ {FLOW} }} delete @queried {{ {FLOW} }} "
        f"delete @rescuing {{ {FLOW} }} counter name fbrx_10_2_2_2 drop"
    ) in feedback
    register = feedback[-2]
    assert buckets_in(register, BUCKET) == mine_and_remote(p)[0]
    assert register.endswith(
        "ether saddr vmap { 02:46:0a:02:02:02 : goto reg_10_2_2_2, "
        "02:46:0a:02:03:02 : goto reg_10_2_3_2 }"
    )
    assert feedback[-1] == "counter name claims_refused drop"
    assert full(p)["reg_10_2_2_2"] == [
        f"update @dir_10_2_2_2 {{ {FLOW} }} counter name dir_recorded drop"
    ]


def test_timeouts_follow_the_config() -> None:
    p = plan(
        "  probation: 4\n  orphan_window: 7\n"
        "  directory: {answer_timeout: 2, register_interval: 30, entry_timeout: 90}\n"
    )
    sets = {s.name: s for s in table_shape(p, Family.IPV4).sets}
    assert sets["asked"].timeout == 2
    assert sets["queried"].timeout == 2 + 4  # answer timeout, then a whole probation
    assert sets["rescuing"].timeout == 4 + 7
    start = full(p)["targeted"][-1]
    assert f"add @rescuing {{ {FLOW} timeout 13s }}" in start  # + the answer timeout
    assert sets["registered"].timeout == 30
    assert sets["dir_10_2_3_2"].timeout == 90
    assert set(DIRECTORY_COUNTERS) <= set(table_shape(p, Family.IPV4).counters)


def test_a_member_without_buckets_renders_no_empty_set() -> None:
    """One bucket: one member answers for everything, the others for nothing."""
    for local in ("10.2.1.2", "10.2.2.2", "10.2.3.2"):
        p = plan("  directory: {buckets: 1}\n", local=local)
        for family in p.families:
            text = render_table(p, family).text
            rules = [
                line
                for line in text.splitlines()
                if not line.strip().startswith(("counter ", "table "))
            ]
            assert not [line for line in rules if re.search(r"\{\s*\}", line)], local


def test_turned_off_nothing_of_it_is_rendered() -> None:
    text = render_table(plan("  directory: {enabled: false}\n"), Family.IPV4).text
    # (The reset guard's "meta mark set meta mark | BIT" is not the directory's.)
    for word in ("jhash", "netdev", "@asked", "dir_", "targeted", "meta mark map", "saddr map"):
        assert word not in text


def test_a_large_group_keeps_one_dup_per_rule() -> None:
    members = ", ".join(f"10.3.{i // 250}.{i % 250 + 1}" for i in range(64))
    big = plan(
        base=BASE.replace("members: [10.2.3.2, 10.2.1.2, 10.2.2.2]", f"members: [{members}]"),
        local="10.3.0.1",
    )
    for rule in render_table(big, Family.IPV4).text.splitlines():
        assert rule.count("dup to") <= 1
    targeted = full(big)["targeted"]
    assert len(targeted) == 7  # whatever the group size
