"""Process faults: ExaBGP killed, the sidecar killed, checks that hang, fork or stall.

Figures are recorded, never asserted tightly: the machines running this are shared.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable

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
from tests.reliability.conftest import (
    FaultRow,
    Running,
    cmdline,
    event_time,
    exabgp_pids,
    fd_count,
    ns_pids,
    shares,
)

pytestmark = pytest.mark.integration

SRV1 = "10.0.1.2"
SRV2 = "10.0.2.2"
GUARDED_V4 = "10.255.0.2/32"


def announced_via(lab: Lab, *gateways: str) -> bool:
    return set(kernel_nexthops(lab, "leaf1", ANYCAST_V4)) == set(gateways)


def session_established(lab: Lab, neighbor: str) -> bool:
    data = lab.vtysh_json("leaf1", f"show bgp neighbors {neighbor} json")
    return bool(data.get(neighbor, {}).get("bgpState") == "Established")


def test_killed_exabgp_restarts_and_announces_nothing_unhealthy(
    lab: Lab, running: Running, fault: Callable[[str, str], FaultRow]
) -> None:
    """SIGKILL of ExaBGP: the leaf drops the routes, the sidecar restarts ExaBGP after its
    backoff and re-announces the healthy prefix, and a prefix whose service died while
    ExaBGP was down is never seen by the leaf after the restart."""
    row = fault("exabgp_sigkill", "SIGKILL ExaBGP; kill a second prefix's service while it is down")
    config = sidecar_config("srv1", 10_000)
    config["services"].append(
        {
            **config["services"][0],
            "name": "guard",
            "check": {"type": "tcp", "host": "10.255.0.1", "port": 8081},
        }
    )
    config["prefixes"].append(
        {
            "prefix": GUARDED_V4,
            "services": ["guard"],
            "bandwidth_mbps": 10_000,
            "manage_address": True,
        }
    )
    # A backoff longer than fall x interval + timeout: the guard is surely down (in the
    # sidecar's view) before the new ExaBGP exists, so the race we check is deterministic.
    config["exabgp"] = {"restart_backoff_initial": 3.0}
    running.service("srv1")
    guard = running.service("srv1", "10.255.0.1:8081")
    sidecar = running.sidecar("srv1", config)
    wait_until(
        lambda: announced_via(lab, SRV1) and bgp_paths(lab, "leaf1", GUARDED_V4),
        timeout=20,
        message=f"never announced both prefixes:\n{sidecar.log_tail()}",
    )

    (old_pid,) = exabgp_pids(lab, "srv1")
    killed_at = time.time()
    os.kill(old_pid, signal.SIGKILL)
    guard.kill()
    gone = measure(
        lambda: not kernel_nexthops(lab, "leaf1", ANYCAST_V4),
        timeout=10,
        message="leaf1 kept the route of a killed ExaBGP",
    )
    back = measure(
        lambda: announced_via(lab, SRV1),
        timeout=30,
        message=f"no route after the ExaBGP restart:\n{sidecar.log_tail()}",
    )
    restarted = [e for e in sidecar.events("exabgp_started") if event_time(e) > killed_at]
    assert restarted, "no new ExaBGP was started"
    guard_down = [
        e
        for e in sidecar.events("service_state_changed")
        if e["service"] == "guard" and e["new"] == "down"
    ]
    assert guard_down, "the guard service never went down"
    assert event_time(guard_down[-1]) < event_time(restarted[0]), (
        "the guard service was not down before ExaBGP came back: the check is not meaningful"
    )

    # After the restart the healthy prefix is back; the dead one must never show up.
    stale = polls = 0
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        if bgp_paths(lab, "leaf1", GUARDED_V4):
            stale += 1
        polls += 1
        time.sleep(0.1)
    row.stale_routes = stale
    assert stale == 0, f"leaf1 saw {GUARDED_V4} after the restart although its service is down"
    restarting = [e for e in sidecar.events("exabgp_restarting") if event_time(e) > killed_at]
    assert restarting, "no exabgp_restarting event"
    assert restarting[0]["in_seconds"] == 3.0
    (new_pid,) = exabgp_pids(lab, "srv1")
    assert new_pid != old_pid
    row.figures = {
        "route_gone_after_kill_s": round(gone, 3),
        "backoff_s": restarting[0]["in_seconds"],
        "exabgp_restarted_after_s": round(event_time(restarted[0]) - killed_at, 3),
        "route_back_after_kill_s": round(gone + back, 3),
        "leaf_polls_of_dead_prefix": polls,
    }
    row.survived = True
    print(row.figures)


def test_sigkilled_sidecar_takes_its_routes_and_exabgp_with_it(
    lab: Lab, running: Running, fault: Callable[[str, str], FaultRow]
) -> None:
    """SIGKILL of the sidecar on srv1 while srv2 also serves: the kernel kills ExaBGP
    (PDEATHSIG), leaf1 drops srv1 within a second or two, and clients only reach srv2."""
    row = fault("sidecar_sigkill", "SIGKILL the sidecar of srv1 (srv2 keeps serving)")
    running.service("srv1")
    running.service("srv2")
    sidecar = running.sidecar("srv1")
    running.sidecar("srv2", sidecar_config("srv2", 10_000))
    wait_until(
        lambda: announced_via(lab, SRV1, SRV2),
        timeout=20,
        message=f"never announced by both:\n{sidecar.log_tail()}",
    )
    before = shares(lab, 200)
    assert before["failed"] == 0, before

    sidecar.signal(signal.SIGKILL)
    sidecar.wait(timeout=5)
    gone = measure(
        lambda: announced_via(lab, SRV2),
        timeout=10,
        message="leaf1 kept srv1's route after its sidecar was SIGKILLed",
    )
    orphan = measure(
        lambda: not exabgp_pids(lab, "srv1"),
        timeout=5,
        message="ExaBGP outlived its SIGKILLed sidecar",
    )
    wait_until(
        lambda: (
            not [p for p in ns_pids(lab, "srv1") if "anycast_announcer.exabgp.bridge" in cmdline(p)]
        ),
        timeout=5,
        message="the API relay outlived its SIGKILLed sidecar",
    )
    after = shares(lab, 200)
    assert after["failed"] == 0, after
    assert set(after["answers"]) == {"srv2"}, after
    row.stale_routes = after["answers"].get("srv1", 0)
    row.figures = {
        "route_gone_s": round(gone, 3),
        "exabgp_gone_s": round(orphan, 3),
        "connections_before": before["answers"],
        "connections_after": after["answers"],
        "failed_connections_after": after["failed"],
    }
    row.survived = True
    print(row.figures)


def test_hung_sidecar_loses_its_routes_and_recovers_after_sigcont(
    lab: Lab, running: Running, fault: Callable[[str, str], FaultRow]
) -> None:
    """SIGSTOP of the sidecar on srv1 (a blocked loop, a stuck syscall), then its service
    dies: the relay hears no heartbeat for exabgp.watchdog seconds and stops ExaBGP, so
    leaf1 drops srv1 though nobody checks it any more. After SIGCONT the sidecar restarts
    ExaBGP by itself and announces again once its service is back."""
    row = fault("sidecar_sigstop", "SIGSTOP the sidecar of srv1, then kill its service")
    watchdog = 3.0
    service = running.service("srv1")
    running.service("srv2")
    config = sidecar_config("srv1", 10_000)
    config["exabgp"] = {"watchdog": watchdog}
    sidecar = running.sidecar("srv1", config)
    running.sidecar("srv2", sidecar_config("srv2", 10_000))
    wait_until(
        lambda: announced_via(lab, SRV1, SRV2),
        timeout=20,
        message=f"never announced by both:\n{sidecar.log_tail()}",
    )
    sidecar.signal(signal.SIGSTOP)
    try:
        service.kill()
        gone = measure(
            lambda: announced_via(lab, SRV2),
            timeout=watchdog + 10,
            message="leaf1 kept the hung sidecar's route past its watchdog",
        )
        after = shares(lab, 200)
        assert set(after["answers"]) == {"srv2"}, after
    finally:
        sidecar.signal(signal.SIGCONT)
    running.service("srv1")
    back = measure(
        lambda: announced_via(lab, SRV1, SRV2),
        timeout=30,
        message=f"the sidecar did not recover after SIGCONT:\n{sidecar.log_tail()}",
    )
    assert sidecar.process is not None
    assert sidecar.process.poll() is None, "the sidecar died instead of recovering"
    assert sidecar.events("exabgp_lost"), "the resumed sidecar never saw ExaBGP stop"
    row.figures = {
        "watchdog_s": watchdog,
        "route_gone_after_sigstop_s": round(gone, 3),
        "announced_again_after_sigcont_s": round(back, 3),
        "failed_connections_while_hung": after["failed"],
    }
    row.survived = True
    print(row.figures)


SLOWLORIS = """
import socket, sys, time
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1]))); server.listen(1024)
held = []
while True:  # accept and never answer: every probe must give up on its own
    held.append(server.accept()[0])
"""


def _established_to(lab: Lab, port: int) -> int:
    out = lab.run("srv1", ["ss", "-Htn", "state", "established", f"( sport = :{port} )"]).stdout
    return len(out.splitlines())


def test_hanging_forking_and_stalled_checks_are_bounded(
    lab: Lab, running: Running, fault: Callable[[str, str], FaultRow]
) -> None:
    """A command that hangs, one that forks children and an HTTP server that never
    answers: every probe ends at its timeout, the service is down with a timeout reason,
    no process or socket piles up, the sidecar's fd count stays flat, nothing is announced."""
    row = fault(
        "stuck_checks", "checks: `sleep 3600`, `sh -c 'sleep 100 & sleep 100'`, HTTP slowloris"
    )
    port = 18090
    running.process("srv1", [sys.executable, "-c", SLOWLORIS, str(port)])
    wait_until(
        lambda: lab.run("srv1", ["ss", "-Htln", f"( sport = :{port} )"]).stdout,
        timeout=10,
        message="slowloris listener did not start",
    )
    timing = {"interval": 0.5, "timeout": 0.3, "rise": 1, "fall": 1}
    config = sidecar_config("srv1", 10_000)
    config["services"] = [
        {"name": "hang", "check": {"type": "command", "argv": ["sleep", "3600"]}, **timing},
        {
            "name": "fork",
            "check": {"type": "command", "argv": ["sh", "-c", "sleep 100 & sleep 100"]},
            **timing,
        },
        {"name": "slow", "check": {"type": "http", "url": f"http://127.0.0.1:{port}/"}, **timing},
    ]
    for prefix in config["prefixes"]:
        prefix["services"] = ["hang", "fork", "slow"]
        prefix["require"] = "any"
    sidecar = running.sidecar("srv1", config)
    wait_until(
        lambda: (
            {e["service"] for e in sidecar.events("service_state_changed") if e["new"] == "down"}
            == {"hang", "fork", "slow"}
        ),
        timeout=15,
        message=f"not every stuck service went down:\n{sidecar.log_tail()}",
    )
    pid = sidecar.process.pid if sidecar.process else 0

    def sleepers() -> list[int]:
        return [p for p in ns_pids(lab, "srv1") if cmdline(p).startswith(("sleep ", "sh -c"))]

    samples: list[dict[str, int]] = []
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        samples.append(
            {
                "fds": fd_count(pid),
                "sleepers": len(sleepers()),
                "held_sockets": _established_to(lab, port),
            }
        )
        time.sleep(0.5)
    reasons = {e["service"]: e["reason"] for e in sidecar.events("service_state_changed")}
    assert all("timeout" in reason for reason in reasons.values()), reasons
    # At most one probe per service in flight: hang (1) + fork (sh and two sleeps).
    assert max(s["sleepers"] for s in samples) <= 4, samples
    # Each slowloris probe's socket must be closed by us at the timeout: the server holds
    # its end, so an open one shows up as established (at most the one in flight, x2 ends).
    assert max(s["held_sockets"] for s in samples) <= 2, samples
    first, last = samples[1]["fds"], samples[-1]["fds"]
    assert last <= first + 3, samples
    assert not bgp_paths(lab, "leaf1", ANYCAST_V4)
    sidecar.stop()
    wait_until(lambda: not sleepers(), timeout=5, message="check processes outlived the sidecar")
    row.figures = {
        "sidecar_fds_first_last": [first, last],
        "max_check_processes": max(s["sleepers"] for s in samples),
        "max_open_slowloris_sockets": max(s["held_sockets"] for s in samples),
        "down_reasons": reasons,
        "seconds_observed": 8,
        "leftover_processes_after_stop": 0,
    }
    row.survived = True
    print(row.figures)
