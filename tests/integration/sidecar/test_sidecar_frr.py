"""The sidecar against a real FRR leaf: announce, withdraw, weights, shutdown, crashes.

Every test runs real processes in the single-leaf lab (network namespaces): the TCP
service, ``anycast-announcer run`` with its ExaBGP child, and FRR on leaf1. Timings are
recorded (``record_property`` and printed), never asserted: these machines are shared.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from anycast_announcer.netlab import Lab
from tests.integration.sidecars import (
    ANYCAST_V4,
    ANYCAST_V6,
    Running,
    announced_via,
    bgp_paths,
    kernel_nexthops,
    measure,
)
from tests.lablib import RecordProperty, wait_until

pytestmark = pytest.mark.integration

SRV1 = "10.0.1.2"
SRV2 = "10.0.2.2"


def test_announces_prefix_with_link_bandwidth_into_the_leaf_fib(lab: Lab, running: Running) -> None:
    """A healthy service gets its prefix into leaf1's BGP table, with the transitive
    link-bandwidth community and our communities, and into leaf1's kernel FIB; the IPv6
    prefix arrives over the IPv6 session."""
    running.service("srv1")
    sidecar = running.sidecar("srv1", bandwidth_mbps=10_000)
    wait_until(
        lambda: announced_via(lab, SRV1),
        timeout=20,
        message=f"leaf1 never installed {ANYCAST_V4} via srv1:\n{sidecar.log_tail()}",
    )
    (path,) = bgp_paths(lab, "leaf1", ANYCAST_V4)
    assert path["extendedCommunity"]["string"] == "LB:65001:1250000000 (10.000 Gbps)"
    assert path["community"]["string"] == "65001:100"
    assert [hop["ip"] for hop in path["nexthops"]] == [SRV1]
    wait_until(
        lambda: kernel_nexthops(lab, "leaf1", ANYCAST_V6),
        timeout=10,
        message=f"leaf1 never installed {ANYCAST_V6}",
    )
    (path6,) = bgp_paths(lab, "leaf1", ANYCAST_V6)
    assert path6["extendedCommunity"]["string"] == "LB:65001:1250000000 (10.000 Gbps)"


def test_withdraws_when_service_dies_and_reannounces_when_it_returns(
    lab: Lab, running: Running, record_property: RecordProperty
) -> None:
    """With only the probes watching (listener events off), killing the service withdraws
    the prefix from the leaf's FIB within about interval x fall + timeout; restarting it
    brings the prefix back. test_detection_frr covers the event-driven path."""
    service = running.service("srv1")
    sidecar = running.sidecar("srv1", service={"listener_events": False})
    wait_until(
        lambda: announced_via(lab, SRV1),
        timeout=20,
        message=f"never announced:\n{sidecar.log_tail()}",
    )
    service.kill()
    withdraw = measure(
        lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=10,
        message="leaf1 kept the route after the service died",
    )
    # Budget from the config: interval 0.5 x fall 2 + timeout 0.25 = 1.25 s, plus the
    # phase of the probe schedule (up to one interval) and BGP/zebra propagation.
    record_property("withdraw_seconds", round(withdraw, 3))
    print(f"withdraw after service death: {withdraw:.3f}s (budget 1.25s + one interval)")
    changes = sidecar.events("service_state_changed")
    assert changes[-1]["new"] == "down"
    assert changes[-1]["reason"] == "probe: connect refused"
    running.service("srv1")
    announce = measure(
        lambda: announced_via(lab, SRV1), timeout=10, message="leaf1 never got the route back"
    )
    record_property("reannounce_seconds", round(announce, 3))
    print(f"re-announce after service start: {announce:.3f}s")
    prefix_events = sidecar.events("prefix_state_changed")
    assert [e["new"] for e in prefix_events if e["prefix"] == ANYCAST_V4][-3:] == [
        "announced",
        "withdrawn",
        "announced",
    ]


def test_ucmp_weights_follow_bandwidth(lab: Lab, running: Running) -> None:
    """Two servers at 10G and 1G give leaf1 kernel next-hop weights of about 10:1."""
    for node in ("srv1", "srv2"):
        running.service(node)
    running.sidecar("srv1", bandwidth_mbps=10_000)
    running.sidecar("srv2", bandwidth_mbps=1_000)

    def both_next_hops() -> dict[str, int] | None:
        hops = kernel_nexthops(lab, "leaf1", ANYCAST_V4)
        return hops if len(hops) == 2 else None

    weights = wait_until(
        both_next_hops, timeout=20, message="leaf1 never had both servers as next hops"
    )
    ratio = weights[SRV1] / weights[SRV2]
    print(f"kernel weights {weights}, ratio {ratio:.2f}")
    assert 8 <= ratio <= 12, weights


def test_sigterm_withdraws_everything_and_exits_zero(
    lab: Lab, running: Running, record_property: RecordProperty
) -> None:
    """SIGTERM withdraws (acknowledged by ExaBGP), stops ExaBGP and exits 0 within 2 s."""
    running.service("srv1")
    sidecar = running.sidecar("srv1")
    wait_until(lambda: announced_via(lab, SRV1), timeout=20, message="never announced")
    started = time.monotonic()
    sidecar.signal(signal.SIGTERM)
    assert sidecar.wait(timeout=10) == 0
    exit_seconds = time.monotonic() - started
    record_property("sigterm_exit_seconds", round(exit_seconds, 3))
    print(f"exit after SIGTERM: {exit_seconds:.3f}s")
    (withdrawn,) = sidecar.events("withdrawn_all")
    assert withdrawn["acknowledged"] is True
    wait_until(
        lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=5,
        message="leaf1 kept the route after SIGTERM",
    )
    assert not [pid for pid in _ns_pids(lab, "srv1") if "exabgp" in _cmdline(pid)]


def test_sigkill_takes_the_routes_with_it(
    lab: Lab, running: Running, record_property: RecordProperty
) -> None:
    """A SIGKILLed sidecar leaves no ExaBGP behind, so the leaf drops the route at once."""
    running.service("srv1")
    sidecar = running.sidecar("srv1")
    wait_until(lambda: announced_via(lab, SRV1), timeout=20, message="never announced")
    sidecar.signal(signal.SIGKILL)
    sidecar.wait(timeout=5)
    gone = measure(
        lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=10,
        message="leaf1 kept the route of a SIGKILLed sidecar",
    )
    record_property("sigkill_withdraw_seconds", round(gone, 3))
    print(f"route gone after SIGKILL: {gone:.3f}s")
    wait_until(
        lambda: not [p for p in _ns_pids(lab, "srv1") if "exabgp" in _cmdline(p)],
        timeout=5,
        message="ExaBGP outlived its sidecar",
    )


def test_restarts_a_killed_exabgp_and_announces_again(lab: Lab, running: Running) -> None:
    """ExaBGP killed under the sidecar: the route goes, ExaBGP comes back, the route too."""
    running.service("srv1")
    sidecar = running.sidecar("srv1")
    wait_until(lambda: announced_via(lab, SRV1), timeout=20, message="never announced")
    (exabgp_pid,) = [p for p in _ns_pids(lab, "srv1") if "exabgp server" in _cmdline(p)]
    os.kill(exabgp_pid, signal.SIGKILL)
    wait_until(
        lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=10,
        message="leaf1 kept the route of a killed ExaBGP",
    )
    wait_until(
        lambda: announced_via(lab, SRV1),
        timeout=20,
        message=f"route never came back after ExaBGP restart:\n{sidecar.log_tail()}",
    )
    assert sidecar.events("exabgp_restarting")


def test_withdraws_when_the_address_leaves_lo(lab: Lab, running: Running) -> None:
    """Removing the anycast address from lo withdraws; putting it back re-announces."""
    running.service("srv1")
    sidecar = running.sidecar("srv1")
    wait_until(lambda: announced_via(lab, SRV1), timeout=20, message="never announced")
    lab.run("srv1", ["ip", "addr", "del", ANYCAST_V4, "dev", "lo"])
    try:
        wait_until(
            lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
            timeout=10,
            message="still announced without the address on lo",
        )
        reasons = [e["reason"] for e in sidecar.events("prefix_state_changed")]
        assert "address 10.255.0.1 not on lo" in reasons
    finally:
        lab.run("srv1", ["ip", "addr", "add", ANYCAST_V4, "dev", "lo"], check=False)
    wait_until(
        lambda: announced_via(lab, SRV1),
        timeout=10,
        message="not re-announced after the address came back",
    )


def test_managed_address_is_added_and_removed_after_withdrawal(lab: Lab, running: Running) -> None:
    """With manage_address the sidecar adds the address itself and removes it on exit."""
    lab.run("srv2", ["ip", "addr", "del", ANYCAST_V4, "dev", "lo"])
    try:
        sidecar = running.sidecar("srv2", bandwidth_mbps=1_000, manage_address=True)
        wait_until(
            lambda: _has_address(lab, "srv2", "10.255.0.1"),
            timeout=10,
            message="the sidecar did not add the managed address",
        )
        running.service("srv2")  # binds the anycast address, so only once it exists
        wait_until(lambda: announced_via(lab, SRV2), timeout=20, message="never announced")
        sidecar.signal(signal.SIGTERM)
        assert sidecar.wait(timeout=10) == 0
        assert not _has_address(lab, "srv2", "10.255.0.1")
        removed = [
            e["event"]
            for e in sidecar.events()
            if e["event"] in {"withdrawn_all", "address_removed"}
        ]
        assert removed[:2] == ["withdrawn_all", "address_removed"]
    finally:
        lab.run("srv2", ["ip", "addr", "replace", ANYCAST_V4, "dev", "lo"], check=False)


def _has_address(lab: Lab, node: str, address: str) -> bool:
    output = lab.run(node, ["ip", "-4", "addr", "show", "dev", "lo"]).stdout
    return f" {address}/32 " in output


def _ns_pids(lab: Lab, node: str) -> list[int]:
    out = subprocess.run(
        ["ip", "netns", "pids", lab.ns(node)], capture_output=True, text=True, check=True
    ).stdout
    return [int(pid) for pid in out.split()]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
