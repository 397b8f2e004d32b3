"""The core with rescue.membership: our member route out, the others' routes in."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from anycast_announcer.core import effects as fx
from anycast_announcer.core.inputs import (
    ConfigLoaded,
    PeerEndOfRib,
    PeerRoutesReceived,
    RescueApplied,
    SessionChanged,
)
from anycast_announcer.routes import RouteKey
from anycast_announcer.status import ExabgpStatus, RescueStatus, RescueTraffic
from tests.unit.core.helpers import BASE, PEER, PREFIX, Harness, at, config

GROUP = "65000:4242"
ME = "10.0.1.2"
V6_PEER = "fd00:1::1"
MEMBERSHIP: dict[str, Any] = {
    **BASE,
    "bgp": {
        **BASE["bgp"],
        "peers": [{"address": PEER, "peer_as": 65100}, {"address": V6_PEER, "peer_as": 65100}],
    },
    "rescue": {
        "membership": {"community": GROUP, "underlay_prefixes": ["10.0.0.0/16"], "hold_down": 30}
    },
}
MY_ROUTE = RouteKey(PEER, f"{ME}/32")


def member(address: str) -> tuple[str, tuple[str, ...]]:
    return (f"{address}/32", (GROUP,))


def open_gate(harness: Harness, now: float) -> None:
    """Our data path in, then the End-of-RIB of a group with no one else yet."""
    harness.feed(RescueApplied(ME), now)
    harness.feed(PeerEndOfRib(PEER, "ipv4 unicast"), now)


def learnt(harness: Harness) -> list[tuple[str, ...]]:
    return [effect.learnt for effect in harness.of_type(fx.SyncRescue)]


class TestMemberRoute:
    def test_announced_once_the_data_path_is_installed(self) -> None:
        """No member route before rescue is in: a member must be able to rescue."""
        harness = Harness(MEMBERSHIP)
        harness.feed(SessionChanged(PEER, True, "up"), 0.1)
        assert MY_ROUTE not in harness.routes
        harness.feed(RescueApplied(ME), 0.2)
        assert harness.routes[MY_ROUTE].communities == (GROUP,)

    def test_only_on_sessions_of_the_underlay_family(self) -> None:
        harness = Harness(MEMBERSHIP)
        harness.feed(SessionChanged(V6_PEER, True, "up"), 0.1)
        harness.feed(SessionChanged(PEER, True, "up"), 0.1)
        harness.feed(RescueApplied(ME), 0.2)
        assert [key for key in harness.routes if key.prefix == f"{ME}/32"] == [MY_ROUTE]

    def test_independent_of_the_anycast_prefixes(self) -> None:
        """A withdrawn or drained server still rescues: its member route stays."""
        harness = Harness(MEMBERSHIP)
        harness.healthy()
        harness.feed(RescueApplied(ME), 0.2)
        harness.feed(PeerEndOfRib(PEER, "ipv4 unicast"), 0.3)  # the start-up gate opens
        assert RouteKey(PEER, PREFIX) in harness.routes
        harness.probe(False, 1.0)
        assert RouteKey(PEER, PREFIX) not in harness.routes
        assert MY_ROUTE in harness.routes

    def test_withdrawn_at_shutdown(self) -> None:
        harness = Harness(MEMBERSHIP)
        harness.feed(SessionChanged(PEER, True, "up"), 0.1)
        harness.feed(RescueApplied(ME), 0.2)
        harness.take(harness.core.shutdown(at(1.0)))
        assert harness.routes == {}

    def test_not_a_prefix_in_status(self) -> None:
        """Member routes show in the rescue section, never in the prefix list."""
        harness = Harness(MEMBERSHIP)
        harness.healthy()
        open_gate(harness, 0.2)
        harness.feed(PeerRoutesReceived(PEER, (member("10.0.2.2"),), ()), 0.3)
        exabgp = ExabgpStatus(
            pid=1,
            running=True,
            connected=True,
            restarts=0,
            routes_acknowledged=0,
            routes_desired=0,
        )
        zero = RescueTraffic(packets=0, bytes=0)
        rescue = RescueStatus(
            installed=True,
            member=ME,
            peers=(),
            replicated=zero,
            icmp_relayed=zero,
            orphans=zero,
            last_applied_at=None,
            last_error=None,
        )
        status = harness.core.status(at(1.0), exabgp, rescue)
        assert [p.prefix for p in status.prefixes] == [PREFIX]
        assert [list(p.routes) for p in status.prefixes] == [[PEER]]
        assert status.rescue is not None
        assert status.rescue.membership is not None
        assert status.rescue.membership.announced
        assert [m.address for m in status.rescue.membership.members] == ["10.0.2.2"]


class TestLearning:
    def test_member_routes_resync_the_data_path_with_the_learnt_set(self) -> None:
        harness = Harness(MEMBERSHIP)
        harness.feed(SessionChanged(PEER, True, "up"), 0.1)
        harness.feed(PeerRoutesReceived(PEER, (member("10.0.2.2"), member("10.0.3.2")), ()), 0.2)
        harness.feed(PeerRoutesReceived(PEER, (("10.255.0.1/32", ("65100:1",)),), ()), 0.3)
        assert learnt(harness) == [(), ("10.0.2.2", "10.0.3.2")]

    def test_departure_waits_for_the_hold_down(self) -> None:
        """The core's timer ends the hold-down; only then is the member removed."""
        harness = Harness(MEMBERSHIP)
        harness.feed(SessionChanged(PEER, True, "up"), 0.1)
        open_gate(harness, 0.1)  # the start-up gate has no deadline left
        harness.feed(PeerRoutesReceived(PEER, (member("10.0.2.2"),), ()), 0.2)
        harness.feed(PeerRoutesReceived(PEER, (), ("10.0.2.2/32",)), 1.0)
        assert learnt(harness) == [(), ("10.0.2.2",)]
        assert harness.core.get_timer() == 31.0
        harness.tick(31.0)
        assert learnt(harness) == [(), ("10.0.2.2",), ()]
        assert harness.core.get_timer() is None

    def test_a_session_down_holds_its_members(self) -> None:
        harness = Harness(MEMBERSHIP)
        harness.feed(SessionChanged(PEER, True, "up"), 0.1)
        open_gate(harness, 0.1)  # the start-up gate has no deadline left
        harness.feed(PeerRoutesReceived(PEER, (member("10.0.2.2"),), ()), 0.2)
        harness.feed(SessionChanged(PEER, False, "hold timer expired"), 2.0)
        assert harness.core.get_timer() == 32.0
        harness.feed(SessionChanged(PEER, True, "up"), 3.0)
        harness.feed(PeerRoutesReceived(PEER, (member("10.0.2.2"),), ()), 3.1)
        assert harness.core.get_timer() is None
        assert learnt(harness) == [(), ("10.0.2.2",)]

    def test_without_membership_received_routes_change_nothing(self) -> None:
        data = {**BASE, "rescue": {"members": ["10.0.1.2", "10.0.2.2"]}}
        harness = Harness(data)
        harness.feed(PeerRoutesReceived(PEER, (member("10.0.3.2"),), ()), 0.2)
        harness.feed(RescueApplied(ME), 0.3)
        assert learnt(harness) == [()]
        assert MY_ROUTE not in harness.routes

    def test_turning_membership_on_learns_from_routes_already_received(self) -> None:
        """A reload needs no ExaBGP restart: the sessions' host routes are kept."""
        harness = Harness({**BASE, "rescue": {"members": ["10.0.1.2", "10.0.2.2"]}})
        harness.feed(SessionChanged(PEER, True, "up"), 0.1)
        harness.feed(PeerRoutesReceived(PEER, (member("10.0.2.2"), member("10.0.3.2")), ()), 0.2)
        harness.feed(PeerRoutesReceived(PEER, (), ("10.0.3.2/32",)), 0.3)
        harness.feed(ConfigLoaded(config({**BASE, "rescue": MEMBERSHIP["rescue"]}), 1), 1.0)
        assert harness.of_type(fx.RestartExabgp) == []
        assert learnt(harness) == [(), ("10.0.2.2",)]


def test_peers_kept_by_the_first_install_are_learnt_on_hold_down() -> None:
    """The next sync keeps them; without a member route they leave after the hold-down."""
    harness = Harness(MEMBERSHIP)
    harness.feed(RescueApplied(ME, ("10.0.2.2",)), 0.2)
    harness.feed(PeerRoutesReceived(PEER, (member("10.0.3.2"),), ()), 0.3)
    assert learnt(harness)[-1] == ("10.0.2.2", "10.0.3.2")
    assert harness.core.get_timer() == 30.2
    harness.tick(30.2)
    assert learnt(harness)[-1] == ("10.0.3.2",)


def test_member_route_in_the_signalling_range() -> None:
    """With route_prefixes the route carries our host bits in that range."""
    rescue = {
        "membership": {
            **MEMBERSHIP["rescue"]["membership"],
            "route_prefixes": ["10.254.0.0/16"],
        }
    }
    harness = Harness({**MEMBERSHIP, "rescue": rescue})
    harness.feed(SessionChanged(PEER, True, "up"), 0.1)
    harness.feed(RescueApplied(ME), 0.2)
    assert RouteKey(PEER, "10.254.1.2/32") in harness.routes


def test_a_departure_is_logged_though_the_data_path_waits() -> None:
    """rescue_members_changed reports the move to held down at once."""
    harness = Harness(MEMBERSHIP)
    harness.feed(SessionChanged(PEER, True, "up"), 0.1)
    harness.feed(PeerRoutesReceived(PEER, (member("10.0.2.2"),), ()), 0.2)
    with capture_logs() as logs:
        harness.feed(PeerRoutesReceived(PEER, (), ("10.0.2.2/32",)), 1.0)
    changes = [e for e in logs if e["event"] == "rescue_members_changed"]
    assert [(e["present"], e["held_down"]) for e in changes] == [([], ["10.0.2.2"])]


def test_a_new_community_learns_from_routes_already_received() -> None:
    """A reload that changes the group's community re-reads what the sessions carry."""
    harness = Harness(MEMBERSHIP)
    harness.feed(SessionChanged(PEER, True, "up"), 0.1)
    harness.feed(PeerRoutesReceived(PEER, (("10.0.2.2/32", ("65000:7",)),), ()), 0.2)
    moved = {"membership": {**MEMBERSHIP["rescue"]["membership"], "community": "65000:7"}}
    harness.feed(ConfigLoaded(config({**MEMBERSHIP, "rescue": moved}), 1), 1.0)
    assert learnt(harness)[-1] == ("10.0.2.2",)
