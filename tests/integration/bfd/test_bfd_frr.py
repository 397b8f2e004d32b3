"""Our BFD speaker against FRR's bfdd (8.4 on Debian 12, 10.3 on Debian 13): bring-up,
Poll Sequences, GTSM, and what BGP does.

The leaf runs bfdd and bgpd with ``neighbor <server> bfd`` (profile ``servers``, 300 ms x 3)
and production-like BGP timers (3 s / 9 s); the server's BGP session is FRR's bgpd and its
BFD is our speaker in a child process (tests/integration/bfd/speaker_child.py).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from anycast_announcer.netlab import Lab
from anycast_announcer.netlab.plan import BgpWait
from tests.integration.bfd.child import SpeakerChild
from tests.lablib import deployed, require_lab_host, wait_until

pytestmark = pytest.mark.integration

TOPOLOGY = Path(__file__).parent / "bfd.clab.yml"
V4 = ("10.0.1.1", "10.0.1.2")  # (leaf, server)
V6 = ("fd00:1::1", "fd00:1::2")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    require_lab_host()
    # BGP comes up whether BFD is there or not; the tests wait for what they need.
    with deployed(TOPOLOGY, wait_bgp=BgpWait.NONE) as deployed_lab:
        yield deployed_lab


@pytest.fixture
def speaker(lab: Lab) -> Iterator[SpeakerChild]:
    child = SpeakerChild(lab, "srv")
    try:
        yield child
    finally:
        child.close()


def leaf_peer(lab: Lab, server: str) -> dict[str, Any]:
    peers = lab.vtysh_json("leaf", "show bfd peers json")
    return next(p for p in peers if p["peer"] == server)


def bgp_neighbor(lab: Lab, server: str) -> dict[str, Any]:
    result: dict[str, Any] = lab.vtysh_json("leaf", f"show bgp neighbor {server} json")[server]
    return result


def ours(speaker: SpeakerChild, leaf: str) -> dict[str, Any]:
    session: dict[str, Any] = speaker.snapshot()["sessions"][leaf]
    return session


def wait_up(lab: Lab, speaker: SpeakerChild, leaf: str, server: str) -> None:
    wait_until(
        lambda: leaf_peer(lab, server)["status"] == "up" and ours(speaker, leaf)["state"] == "UP",
        timeout=15,
        message=f"BFD {server} <-> {leaf} never came up on both sides",
    )


class TestInterop:
    @pytest.mark.parametrize(("leaf", "server"), [V4, V6], ids=["ipv4", "ipv6"])
    def test_session_comes_up_with_the_negotiated_intervals(
        self, lab: Lab, speaker: SpeakerChild, leaf: str, server: str
    ) -> None:
        """FRR shows the session up, our discriminators, and 300 ms x 3 both ways."""
        speaker.add(leaf, server, 0.3, 0.3, 3)
        wait_up(lab, speaker, leaf, server)
        frr = wait_until(
            lambda: (p := leaf_peer(lab, server))["remote-transmit-interval"] == 300 and p,
            timeout=5,
            message="FRR never saw our 300 ms after the slow start",
        )
        mine = ours(speaker, leaf)
        assert frr["remote-id"] == mine["local_discriminator"]
        assert frr["id"] == mine["remote_discriminator"]
        assert frr["remote-receive-interval"] == 300
        assert frr["remote-detect-multiplier"] == 3
        assert mine["transmit_interval"] == pytest.approx(0.3)
        assert mine["detection_time"] == pytest.approx(0.9)

    def test_our_timer_change_goes_through_a_poll_sequence(
        self, lab: Lab, speaker: SpeakerChild
    ) -> None:
        """New intervals while UP: a Poll, FRR's Final, the new values in force, no flap."""
        speaker.add(*V4, 0.3, 0.3, 3)
        wait_up(lab, speaker, *V4)
        wait_until(lambda: not ours(speaker, V4[0])["polling"], 5, "slow start poll never ended")
        before = ours(speaker, V4[0])
        since = len(speaker.events)
        speaker.send(op="timers", peer=V4[0], min_tx=0.5, min_rx=0.6, mult=4)
        frr = wait_until(
            lambda: (p := leaf_peer(lab, V4[1]))["remote-transmit-interval"] == 500 and p,
            timeout=5,
            message="FRR never took our 500 ms",
        )
        assert frr["remote-receive-interval"] == 600
        assert frr["remote-detect-multiplier"] == 4
        after = wait_until(
            lambda: (
                (s := ours(speaker, V4[0]))["polls_completed"] > before["polls_completed"]
                and not s["polling"]
                and s
            ),
            timeout=5,
            message="our Poll Sequence never got its Final",
        )
        assert after["transmit_interval"] == pytest.approx(0.5)
        assert after["state"] == "UP"
        assert frr["status"] == "up"
        assert not [e for e in speaker.events[since:] if e["event"] == "changed"]

    def test_a_leaf_timer_change_is_answered_with_final(
        self, lab: Lab, speaker: SpeakerChild
    ) -> None:
        """FRR's Poll after a profile change gets our Final; the session stays UP."""
        speaker.add(*V4, 0.3, 0.3, 3)
        wait_up(lab, speaker, *V4)
        before = ours(speaker, V4[0])
        since = len(speaker.events)
        try:
            lab.run("leaf", _vtysh_conf(lab, "transmit-interval 150", "receive-interval 400"))
            after = wait_until(
                lambda: (
                    (s := ours(speaker, V4[0]))["remote_min_tx"] == pytest.approx(0.15)
                    and s["remote_min_rx"] == pytest.approx(0.4)
                    and s
                ),
                timeout=5,
                message="we never saw FRR's new intervals",
            )
            assert after["polls_answered"] > before["polls_answered"]
            assert after["transmit_interval"] == pytest.approx(0.4)  # FRR now wants 400 ms
            assert after["detection_time"] == pytest.approx(0.9)  # 3 x max(our 300, its 150)
            assert after["state"] == "UP"
            assert not [e for e in speaker.events[since:] if e["event"] == "changed"]
        finally:
            lab.run("leaf", _vtysh_conf(lab, "transmit-interval 300", "receive-interval 300"))

    def test_packets_with_a_ttl_below_255_are_discarded(
        self, lab: Lab, speaker: SpeakerChild
    ) -> None:
        """GTSM (RFC 5881 §5): a packet from further than one hop is not ours to accept."""
        speaker.add(*V4, 0.3, 0.3, 3)
        sender = (
            "import socket\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 254)\n"
            "s.bind(('10.0.1.1', 50000))\n"
            "pkt = bytes([0x20, 0x40, 3, 24]) + (7).to_bytes(4, 'big') + bytes(16)\n"
            "for _ in range(3): s.sendto(pkt, ('10.0.1.2', 3784))\n"
        )
        lab.run("leaf", [sys.executable, "-c", sender])
        stats = wait_until(
            lambda: (st := speaker.snapshot()["stats"])["discarded_ttl"] >= 3 and st,
            timeout=5,
            message="the TTL-254 packets were not counted as discarded",
        )
        assert stats["discarded_ttl"] == 3


class TestWhatBgpDoes:
    def test_the_leaf_drops_bgp_when_bfd_goes_down_and_only_then(
        self, lab: Lab, speaker: SpeakerChild
    ) -> None:
        """Stable while BFD is up; a stuck sidecar loop is a BGP drop in about a second."""
        speaker.add(*V4, 0.3, 0.3, 3)
        wait_up(lab, speaker, *V4)
        wait_until(
            lambda: bgp_neighbor(lab, V4[1])["bgpState"] == "Established",
            timeout=20,
            message="BGP never established",
        )
        dropped = bgp_neighbor(lab, V4[1]).get("connectionsDropped", 0)
        time.sleep(3)  # BFD up must not disturb BGP
        assert bgp_neighbor(lab, V4[1]).get("connectionsDropped", 0) == dropped
        assert bgp_neighbor(lab, V4[1])["bgpState"] == "Established"

        speaker.send(op="freeze", seconds=4)  # no heartbeat: the speaker must go quiet
        frozen_at = time.monotonic()
        wait_until(
            lambda: bgp_neighbor(lab, V4[1]).get("connectionsDropped", 0) > dropped,
            timeout=3,
            message="the leaf kept BGP up although our BFD went silent",
            interval=0.05,
        )
        dropped_after = time.monotonic() - frozen_at
        assert dropped_after < 2.0  # the hold timer alone would take 9 s
        assert leaf_peer(lab, V4[1])["status"] == "down"
        wait_up(lab, speaker, *V4)  # the loop beats again: BFD comes back by itself


class TestAdminDownContract:
    def test_frr_drops_bgp_on_admin_down_despite_rfc_5882(
        self, lab: Lab, speaker: SpeakerChild
    ) -> None:
        """Pinned FRR behaviour: AdminDown from us resets the leaf's BGP (Cease/BFD Down).

        RFC 5882 §3.2 says it should not; FRR 8.4 (Debian 12) and 10.3 (Debian 13) both
        do. So the sidecar sends AdminDown only once its routes are withdrawn (clean
        stop), never on a drain. If this test fails, FRR started following the RFC:
        update docs/bfd.md.
        """
        speaker.add(*V4, 0.3, 0.3, 3)
        wait_up(lab, speaker, *V4)
        # The previous test's speaker left a session for the leaf to time out, which
        # resets BGP (BFD Down): wait for BGP to be up on our session and stay up, so
        # that the drop below can only be the AdminDown's doing (and its absence is not
        # bgpd not having seen BFD up yet).
        wait_until(
            lambda: bgp_neighbor(lab, V4[1])["bgpState"] == "Established",
            timeout=20,
            message="BGP never established",
        )
        dropped = bgp_neighbor(lab, V4[1]).get("connectionsDropped", 0)
        time.sleep(2)
        settled = bgp_neighbor(lab, V4[1])
        assert settled["bgpState"] == "Established"
        assert settled.get("connectionsDropped", 0) == dropped
        assert leaf_peer(lab, V4[1])["status"] == "up"

        speaker.send(op="admin_down", peer=V4[0])
        frr = wait_until(
            lambda: (p := leaf_peer(lab, V4[1]))["status"] == "down" and p,
            timeout=3,
            message="FRR never saw our AdminDown",
        )
        assert frr["remote-diagnostic"] == "administratively down"
        wait_until(
            lambda: bgp_neighbor(lab, V4[1]).get("connectionsDropped", 0) > dropped,
            timeout=3,
            message="FRR kept BGP up on AdminDown: it follows RFC 5882 now",
        )


def _vtysh_conf(lab: Lab, *lines: str) -> list[str]:
    argv = ["vtysh", "-N", lab.ns("leaf"), "-c", "configure terminal", "-c", "bfd"]
    argv += ["-c", "profile servers"]
    for line in lines:
        argv += ["-c", line]
    return argv
