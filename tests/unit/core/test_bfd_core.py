"""The core's view of BFD: a BFD-down peer is a down session; BFD config at reload."""

from __future__ import annotations

from typing import Any

from anycast_announcer.config import BfdConfig
from anycast_announcer.core import effects as fx
from anycast_announcer.core.inputs import (
    BfdChanged,
    ConfigLoaded,
    DrainRequested,
    SessionChanged,
)
from anycast_announcer.routes import RouteKey
from tests.unit.core.helpers import BASE, PEER, PREFIX, Harness, at, config
from tests.unit.core.test_sidecar import EXABGP

PEER2 = "10.0.2.1"


def two_peers(**bfd: Any) -> dict[str, Any]:
    """BASE with a second session; ``bfd`` is PEER's bfd setting."""
    peer = {"address": PEER, "peer_as": 65100, **({"bfd": bfd["bfd"]} if bfd else {})}
    return {
        **BASE,
        "bgp": {**BASE["bgp"], "peers": [peer, {"address": PEER2, "peer_as": 65100}]},
    }


def bandwidths(harness: Harness) -> dict[str, float | None]:
    return {key.peer: route.bandwidth_bps for key, route in harness.routes.items()}


def healthy_both(harness: Harness) -> None:
    harness.healthy()
    harness.feed(SessionChanged(PEER2, True, "up"), 0.0)


class TestVerdicts:
    def test_bfd_down_is_a_down_session_and_the_bandwidth_moves(self) -> None:
        """up_sessions: with PEER's BFD down, PEER2 carries the whole bandwidth."""
        harness = Harness(two_peers(bfd=True))
        healthy_both(harness)
        harness.feed(BfdChanged(PEER, True, "up"), 1.0)
        assert bandwidths(harness) == {PEER: 5e9, PEER2: 5e9}
        harness.feed(BfdChanged(PEER, False, "control detection time expired"), 2.0)
        assert bandwidths(harness)[PEER2] == 1e10
        assert harness.of_type(fx.PeerChanged)[-1] == fx.PeerChanged(
            PEER, False, "bfd: control detection time expired"
        )
        [status] = [p for p in harness.core.status(at(2.0), EXABGP).peers if p.address == PEER]
        assert status.state == "down"
        assert status.last_change_reason == "bfd: control detection time expired"

    def test_bfd_up_again_restores_the_session(self) -> None:
        harness = Harness(two_peers(bfd=True))
        healthy_both(harness)
        harness.feed(BfdChanged(PEER, False, "control detection time expired"), 1.0)
        harness.feed(BfdChanged(PEER, True, "up"), 2.0)
        assert bandwidths(harness) == {PEER: 5e9, PEER2: 5e9}

    def test_no_verdict_leaves_the_bgp_state_in_charge(self) -> None:
        """Not up yet, or AdminDown (RFC 5882): BFD does not take the session down."""
        harness = Harness(two_peers(bfd=True))
        healthy_both(harness)
        harness.feed(BfdChanged(PEER, None, "neighbor signaled session down (admin down)"), 1.0)
        assert bandwidths(harness) == {PEER: 5e9, PEER2: 5e9}

    def test_a_bgp_session_down_stays_down_whatever_bfd_says(self) -> None:
        harness = Harness(two_peers(bfd=True))
        healthy_both(harness)
        harness.feed(SessionChanged(PEER, False, "closed"), 1.0)
        harness.feed(BfdChanged(PEER, True, "up"), 2.0)
        assert RouteKey(PEER, PREFIX) not in harness.routes
        assert harness.of_type(fx.PeerChanged)[-1] == fx.PeerChanged(PEER, False, "closed")


class TestLifecycle:
    def test_a_drain_leaves_bfd_alone(self) -> None:
        """The BGP session must stay for the undrain: no BFD change on a drain."""
        harness = Harness(two_peers(bfd=True))
        healthy_both(harness)
        before = len(harness.of_type(fx.SyncBfd))
        harness.feed(DrainRequested(1, None, "maintenance"), 10.0)
        harness.tick(20.0)
        assert len(harness.of_type(fx.SyncBfd)) == before

    def test_shutdown_does_not_touch_bfd_itself(self) -> None:
        """The shell sends AdminDown only after the withdrawals are acknowledged."""
        harness = Harness(two_peers(bfd=True))
        healthy_both(harness)
        effects = harness.take(harness.core.shutdown(at(30.0)))
        assert not [e for e in effects if isinstance(e, fx.SyncBfd)]
        assert harness.routes == {}


class TestConfig:
    def test_start_asks_for_the_configured_sessions(self) -> None:
        harness = Harness(two_peers(bfd={"min_tx": 0.1, "min_rx": 0.2, "multiplier": 4}))
        [sync] = harness.of_type(fx.SyncBfd)
        assert [str(p.address) for p in sync.peers] == [PEER]
        assert sync.peers[0].bfd == BfdConfig(min_tx=0.1, min_rx=0.2, multiplier=4)

    def test_a_bfd_change_at_reload_does_not_restart_exabgp(self) -> None:
        harness = Harness(two_peers(bfd=True))
        harness.feed(ConfigLoaded(config(two_peers(bfd={"min_tx": 0.1})), 1), 5.0)
        assert harness.of_type(fx.RestartExabgp) == []
        syncs = harness.of_type(fx.SyncBfd)
        assert len(syncs) == 2
        assert syncs[-1].peers[0].bfd == BfdConfig(min_tx=0.1)
        [reply] = [e for e in harness.of_type(fx.Reply) if e.request == 1]
        assert "bfd changed: applied without restarting ExaBGP" in reply.result.message

    def test_turning_bfd_off_drops_its_verdict(self) -> None:
        harness = Harness(two_peers(bfd=True))
        healthy_both(harness)
        harness.feed(BfdChanged(PEER, False, "control detection time expired"), 1.0)
        harness.feed(ConfigLoaded(config(two_peers()), 1), 2.0)
        assert harness.of_type(fx.SyncBfd)[-1].peers == ()
        assert harness.of_type(fx.RestartExabgp) == []
        assert bandwidths(harness) == {PEER: 5e9, PEER2: 5e9}

    def test_other_bgp_changes_still_restart_exabgp(self) -> None:
        harness = Harness(two_peers(bfd=True))
        changed = two_peers(bfd=True)
        changed["bgp"] = {**changed["bgp"], "hold_time": 30}
        harness.feed(ConfigLoaded(config(changed), 1), 5.0)
        assert len(harness.of_type(fx.RestartExabgp)) == 1
        assert len(harness.of_type(fx.SyncBfd)) == 1  # BFD itself did not change
