"""Network faults: the leaf's FRR crashes, a link is cut, TCP-MD5 right and wrong."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.sidecars import (
    ANYCAST_V4,
    bgp_paths,
    kernel_nexthops,
    measure,
    sidecar_config,
)
from tests.lablib import wait_until
from tests.reliability.conftest import FaultRow, Running, exabgp_pids, shares

pytestmark = pytest.mark.integration

SRV1 = "10.0.1.2"
SRV2 = "10.0.2.2"
LB = {SRV1: "LB:65001:1250000000 (10.000 Gbps)", SRV2: "LB:65002:125000000 (1.000 Gbps)"}


def announced_via(lab: Lab, *gateways: str) -> bool:
    return set(kernel_nexthops(lab, "leaf1", ANYCAST_V4)) == set(gateways)


def bgp_hops(lab: Lab) -> list[str]:
    return [path["nexthops"][0]["ip"] for path in bgp_paths(lab, "leaf1", ANYCAST_V4)]


def established(lab: Lab, neighbor: str) -> bool:
    data = lab.vtysh_json("leaf1", f"show bgp neighbors {neighbor} json")
    return bool(data.get(neighbor, {}).get("bgpState") == "Established")


def both_servers(running: Running) -> None:
    for node, mbps in (("srv1", 10_000), ("srv2", 1_000)):
        running.service(node)
        running.sidecar(node, sidecar_config(node, mbps))


def test_leaf_frr_crash_gets_every_route_back_exactly_once(
    lab: Lab, running: Running, fault: Callable[[str, str], FaultRow]
) -> None:
    """bgpd and zebra of leaf1 SIGKILLed and started again: both sessions come back and
    the leaf holds exactly one path per server, with the configured attributes."""
    row = fault("leaf_frr_restart", "SIGKILL bgpd+zebra on leaf1, start them again")
    both_servers(running)
    wait_until(
        lambda: announced_via(lab, SRV1, SRV2),
        timeout=20,
        message="never announced by both servers",
    )
    down_for = lab.restart_frr("leaf1")
    sessions = measure(
        lambda: established(lab, SRV1) and established(lab, SRV2),
        timeout=30,
        message="sessions did not come back after the FRR restart",
    )
    routes = measure(
        lambda: announced_via(lab, SRV1, SRV2),
        timeout=30,
        message="routes did not come back after the FRR restart",
    )
    paths = bgp_paths(lab, "leaf1", ANYCAST_V4)
    hops = [path["nexthops"][0]["ip"] for path in paths]
    row.stale_routes = max(0, len(paths) - 2)
    row.lost_routes = len({SRV1, SRV2} - set(hops))
    assert sorted(hops) == [SRV1, SRV2], paths
    for path in paths:
        hop = path["nexthops"][0]["ip"]
        assert path["extendedCommunity"]["string"] == LB[hop]
        assert path["community"]["string"] == ("65001:100" if hop == SRV1 else "65002:100")
    # Still exactly one path each a few seconds later: no late duplicate from a replay.
    time.sleep(2)  # a settle window to catch late duplicates, not a wait for convergence
    assert len(bgp_paths(lab, "leaf1", ANYCAST_V4)) == 2
    traffic = shares(lab, 200)
    assert traffic["failed"] == 0, traffic
    row.figures = {
        "frr_down_s": round(down_for, 3),
        "sessions_back_after_start_s": round(sessions, 3),
        "routes_back_after_start_s": round(sessions + routes, 3),
        "paths_after": len(paths),
        "connections_after": traffic["answers"],
    }
    row.survived = True
    print(row.figures)


def _cut(lab: Lab, node: str, how: str) -> Callable[[], None]:
    """Cut srv1's link to leaf1; returns the undo."""
    if how == "link-down":
        cut = ["ip", "link", "set", "eth1", "down"]
        # The kernel deletes routes through a downed link; put the lab's defaults back.
        restore = [
            ["ip", "link", "set", "eth1", "up"],
            ["ip", "route", "replace", "default", "via", "10.0.1.1"],
            ["ip", "-6", "route", "replace", "default", "via", "fd00:1::1"],
        ]
    else:
        # A silent one-way black hole: carrier stays up, srv1 drops everything it sends
        # to leaf1, so only leaf1's BGP hold timer can notice (no netem/gact here).
        cut = ["ip", "route", "add", "blackhole", "10.0.1.1/32"]
        restore = [["ip", "route", "del", "blackhole", "10.0.1.1/32"]]
    lab.run(node, cut)

    def undo() -> None:
        for argv in restore:
            lab.run(node, argv, check=False)

    return undo


@pytest.mark.parametrize("how", ["link-down", "blackhole"])
def test_link_cut_withdraws_and_restore_reannounces(
    lab: Lab, running: Running, fault: Callable[[str, str], FaultRow], how: str
) -> None:
    """srv1's link cut: leaf1 drops srv1 (at once on carrier loss, after the 3 s hold
    time for a silent black hole) while srv2 keeps serving; restored: srv1 is back."""
    row = fault(
        f"link_cut_{how}",
        "ip link set eth1 down on srv1"
        if how == "link-down"
        else "blackhole route to leaf1 on srv1 (carrier up, silent loss)",
    )
    both_servers(running)
    wait_until(
        lambda: announced_via(lab, SRV1, SRV2),
        timeout=20,
        message="never announced by both servers",
    )
    undo = _cut(lab, "srv1", how)
    running.on_cleanup(undo)
    gone = measure(
        lambda: announced_via(lab, SRV2),
        timeout=15,
        message=f"leaf1 kept srv1 after the link cut ({how})",
    )
    traffic = shares(lab, 100)
    assert traffic["failed"] == 0, traffic
    undo()
    back = measure(
        lambda: SRV1 in bgp_hops(lab),
        timeout=30,
        message=f"srv1's path did not come back to leaf1's BGP table ({how})",
    )
    row.figures = {
        "route_gone_s": round(gone, 3),
        "bgp_path_back_after_restore_s": round(back, 3),
        "hold_time_s": 3,
        "connections_during_cut": traffic["answers"],
        "failed_during_cut": traffic["failed"],
    }
    # With kernel nexthop objects FRR 8.4.4 kept a group without srv1 after the flap;
    # the lab's leaf runs `no zebra nexthop kernel enable`, and this proves it heals.
    fib = measure(
        lambda: announced_via(lab, SRV1, SRV2),
        timeout=10,
        message="leaf1's FIB did not get srv1 back after the link returned",
    )
    row.figures["fib_back_after_restore_s"] = round(fib, 3)
    after = shares(lab, 200)
    row.figures["connections_after_restore"] = after["answers"]
    row.figures["failed_after_restore"] = after["failed"]
    assert after["failed"] == 0, after
    row.survived = True
    print(row.figures)


@pytest.fixture
def leaf_password(lab: Lab) -> Iterator[Callable[[str | None], None]]:
    """Set (or clear) leaf1's TCP-MD5 password for srv1; always cleared afterwards."""

    def set_password(password: str | None) -> None:
        line = (
            f"neighbor {SRV1} password {password}" if password else f"no neighbor {SRV1} password"
        )
        lab.run(
            "leaf1",
            ["vtysh", "-N", lab.ns("leaf1"), "-c", "conf t", "-c", "router bgp 65100", "-c", line],
        )

    yield set_password
    set_password(None)


def _md5_config(password: str) -> dict[str, Any]:
    config = sidecar_config("srv1", 10_000)
    config["bgp"]["peers"] = [{"address": "10.0.1.1", "peer_as": 65100, "md5_password": password}]
    config["prefixes"] = config["prefixes"][:1]  # IPv4 only: one (signed) session
    return config


def test_md5_session_needs_the_right_password(
    lab: Lab,
    running: Running,
    fault: Callable[[str, str], FaultRow],
    leaf_password: Callable[[str | None], None],
) -> None:
    """leaf1 requires TCP-MD5 for srv1: the right password establishes the session and
    delivers the route; a wrong one never does (the leaf's kernel drops unsigned or
    badly signed segments, so an established session proves ExaBGP signed them)."""
    row = fault("tcp_md5", "leaf1 `neighbor password`; sidecar with right, then wrong password")
    running.service("srv1")
    leaf_password("0123abcdRight")
    good = running.sidecar("srv1", _md5_config("0123abcdRight"))
    up = measure(
        lambda: established(lab, SRV1),
        timeout=20,
        message=f"no session with the right MD5 password:\n{good.log_tail()}",
    )
    wait_until(
        lambda: announced_via(lab, SRV1),
        timeout=15,
        message="route did not arrive over the MD5 session",
    )
    good.stop()
    wait_until(
        lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=10,
        message="route stayed after the sidecar stopped",
    )

    running.sidecar("srv1", _md5_config("0123abcdWrong"))
    seen_route = seen_session = 0
    deadline = time.monotonic() + 8  # hold time 3 s, connect retry 1 s: many attempts
    while time.monotonic() < deadline:
        seen_session += established(lab, SRV1)
        seen_route += bool(bgp_paths(lab, "leaf1", ANYCAST_V4))
        time.sleep(0.2)
    row.stale_routes = seen_route
    assert seen_session == 0, "a session established with the wrong MD5 password"
    assert seen_route == 0, "the route arrived without a valid MD5 session"
    assert exabgp_pids(lab, "srv1"), "ExaBGP gave up instead of retrying"
    row.figures = {
        "session_up_with_right_password_s": round(up, 3),
        "established_polls_with_wrong_password": seen_session,
        "route_polls_with_wrong_password": seen_route,
        "wrong_password_observed_s": 8,
    }
    row.survived = True
    print(row.figures)
