"""The plan: members, derived names and addresses, overlays, families, MTU."""

from __future__ import annotations

import ipaddress

import pytest

from anycast_announcer.overlay import member_mac, member_token
from anycast_announcer.rescue.model import Family, build_plan
from tests.unit.rescue.plans import BASE, config, plan

V6_UNDERLAY = BASE.replace(
    "members: [10.2.3.2, 10.2.1.2, 10.2.2.2]", 'members: ["fd00:2:2::2", "fd00:2:1::2"]'
)


def test_members_are_sorted_and_split_into_me_and_peers() -> None:
    p = plan()
    assert [str(m.address) for m in p.members] == ["10.2.1.2", "10.2.2.2", "10.2.3.2"]
    assert str(p.me.address) == "10.2.1.2"
    assert [str(m.address) for m in p.peers] == ["10.2.2.2", "10.2.3.2"]
    assert [m.index for m in p.members] == [0, 1, 2]


def test_every_member_derives_the_same_names_for_a_member() -> None:
    """What srv1 computes for srv2 equals what srv2 computes for itself."""
    from_srv1 = next(m for m in plan(local="10.2.1.2").members if str(m.address) == "10.2.2.2")
    from_srv2 = plan(local="10.2.2.2").me
    assert from_srv1 == from_srv2


def test_ipv4_member_mac_embeds_the_address() -> None:
    address = ipaddress.ip_address("10.2.1.2")
    assert member_mac(address, feedback=False) == "02:52:0a:02:01:02"
    assert member_mac(address, feedback=True) == "02:46:0a:02:01:02"
    assert member_token(address) == "10_2_1_2"


def test_ipv6_member_mac_is_a_stable_hash() -> None:
    address = ipaddress.ip_address("fd00:2:1::2")
    mac = member_mac(address, feedback=False)
    assert mac == member_mac(ipaddress.ip_address("fd00:2:1:0::2"), feedback=False)
    assert mac.startswith("02:52:")
    assert len(mac.split(":")) == 6
    assert mac != member_mac(ipaddress.ip_address("fd00:2:1::3"), feedback=False)
    assert member_token(address) == "fd00_2_1__2"


def test_overlays_split_the_overlay_network_and_address_peers() -> None:
    p = plan()
    assert str(p.rescue.ipv4) == "169.254.90.1/25"
    assert str(p.feedback.ipv4) == "169.254.90.129/25"
    assert str(p.rescue.ipv6) == "fe80::a:1/64"
    assert str(p.feedback.ipv6) == "fe80::b:1/64"
    assert (p.rescue.vni, p.feedback.vni) == (4242, 4243)
    assert p.rescue.port == p.feedback.port == 4800
    labels = {(n.address, n.mac) for n in p.rescue.neighbors}
    assert ("169.254.90.2", "02:52:0a:02:02:02") in labels
    assert ("fe80::a:3", "02:52:0a:02:03:02") in labels
    assert {(e.mac, e.destination) for e in p.feedback.fdb} == {
        ("02:46:0a:02:02:02", "10.2.2.2"),
        ("02:46:0a:02:03:02", "10.2.3.2"),
    }


def test_overlay_mtu_is_the_underlay_minus_the_encapsulation() -> None:
    assert plan(mtu=1500).rescue.mtu == 1450
    assert plan(mtu=9000).rescue.mtu == 8950
    v6 = plan(base=V6_UNDERLAY, local="fd00:2:1::2", mtu=1500)
    assert v6.rescue.mtu == 1430
    assert v6.mss(Family.IPV4) == 1390
    assert v6.mss(Family.IPV6) == 1370


def test_families_are_the_underlay_and_the_prefix_families() -> None:
    assert plan().families == (Family.IPV4, Family.IPV6)
    v4_only = BASE.replace('  - {prefix: "fd00:255::1/128", services: [web]}\n', "")
    assert plan(base=v4_only).families == (Family.IPV4,)
    v6_underlay_v4_prefix = V6_UNDERLAY.replace(
        '  - {prefix: "fd00:255::1/128", services: [web]}\n', ""
    )
    p = plan(base=v6_underlay_v4_prefix, local="fd00:2:1::2")
    assert p.families == (Family.IPV4, Family.IPV6)
    assert p.prefixes_of(Family.IPV6) == ()


def test_timers_come_from_the_config() -> None:
    p = plan("  probation: 4\n  learn_timeout: 8\n  feedback_interval: 2\n  orphan_window: 20\n")
    t = p.timers
    assert (t.probation, t.learn, t.feedback_per_minute, t.orphan_window) == (4, 8, 30, 20)
    assert t.feedback_memory >= 3 * 2


def test_a_host_that_is_not_a_member_has_no_plan() -> None:
    with pytest.raises(ValueError, match=r"10\.9\.9\.9 is not one of rescue\.members"):
        plan(local="10.9.9.9")


def test_a_config_without_rescue_has_no_plan() -> None:
    without = config().model_copy(update={"rescue": None})
    with pytest.raises(ValueError, match="no rescue section"):
        build_plan(without, local_address=ipaddress.ip_address("10.2.1.2"), underlay_mtu=1500)
