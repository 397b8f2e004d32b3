"""Route policy: which routes each session carries, with which attributes."""

from __future__ import annotations

from typing import Any

import pytest

from anycast_announcer.config import Config
from anycast_announcer.drain import DrainPhase
from anycast_announcer.health import Health
from anycast_announcer.policy import (
    PrefixDecision,
    apply_operations,
    decide_prefix,
    desired_routes,
)
from anycast_announcer.routes import RouteKey


def make_config(prefix: dict[str, Any] | None = None, **bgp: Any) -> Config:
    return Config.model_validate(
        {
            "bgp": {
                "local_as": 65001,
                "router_id": "10.0.1.2",
                "peers": [
                    {"address": "10.0.1.1", "peer_as": 65100},
                    {"address": "10.0.2.1", "peer_as": 65100},
                    {"address": "fd00:1::1", "peer_as": 65100},
                ],
                **bgp,
            },
            "services": [
                {"name": "web", "check": {"type": "tcp", "host": "127.0.0.1", "port": 80}},
                {"name": "dns", "check": {"type": "tcp", "host": "127.0.0.1", "port": 53}},
            ],
            "prefixes": [
                {"prefix": "10.255.0.1/32", "services": ["web"], **(prefix or {})},
                {"prefix": "fd00:255::1/128", "services": ["web"]},
            ],
        }
    )


UP = {"web": Health.UP, "dns": Health.UP}


class TestDecidePrefix:
    def test_announce_when_all_up_and_address_present(self) -> None:
        config = make_config({"services": ["web", "dns"]})
        decision = decide_prefix(config.prefixes[0], UP, address_present=True)
        assert decision == PrefixDecision("10.255.0.1/32", True, "services up")

    def test_require_all_names_the_service_that_is_not_up(self) -> None:
        """The reason tells the operator which service holds the prefix back."""
        config = make_config({"services": ["web", "dns"]})
        decision = decide_prefix(
            config.prefixes[0], {"web": Health.UP, "dns": Health.DOWN}, address_present=True
        )
        assert not decision.announce
        assert decision.reason == "service dns down"

    def test_require_any_needs_one(self) -> None:
        config = make_config({"services": ["web", "dns"], "require": "any"})
        prefix = config.prefixes[0]
        assert decide_prefix(prefix, {"web": Health.DOWN, "dns": Health.UP}, True).announce
        assert not decide_prefix(prefix, {"web": Health.DOWN, "dns": Health.UNKNOWN}, True).announce

    def test_unknown_is_not_up(self) -> None:
        """Fail closed: a service never probed yet does not get announced."""
        config = make_config()
        assert not decide_prefix(config.prefixes[0], {}, address_present=True).announce

    def test_missing_address_blocks_announcement(self) -> None:
        """A server that does not hold the address must not attract its traffic."""
        config = make_config()
        decision = decide_prefix(config.prefixes[0], UP, address_present=False)
        assert not decision.announce
        assert decision.reason == "address 10.255.0.1 not on lo"


def decisions_for(config: Config, announce: bool = True) -> dict[str, PrefixDecision]:
    return {str(p.prefix): PrefixDecision(str(p.prefix), announce, "test") for p in config.prefixes}


class TestDesiredRoutes:
    def test_routes_only_to_established_sessions_of_the_same_family(self) -> None:
        config = make_config()
        routes = desired_routes(config, decisions_for(config), {"10.0.1.1", "fd00:1::1"})
        assert set(routes) == {
            RouteKey("10.0.1.1", "10.255.0.1/32"),
            RouteKey("fd00:1::1", "fd00:255::1/128"),
        }

    def test_withdrawn_prefix_has_no_routes(self) -> None:
        config = make_config()
        assert desired_routes(config, decisions_for(config, announce=False), {"10.0.1.1"}) == {}

    def test_bandwidth_split_over_established_sessions(self) -> None:
        """A dual-homed 10G server sends 5G on each session, 10G when one is left."""
        config = make_config({"bandwidth_mbps": 10_000})
        both = desired_routes(config, decisions_for(config), {"10.0.1.1", "10.0.2.1"})
        assert [r.bandwidth_bps for r in both.values()] == [5e9, 5e9]
        one = desired_routes(config, decisions_for(config), {"10.0.2.1"})
        (route,) = one.values()
        assert route.bandwidth_bps == 10e9
        assert route.extended_communities == ("0x0004fde94e9502f9",)

    def test_bandwidth_split_none_sends_full_on_each(self) -> None:
        config = make_config({"bandwidth_mbps": 10_000}, bandwidth_split="none")
        routes = desired_routes(config, decisions_for(config), {"10.0.1.1", "10.0.2.1"})
        assert {r.extended_communities for r in routes.values()} == {("0x0004fde94e9502f9",)}

    def test_non_transitive_option(self) -> None:
        config = make_config({"bandwidth_mbps": 10_000, "bandwidth_community": "non-transitive"})
        (route,) = desired_routes(config, decisions_for(config), {"10.0.1.1"}).values()
        assert route.extended_communities == ("0x4004fde94e9502f9",)

    def test_four_byte_local_as_uses_as_trans(self) -> None:
        config = make_config({"bandwidth_mbps": 10_000}, local_as=4_200_000_000)
        (route,) = desired_routes(config, decisions_for(config), {"10.0.1.1"}).values()
        assert route.extended_communities[0].startswith("0x00045ba0")  # 23456 = 0x5ba0

    def test_attributes_are_carried(self) -> None:
        config = make_config(
            {
                "bandwidth_mbps": 25_000,
                "communities": ["65001:100"],
                "large_communities": ["65001:1:2"],
                "med": 50,
                "as_path_prepend": 2,
                "weight_community": {"asn": 65001, "unit_mbps": 1000},
            }
        )
        (route,) = desired_routes(config, decisions_for(config), {"10.0.1.1"}).values()
        assert route.communities == ("65001:100", "65001:25")
        assert route.large_communities == ("65001:1:2",)
        assert route.med == 50
        assert route.as_path == (65001, 65001, 65001)

    def test_no_bandwidth_no_extended_community(self) -> None:
        config = make_config()
        (route,) = desired_routes(config, decisions_for(config), {"10.0.1.1"}).values()
        assert route.extended_communities == ()
        assert route.as_path == ()

    @pytest.mark.parametrize("sessions", [set(), {"10.9.9.9"}])
    def test_no_session_no_route(self, sessions: set[str]) -> None:
        config = make_config()
        assert desired_routes(config, decisions_for(config), sessions) == {}


class TestApplyOperations:
    healthy = PrefixDecision("10.255.0.1/32", True, "services up")
    sick = PrefixDecision("10.255.0.1/32", False, "service web down")

    def test_no_operations_keep_health(self) -> None:
        assert apply_operations(self.healthy, DrainPhase.NONE, None, None) is self.healthy

    def test_draining_keeps_announcing_until_graceful_shutdown(self) -> None:
        waiting = apply_operations(self.healthy, DrainPhase.WAITING_CONNECTIONS, "m", None)
        assert waiting.announce
        assert not waiting.graceful_shutdown
        assert waiting.state == "draining"
        gshut = apply_operations(self.healthy, DrainPhase.GRACEFUL_SHUTDOWN, "m", None)
        assert gshut.announce
        assert gshut.graceful_shutdown

    def test_drained_is_withdrawn(self) -> None:
        decision = apply_operations(self.healthy, DrainPhase.WITHDRAWN, "maintenance", None)
        assert not decision.announce
        assert decision.state == "drained"
        assert decision.reason == "drained: maintenance"

    def test_operations_never_announce_what_health_withdrew(self) -> None:
        for phase in DrainPhase:
            assert not apply_operations(self.sick, phase, "m", None).announce
        assert not apply_operations(self.sick, DrainPhase.NONE, None, 10.0).announce

    def test_dampened(self) -> None:
        decision = apply_operations(self.healthy, DrainPhase.NONE, None, 12.4)
        assert not decision.announce
        assert decision.state == "dampened"
        assert decision.reason == "dampened after flapping; released in 12s"

    def test_graceful_shutdown_community_is_added(self) -> None:
        config = make_config({"communities": ["65001:100"]})
        decision = PrefixDecision("10.255.0.1/32", True, "x", graceful_shutdown=True)
        (route,) = desired_routes(config, {decision.prefix: decision}, {"10.0.1.1"}).values()
        assert route.communities == ("65001:100", "65535:0")
