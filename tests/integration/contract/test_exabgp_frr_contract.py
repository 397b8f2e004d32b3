"""Contract tests: the ExaBGP 5.0 and FRR 8.4 behaviour this project depends on.

They exist so that an upgrade of either breaks here, with a clear name, rather than as
a subtle fabric problem. Each one runs the real sidecar (and so the real ExaBGP) against
leaf1 of the single-leaf lab.
"""

from __future__ import annotations

import time

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.sidecars import (
    ANYCAST_V4,
    Running,
    announced_via,
    bgp_paths,
)
from tests.lablib import wait_until

pytestmark = pytest.mark.integration

SRV1 = "10.0.1.2"


def only_path(lab: Lab) -> dict[str, object]:
    paths = wait_until(
        lambda: bgp_paths(lab, "leaf1", ANYCAST_V4),
        timeout=20,
        message="leaf1 never received the prefix",
    )
    assert len(paths) == 1, paths
    return paths[0]


def test_attributes_arrive_as_encoded(lab: Lab, running: Running) -> None:
    """MED, large community, and an explicit as-path sent verbatim by ExaBGP (our
    prepend of 2 sends three copies of our AS: ExaBGP adds its own only to empty paths)."""
    running.service("srv1")
    running.sidecar("srv1", med=77, large_communities=["65001:7:8"], as_path_prepend=2)
    path = only_path(lab)
    assert path["metric"] == 77
    assert path["largeCommunity"] == {"string": "65001:7:8", "list": ["65001:7:8"]}
    assert path["aspath"]["string"] == "65001 65001 65001"  # type: ignore[index]


def test_non_transitive_link_bandwidth_is_understood(lab: Lab, running: Running) -> None:
    """Type 0x40 reaches FRR and is read as link bandwidth too."""
    running.service("srv1")
    running.sidecar("srv1", bandwidth_mbps=10_000, bandwidth_community="non-transitive")
    path = only_path(lab)
    assert path["extendedCommunity"] == {"string": "LB:65001:1250000000 (10.000 Gbps)"}


def test_frr_truncates_what_it_displays(lab: Lab, running: Running) -> None:
    """25G is 3.125e9 bytes/s, which a 4-byte float holds as 3124999936 (FRR encodes the
    same way); FRR 8.4 then *shows* 24.000 Gbps. Weights use the value, not the text."""
    running.service("srv1")
    running.sidecar("srv1", bandwidth_mbps=25_000)
    path = only_path(lab)
    assert path["extendedCommunity"] == {"string": "LB:65001:3124999936 (24.000 Gbps)"}


def test_frr_84_wraps_link_bandwidth_above_34g(lab: Lab, running: Running) -> None:
    """We send 100G correctly (12.5e9 bytes/s as a float; ExaBGP's 'bandwidth:' keyword
    could not), but FRR 8.4 keeps link bandwidth as a 32-bit count of bytes/s and wraps
    it: 12.5e9 mod 2^32 = 3910065152. Hence check-config's warning above 34359 Mbit/s.
    If an FRR upgrade fixes this, this test fails and the warning can go."""
    running.service("srv1")
    running.sidecar("srv1", bandwidth_mbps=100_000)
    path = only_path(lab)
    assert path["extendedCommunity"] == {"string": "LB:65001:3910065152 (31.000 Gbps)"}


def test_a_flapped_session_never_replays_a_withdrawn_route(lab: Lab, running: Running) -> None:
    """ExaBGP keeps no adj-rib-out for us: if the service dies while the session is down,
    the route must not come back when the session does."""
    service = running.service("srv1")
    sidecar = running.sidecar("srv1")
    wait_until(lambda: announced_via(lab, SRV1), timeout=20, message="never announced")
    lab.vtysh("leaf1", "conf t\nrouter bgp 65100\nneighbor 10.0.1.2 shutdown")
    try:
        wait_until(
            lambda: any(
                e["new"] == "down" and e["peer"] == "10.0.1.1"
                for e in sidecar.events("bgp_session_changed")
            ),
            timeout=15,
            message="the sidecar never saw the session go down",
        )
        service.kill()
        wait_until(
            lambda: any(e.get("new") == "down" for e in sidecar.events("service_state_changed")),
            timeout=10,
            message="the service death was not noticed",
        )
    finally:
        lab.vtysh("leaf1", "conf t\nrouter bgp 65100\nno neighbor 10.0.1.2 shutdown")
    wait_until(
        lambda: (
            sum(
                e["new"] == "up" and e["peer"] == "10.0.1.1"
                for e in sidecar.events("bgp_session_changed")
            )
            >= 2
        ),
        timeout=20,
        message="the session never came back",
    )
    # Proving an absence: watch for two seconds, a replay would come at session start.
    watch_until = time.monotonic() + 2
    while time.monotonic() < watch_until:
        assert not bgp_paths(lab, "leaf1", ANYCAST_V4), "a withdrawn route was replayed"
        time.sleep(0.2)
