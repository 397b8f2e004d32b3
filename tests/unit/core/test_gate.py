"""The start-up gate: with rescue.membership, anycast prefixes wait for the group.

A new member announces its anycast prefixes only once an End-of-RIB from an established
peer says the member routes are all in and a rescue plan holding those members is
applied; ``gate_timeout`` after the first session it opens anyway.
"""

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
from anycast_announcer.status import ExabgpStatus, RescueGateStatus, RescueStatus, RescueTraffic
from tests.unit.core.helpers import BASE, PEER, PREFIX, Harness, at, config
from tests.unit.core.test_members import GROUP, ME, MEMBERSHIP, MY_ROUTE, V6_PEER, member

ANYCAST = RouteKey(PEER, PREFIX)
EOR = PeerEndOfRib(PEER, "ipv4 unicast")
OTHERS = ("10.0.2.2", "10.0.3.2")


def gates(harness: Harness) -> list[tuple[str, str | None]]:
    return [(e.state, e.opened_by) for e in harness.of_type(fx.GateChanged)]


def gate_status(harness: Harness, now: float) -> RescueGateStatus:
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
    exabgp = ExabgpStatus(
        pid=1, running=True, connected=True, restarts=0, routes_acknowledged=0, routes_desired=0
    )
    status = harness.core.status(at(now), exabgp, rescue)
    assert status.rescue is not None
    assert status.rescue.membership is not None
    gate = status.rescue.membership.gate
    assert gate is not None
    return gate


def starting(data: dict[str, Any] | None = None) -> Harness:
    """A healthy new member (service up, address on lo, session up at 0) whose first
    rescue apply (no peers yet) is done."""
    harness = Harness(data or MEMBERSHIP)
    harness.healthy()
    harness.feed(RescueApplied(ME), 0.1)
    return harness


class TestClosedAtStart:
    def test_anycast_waits_member_route_does_not(self) -> None:
        """Healthy and established, yet only the member route goes out: others must
        learn us while we wait to learn them."""
        harness = starting()
        assert ANYCAST not in harness.routes
        assert harness.routes[MY_ROUTE].communities == (GROUP,)
        decision = harness.core.decisions[PREFIX]
        assert not decision.announce
        assert decision.reason == "start-up gate: waiting for eor (rescue membership)"
        assert gates(harness) == [("waiting_for_eor", None)]

    def test_status_shows_the_wait_and_its_deadline(self) -> None:
        harness = starting()
        gate = gate_status(harness, 4.0)
        assert (gate.state, gate.opened_by, gate.opens_in) == ("waiting_for_eor", None, 6.0)
        assert gate.since == at(0.0).wall

    def test_first_server_of_a_group_opens_on_end_of_rib_alone(self) -> None:
        harness = starting()
        with capture_logs() as logs:
            harness.feed(EOR, 0.5)
        assert ANYCAST in harness.routes
        assert gates(harness) == [
            ("waiting_for_eor", None),
            ("waiting_for_data_path", None),
            ("open", "end_of_rib"),
        ]
        opened = [e for e in logs if e["event"] == "rescue_gate_opened"]
        assert [(e["opened_by"], e["waited"], e["members"]) for e in opened] == [
            ("end_of_rib", 0.5, [])
        ]
        assert harness.core.get_timer() is None


class TestJoiningAGroup:
    def test_opens_only_once_the_data_path_holds_every_learnt_member(self) -> None:
        harness = starting()
        harness.feed(PeerRoutesReceived(PEER, tuple(member(a) for a in OTHERS), ()), 0.2)
        harness.feed(EOR, 0.3)
        assert ANYCAST not in harness.routes
        assert gate_status(harness, 0.3).state == "waiting_for_data_path"
        assert harness.core.decisions[PREFIX].reason == (
            "start-up gate: waiting for data path (rescue membership)"
        )
        harness.feed(RescueApplied(ME, peers=OTHERS[:1]), 0.4)  # an older plan
        assert ANYCAST not in harness.routes
        harness.feed(RescueApplied(ME, peers=OTHERS), 0.5)
        assert ANYCAST in harness.routes
        assert gate_status(harness, 0.6).state == "open"

    def test_a_plan_applied_before_the_end_of_rib_counts(self) -> None:
        """Routes, the apply they caused, then the End-of-RIB: nothing more to wait for."""
        harness = starting()
        harness.feed(PeerRoutesReceived(PEER, (member(OTHERS[0]),), ()), 0.2)
        harness.feed(RescueApplied(ME, peers=OTHERS[:1]), 0.3)
        harness.feed(EOR, 0.4)
        assert ANYCAST in harness.routes

    def test_our_own_member_route_reflected_back_is_not_waited_for(self) -> None:
        """A dual-homed server learns its own route through its other leaf."""
        harness = starting()
        harness.feed(PeerRoutesReceived(PEER, (member(ME), member(OTHERS[0])), ()), 0.2)
        harness.feed(EOR, 0.3)
        harness.feed(RescueApplied(ME, peers=OTHERS[:1]), 0.4)
        assert ANYCAST in harness.routes


class TestIgnoredEndOfRib:
    def test_from_a_peer_not_configured(self) -> None:
        harness = starting()
        with capture_logs() as logs:
            harness.feed(PeerEndOfRib("10.9.9.9", "ipv4 unicast"), 0.5)
        assert ANYCAST not in harness.routes
        assert [e["reason"] for e in logs if e["event"] == "end_of_rib_ignored"] == [
            "not a configured peer"
        ]

    def test_from_a_configured_peer_whose_session_is_down(self) -> None:
        harness = starting()
        with capture_logs() as logs:
            harness.feed(PeerEndOfRib(V6_PEER, "ipv4 unicast"), 0.5)
        assert ANYCAST not in harness.routes
        assert [e["reason"] for e in logs if e["event"] == "end_of_rib_ignored"] == [
            "session not established"
        ]

    def test_of_another_family(self) -> None:
        """The underlay is IPv4: an IPv6 End-of-RIB says nothing of IPv4 member routes."""
        harness = starting()
        harness.feed(SessionChanged(V6_PEER, True, "up"), 0.2)
        with capture_logs() as logs:
            harness.feed(PeerEndOfRib(V6_PEER, "ipv6 unicast"), 0.5)
            harness.feed(PeerEndOfRib(PEER, "ipv6 unicast"), 0.5)
        assert ANYCAST not in harness.routes
        ignored = [e["reason"] for e in logs if e["event"] == "end_of_rib_ignored"]
        assert ignored == ["not the underlay's family"] * 2
        harness.feed(PeerEndOfRib(V6_PEER, "ipv4 unicast"), 0.6)  # IPv4 over IPv6: counts
        assert ANYCAST in harness.routes

    def test_after_a_session_went_down(self) -> None:
        harness = starting()
        harness.feed(SessionChanged(PEER, False, "hold timer expired"), 0.3)
        harness.feed(EOR, 0.4)
        harness.feed(SessionChanged(PEER, True, "up"), 0.5)
        assert ANYCAST not in harness.routes


class TestTimeout:
    def test_no_deadline_before_any_session(self) -> None:
        """Nothing can be announced without a session, so nothing needs bounding."""
        harness = Harness(MEMBERSHIP)
        harness.feed(RescueApplied(ME), 0.1)
        assert harness.core.get_timer() is None

    def test_opens_anyway_with_a_warning(self) -> None:
        harness = Harness(MEMBERSHIP)
        harness.feed(RescueApplied(ME), 0.1)
        harness.healthy(1.0)
        assert harness.core.get_timer() == 11.0  # gate_timeout's default, 10 s
        harness.tick(10.9)
        assert ANYCAST not in harness.routes
        with capture_logs() as logs:
            harness.tick(11.0)
        assert ANYCAST in harness.routes
        warned = [e for e in logs if e["event"] == "rescue_gate_timeout"]
        assert [(e["log_level"], e["waiting_for"]) for e in warned] == [
            ("warning", "waiting_for_eor")
        ]
        assert gates(harness)[-1] == ("open", "timeout")
        assert harness.core.get_timer() is None

    def test_a_session_flap_does_not_push_the_deadline(self) -> None:
        harness = starting()
        harness.feed(SessionChanged(PEER, False, "reset"), 3.0)
        harness.feed(SessionChanged(PEER, True, "up"), 4.0)
        assert harness.core.get_timer() == 10.0

    def test_also_bounds_the_wait_for_the_data_path(self) -> None:
        """An apply that never holds the group (it keeps failing) does not keep a healthy
        server dark."""
        harness = starting()
        harness.feed(PeerRoutesReceived(PEER, (member(OTHERS[0]),), ()), 0.2)
        harness.feed(EOR, 0.3)
        with capture_logs() as logs:
            harness.tick(10.0)
        assert ANYCAST in harness.routes
        assert [e["waiting_for"] for e in logs if e["event"] == "rescue_gate_timeout"] == [
            "waiting_for_data_path"
        ]

    def test_configurable(self) -> None:
        membership = {**MEMBERSHIP["rescue"]["membership"], "gate_timeout": 3}
        harness = starting({**MEMBERSHIP, "rescue": {"membership": membership}})
        assert harness.core.get_timer() == 3.0


class TestOnceOpen:
    def test_a_session_flap_re_announces_without_waiting(self) -> None:
        harness = starting()
        harness.feed(EOR, 0.2)
        harness.feed(SessionChanged(PEER, False, "hold timer expired"), 5.0)
        assert ANYCAST not in harness.routes
        harness.feed(SessionChanged(PEER, True, "up"), 6.0)
        assert ANYCAST in harness.routes
        assert gates(harness)[-1] == ("open", "end_of_rib")

    def test_a_reload_that_restarts_exabgp_does_not_close_it(self) -> None:
        harness = starting()
        harness.feed(EOR, 0.2)
        bgp = {**MEMBERSHIP["bgp"], "hold_time": 30}
        harness.feed(ConfigLoaded(config({**MEMBERSHIP, "bgp": bgp}), 1), 1.0)
        assert harness.of_type(fx.RestartExabgp)
        harness.feed(SessionChanged(PEER, False, "exabgp restarted"), 1.1)
        harness.feed(SessionChanged(PEER, True, "up"), 2.0)
        assert ANYCAST in harness.routes


class TestReload:
    def test_membership_turned_on_while_running_opens_at_once(self) -> None:
        """A serving server is not withdrawn to wait for a group it already rescues."""
        static = {**BASE, "rescue": {"members": [ME, OTHERS[0]]}}
        harness = Harness(static)
        harness.healthy()
        assert ANYCAST in harness.routes
        assert gates(harness) == []
        harness.feed(ConfigLoaded(config({**BASE, "rescue": MEMBERSHIP["rescue"]}), 1), 1.0)
        assert ANYCAST in harness.routes
        assert gates(harness) == [("open", "reload")]

    def test_membership_turned_off_while_closed_opens_it(self) -> None:
        harness = starting()
        static = {**BASE, "rescue": {"members": [ME, OTHERS[0]]}}
        harness.feed(ConfigLoaded(config(static), 1), 1.0)
        assert ANYCAST in harness.routes
        assert gates(harness)[-1] == ("open", "unconfigured")

    def test_a_new_gate_timeout_moves_the_armed_deadline(self) -> None:
        harness = starting()
        membership = {**MEMBERSHIP["rescue"]["membership"], "gate_timeout": 30}
        longer = config({**MEMBERSHIP, "rescue": {"membership": membership}})
        harness.feed(ConfigLoaded(longer, 1), 1.0)
        assert harness.core.get_timer() == 30.0
        assert ANYCAST not in harness.routes


def test_without_membership_there_is_no_gate() -> None:
    harness = Harness({**BASE, "rescue": {"members": [ME, OTHERS[0]]}})
    harness.healthy()
    harness.feed(PeerEndOfRib(PEER, "ipv4 unicast"), 0.1)
    assert ANYCAST in harness.routes
    assert gates(harness) == []
