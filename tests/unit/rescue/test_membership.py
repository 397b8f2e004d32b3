"""Learnt membership: the guard, departures held down, sessions and reloads."""

from __future__ import annotations

import ipaddress

import pytest

from anycast_announcer.config.rescue import MembershipConfig
from anycast_announcer.rescue.membership import Membership, member_prefix, member_route_prefix

LEAF = "10.2.1.1"
OTHER_LEAF = "10.2.5.1"
GROUP = "65000:4242"
SETTINGS = MembershipConfig.model_validate(
    {"community": GROUP, "underlay_prefixes": ["10.2.0.0/16"], "hold_down": 60}
)


def addresses(*texts: str) -> frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    return frozenset(ipaddress.ip_address(text) for text in texts)


def member(address: str) -> tuple[str, tuple[str, ...]]:
    return (f"{address}/32", (GROUP,))


@pytest.fixture
def membership() -> Membership:
    return Membership(SETTINGS, [LEAF, OTHER_LEAF])


class TestGuard:
    def test_member_routes_add_members(self, membership: Membership) -> None:
        """A tagged host route inside the underlay from a configured peer is a member."""
        assert membership.routes_received(LEAF, [member("10.2.2.2"), member("10.2.3.2")], [], 0)
        assert membership.members() == addresses("10.2.2.2", "10.2.3.2")
        assert not membership.ignored

    @pytest.mark.parametrize(
        ("route", "reason"),
        [
            (("10.2.2.2/32", ()), "no_community"),
            (("10.2.2.2/32", ("65000:1",)), "no_community"),
            (("10.9.0.2/32", (GROUP,)), "outside_underlay"),
            (("fd00:2:1::2/128", (GROUP,)), "outside_underlay"),
            (("10.2.2.0/24", (GROUP,)), "not_host_route"),
            (("10.255.0.1/32", ("65201:100",)), "no_community"),
        ],
    )
    def test_other_routes_are_ignored_and_counted(
        self, membership: Membership, route: tuple[str, tuple[str, ...]], reason: str
    ) -> None:
        """Anycast prefixes, subnets, foreign communities or addresses add nothing."""
        assert not membership.routes_received(LEAF, [route], [], 0)
        assert membership.members() == frozenset()
        assert membership.ignored == {reason: 1}

    def test_routes_from_unknown_peers_are_ignored(self, membership: Membership) -> None:
        """Only the configured BGP peers speak for the group."""
        assert not membership.routes_received("10.9.9.9", [member("10.2.2.2")], [], 0)
        assert membership.members() == frozenset()
        assert membership.ignored == {"unknown_peer": 1}

    def test_a_route_losing_the_community_is_a_departure(self, membership: Membership) -> None:
        """An announcement replaces the peer's previous one for the prefix."""
        membership.routes_received(LEAF, [member("10.2.2.2")], [], 0)
        membership.routes_received(LEAF, [("10.2.2.2/32", ())], [], 1)
        assert [v.present for v in membership.view()] == [False]


class TestHoldDown:
    def test_withdrawn_member_stays_until_the_hold_down_ends(self, membership: Membership) -> None:
        """Its live connections keep being rescued back to it for hold_down seconds."""
        membership.routes_received(LEAF, [member("10.2.2.2")], [], 0)
        assert not membership.routes_received(LEAF, [], ["10.2.2.2/32"], 10)
        assert membership.members() == addresses("10.2.2.2")
        assert membership.next_deadline() == 70
        assert not membership.expire(69.9)
        assert membership.expire(70)
        assert membership.members() == frozenset()
        assert membership.next_deadline() is None

    def test_a_route_back_within_the_hold_down_cancels_it(self, membership: Membership) -> None:
        """A restarting sidecar (SIGTERM, a bgp: change) changes nothing."""
        membership.routes_received(LEAF, [member("10.2.2.2")], [], 0)
        membership.routes_received(LEAF, [], ["10.2.2.2/32"], 10)
        assert not membership.routes_received(LEAF, [member("10.2.2.2")], [], 12)
        assert membership.next_deadline() is None
        assert not membership.expire(1000)
        assert membership.members() == addresses("10.2.2.2")

    def test_a_member_carried_by_two_peers_stays_while_one_carries_it(
        self, membership: Membership
    ) -> None:
        """Losing one of two leaf sessions is not a departure."""
        membership.routes_received(LEAF, [member("10.2.2.2")], [], 0)
        membership.routes_received(OTHER_LEAF, [member("10.2.2.2")], [], 0)
        membership.session_down(LEAF, 5)
        assert [(v.present, v.leaves_at) for v in membership.view()] == [(True, None)]

    def test_our_sessions_going_down_hold_every_member(self, membership: Membership) -> None:
        """ExaBGP restarting here does not empty the group: members are held down."""
        membership.routes_received(LEAF, [member("10.2.2.2"), member("10.2.3.2")], [], 0)
        assert not membership.session_down(LEAF, 5)
        assert membership.members() == addresses("10.2.2.2", "10.2.3.2")
        assert {v.leaves_at for v in membership.view()} == {65}

    def test_no_hold_down_means_immediate_departure(self) -> None:
        """hold_down: 0 forgets a member with its route."""
        settings = SETTINGS.model_copy(update={"hold_down": 0})
        membership = Membership(settings, [LEAF])
        membership.routes_received(LEAF, [member("10.2.2.2")], [], 0)
        assert membership.routes_received(LEAF, [], ["10.2.2.2/32"], 1)
        assert membership.members() == frozenset()


class TestReconfigure:
    def test_a_narrower_guard_departs_members_outside_it(self, membership: Membership) -> None:
        """A reload re-checks what is held; what no longer passes is held down."""
        membership.routes_received(LEAF, [member("10.2.2.2"), member("10.2.3.2")], [], 0)
        narrower = SETTINGS.model_copy(
            update={"underlay_prefixes": [ipaddress.ip_network("10.2.2.0/24")]}
        )
        assert not membership.reconfigure(narrower, [LEAF], 1)
        present = {v.address: v.present for v in membership.view()}
        assert present == {"10.2.2.2": True, "10.2.3.2": False}

    def test_a_removed_peer_departs_its_members(self, membership: Membership) -> None:
        membership.routes_received(OTHER_LEAF, [member("10.2.3.2")], [], 0)
        membership.reconfigure(SETTINGS, [LEAF], 1)
        assert [v.present for v in membership.view()] == [False]


def test_member_prefix_is_a_host_route() -> None:
    assert member_prefix(ipaddress.ip_address("10.2.1.2")) == "10.2.1.2/32"
    assert member_prefix(ipaddress.ip_address("fd00:2::2")) == "fd00:2::2/128"


class TestInherited:
    def test_peers_found_installed_are_held_until_routes_confirm(
        self, membership: Membership
    ) -> None:
        """A restarted sidecar keeps the group it finds in the kernel for a hold-down."""
        assert membership.inherit(addresses("10.2.2.2", "10.2.3.2"), 5)
        assert {(v.address, v.present, v.leaves_at) for v in membership.view()} == {
            ("10.2.2.2", False, 65),
            ("10.2.3.2", False, 65),
        }
        membership.routes_received(LEAF, [member("10.2.2.2")], [], 6)
        assert membership.expire(65)
        assert membership.members() == addresses("10.2.2.2")


class TestRoutePrefixes:
    """Member routes in a signalling range: FRR ignores a route whose next hop is its
    own prefix, so a member may announce the same host bits elsewhere."""

    SETTINGS = SETTINGS.model_copy(
        update={"route_prefixes": [ipaddress.ip_network("10.254.0.0/16")]}
    )

    def test_the_route_stands_for_the_underlay_address(self) -> None:
        membership = Membership(self.SETTINGS, [LEAF])
        membership.routes_received(LEAF, [("10.254.2.2/32", (GROUP,))], [], 0)
        assert membership.members() == addresses("10.2.2.2")
        membership.routes_received(LEAF, [], ["10.254.2.2/32"], 1)
        assert [v.present for v in membership.view()] == [False]

    def test_underlay_host_routes_are_then_ignored(self) -> None:
        membership = Membership(self.SETTINGS, [LEAF])
        membership.routes_received(LEAF, [member("10.2.2.2")], [], 0)
        assert membership.members() == frozenset()
        assert membership.ignored == {"outside_underlay": 1}

    def test_our_route_prefix(self) -> None:
        assert member_route_prefix(self.SETTINGS, ipaddress.ip_address("10.2.1.2")) == (
            "10.254.1.2/32"
        )
        assert member_route_prefix(SETTINGS, ipaddress.ip_address("10.2.1.2")) == "10.2.1.2/32"
        assert member_route_prefix(SETTINGS, ipaddress.ip_address("10.3.1.2")) is None
