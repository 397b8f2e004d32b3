"""Long-lived TCP sessions broken per fabric event, behind one leaf with N servers.

N servers (srv1..srvN) run the lab service and the sidecar (interval 0.2 s, fall 2) with
equal bandwidth, so leaf1 installs N equal-weight next hops and spreads new flows with
kernel hash-threshold ECMP over addresses, protocol and ports
(``fib_multipath_hash_policy=3``, ``fib_multipath_hash_fields=0x0037``, a per-router
seed; see containerlab/bench/bench.clab.yml). The client holds ``sessions`` sessions,
then one event happens to srvN (the *affected* server), and the client counts broken ones:

- failure: srvN's service is killed (its sidecar then withdraws);
- withdrawal: srvN's sidecar stops (SIGTERM: it withdraws; the service keeps running);
- drain (**simulated**): srvN's service says ``BYE`` and closes its sessions, then its
  sidecar withdraws; this stands in for the drain feature asking the application to close
  long-lived sessions before withdrawal;
- weight change (**simulated**): the sidecar cannot change a weight without a restart
  yet, so for this event srvN announces through a bare ExaBGP fed by the benchmark, which
  re-announces the prefix with half the link bandwidth, the UPDATE a sidecar reload would
  send. (Halving it with an inbound route-map on leaf1 instead made FRR 8.4 install
  weights 66/66 rather than 66/33 here, so the leaf cannot fake it.)
- addition: srvN's sidecar starts while srv1..srvN-1 are announced.

Next to each count: the floor a stateless fabric cannot beat (the failed or withdrawn
server's sessions; for an addition the hash-space share the new server takes; for a
weight change the share the server gives up; nothing for an honoured drain) and the
hash-threshold expectation (``hashmath.movement``) for the kernel's actual next-hop order
before and after, applied to the sessions held, and the same had the kernel kept the old
next-hop order (RFC 2992's textbook case; FRR rebuilds the group and may reorder it).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from anycast_announcer.netlab import Lab
from anycast_announcer.routes import link_bandwidth_community
from tests.benchmarks.common import (
    ANYCAST,
    ANYCAST_PREFIX,
    EXABGP,
    EXABGP_ENV,
    LEAF_AS,
    SERVICE_PORT,
    CheckSettings,
    LabService,
    SidecarRunner,
    kernel_nexthops,
    leaf_address,
    server_address,
    server_as,
    tcp_services,
    wait_for,
)
from tests.benchmarks.hashmath import movement
from tests.lablib import REPO_ROOT

EVENTS = ("failure", "withdrawal", "drain", "weight_change", "addition")
SETTINGS = CheckSettings(interval=0.2, fall=2, rise=2, timeout=0.1)
SETTLE = 3.5
"""Seconds after the FIB changed for every broken session to notice (pings every 0.3 s)."""


class Fleet:
    """srv1..srvN with their services and sidecars."""

    def __init__(self, lab: Lab, n: int, workdir: Path) -> None:
        self.lab, self.n, self.workdir = lab, n, workdir
        self.services = {i: LabService(lab, f"srv{i}", workdir) for i in range(1, n + 1)}
        self.sidecars: dict[int, SidecarRunner] = {}

    def start_sidecar(self, i: int) -> None:
        sidecar = SidecarRunner(
            self.lab, i, tcp_services(1, SETTINGS, port=SERVICE_PORT), self.workdir
        )
        sidecar.start()
        self.sidecars[i] = sidecar

    def stop_sidecar(self, i: int) -> None:
        self.sidecars.pop(i).stop()

    def start(self) -> None:
        for i, service in self.services.items():
            service.start()
            self.start_sidecar(i)
        self.wait_hops(self.n)

    def wait_hops(self, count: int, timeout: float = 60) -> None:
        wait_for(
            lambda: len(kernel_nexthops(self.lab, "leaf1")) == count,
            timeout,
            f"leaf1 never reached {count} next hops",
        )

    def stop(self) -> None:
        for i in list(self.sidecars):
            self.stop_sidecar(i)
        for service in self.services.values():
            service.kill()


def _hold(lab: Lab, sessions: int, workdir: Path, tag: str) -> tuple[subprocess.Popen[Any], Path]:
    ready, result = workdir / f"hold-{tag}.ready", workdir / f"hold-{tag}.json"
    for path in (ready, result):
        path.unlink(missing_ok=True)
    process = lab.popen(
        "client",
        [
            sys.executable,
            "-m",
            "tests.benchmarks.labtools",
            "hold",
            "--target",
            f"{ANYCAST}:{SERVICE_PORT}",
            "--sessions",
            str(sessions),
            "--ready-file",
            str(ready),
            "--result-file",
            str(result),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for(ready.exists, 60, "the client never opened its sessions")
    return process, result


class ManualSpeaker:
    """A bare ExaBGP on a server whose API process follows a file of text commands."""

    def __init__(self, lab: Lab, i: int, workdir: Path) -> None:
        self.lab, self.i = lab, i
        self.commands = workdir / f"srv{i}-commands.txt"
        self.commands.write_text("", encoding="utf-8")
        self.config = workdir / f"srv{i}-manual.conf"
        self.config.write_text(
            f"process feed {{\n    run /usr/bin/tail -n +1 -F {self.commands};\n"
            "    encoder text;\n}\n"
            f"neighbor {leaf_address(i)} {{\n    router-id {server_address(i)};\n"
            f"    local-address {server_address(i)};\n    local-as {server_as(i)};\n"
            f"    peer-as {LEAF_AS};\n    hold-time 3;\n    family {{ ipv4 unicast; }}\n"
            "    api { processes [ feed ]; }\n}\n",
            encoding="utf-8",
        )
        self.process: subprocess.Popen[Any] | None = None

    def start(self, bandwidth_mbps: float) -> None:
        self.announce(bandwidth_mbps)
        self.process = self.lab.popen(
            f"srv{self.i}",
            [EXABGP, "server", str(self.config)],
            env=EXABGP_ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )

    def announce(self, bandwidth_mbps: float) -> None:
        community = link_bandwidth_community(server_as(self.i), bandwidth_mbps * 1e6)
        with self.commands.open("a", encoding="utf-8") as commands:
            commands.write(
                f"announce route {ANYCAST_PREFIX} next-hop self "
                f"extended-community [ {community} ]\n"
            )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def one_event(fleet: Fleet, event: str, sessions: int) -> dict[str, Any]:
    """Hold sessions, apply ``event`` to srvN, count, restore the fleet."""
    lab, n = fleet.lab, fleet.n
    affected = f"srv{n}"
    manual = None
    if event == "addition":
        fleet.stop_sidecar(n)
        fleet.wait_hops(n - 1)
    elif event == "weight_change":
        fleet.stop_sidecar(n)
        fleet.wait_hops(n - 1)
        manual = ManualSpeaker(lab, n, fleet.workdir)
        manual.start(10_000)
        fleet.wait_hops(n)
    hold, result_path = _hold(lab, sessions, fleet.workdir, f"{n}-{event}")
    before = kernel_nexthops(lab, "leaf1")
    try:
        if event == "failure":
            fleet.services[n].kill()
        elif event == "withdrawal":
            fleet.stop_sidecar(n)
        elif event == "drain":
            fleet.services[n].drain()
            time.sleep(0.5)
            fleet.stop_sidecar(n)
        elif event == "weight_change":
            assert manual is not None
            manual.announce(5_000)
        else:
            fleet.start_sidecar(n)
        wait_for(
            lambda: kernel_nexthops(lab, "leaf1") != before,
            30,
            f"{event}: leaf1's next hops never changed",
        )
        after = kernel_nexthops(lab, "leaf1")
        time.sleep(SETTLE)
    finally:
        hold.send_signal(signal.SIGTERM)
        hold.wait(timeout=30)
    held = json.loads(result_path.read_text(encoding="utf-8"))["sessions"]
    if manual is not None:
        manual.stop()
        fleet.wait_hops(n - 1)
    _restore(fleet, event)
    return _count(event, n, affected, held, before, after)


def _restore(fleet: Fleet, event: str) -> None:
    n = fleet.n
    if event in ("failure", "drain"):
        fleet.services[n].kill()
        fleet.services[n].start()
    if event in ("withdrawal", "drain", "weight_change"):
        fleet.start_sidecar(n)
    fleet.wait_hops(n)


def _count(
    event: str,
    n: int,
    affected: str,
    held: list[dict[str, Any]],
    before: list[tuple[str, int]],
    after: list[tuple[str, int]],
) -> dict[str, Any]:
    opened = [s for s in held if s["state"] != "failed"]
    on_affected = sum(1 for s in opened if s["server"] == affected)
    broken_affected = sum(1 for s in opened if s["state"] == "broken" and s["server"] == affected)
    broken_others = sum(1 for s in opened if s["state"] == "broken" and s["server"] != affected)
    drained = sum(1 for s in opened if s["state"] == "drained")
    moved = movement(before, after)
    total = len(opened)
    affected_hop = server_address(n)
    share_before = _share(before, affected_hop)
    share_after = _share(after, affected_hop)
    if event in ("failure", "withdrawal"):
        floor = float(on_affected)
    elif event == "addition":
        floor = moved.to_added * total
    elif event == "weight_change":
        floor = max(0.0, share_before - share_after) * total
    else:
        floor = 0.0
    # Hash-threshold: every flow whose next hop changes breaks, except sessions the
    # drain closed gracefully first.
    expected = moved.moved * total
    # The same change had the kernel kept the surviving next hops in their old order:
    # RFC 2992's textbook case. FRR rebuilds the group, and its order can change.
    order = {hop: index for index, (hop, _) in enumerate(before)}
    kept = sorted(after, key=lambda hop: order.get(hop[0], len(before)))
    textbook = movement(before, kept).moved * total
    if event == "drain":
        expected -= share_before * total
        textbook -= share_before * total
    return {
        "event": event,
        "servers": n,
        "sessions": total,
        "failed_to_open": len(held) - total,
        "on_affected": on_affected,
        "broken": broken_affected + broken_others,
        "broken_on_affected": broken_affected,
        "broken_on_others": broken_others,
        "drained": drained,
        "survived": sum(1 for s in opened if s["state"] == "open"),
        "floor": floor,
        "hash_threshold_expected": expected,
        "hash_threshold_order_kept": textbook,
        "next_hops_before": before,
        "next_hops_after": after,
        "simulated": event in ("drain", "weight_change"),
    }


def _share(hops: list[tuple[str, int]], hop: str) -> float:
    total = sum(weight for _, weight in hops)
    return sum(weight for name, weight in hops if name == hop) / total if total else 0.0


def run(
    lab: Lab,
    server_counts: list[int],
    sessions: int,
    workdir: Path,
    events: tuple[str, ...] = EVENTS,
) -> list[dict[str, Any]]:
    """Every event at every N."""
    rows = []
    for n in server_counts:
        fleet = Fleet(lab, n, workdir)
        try:
            fleet.start()
            rows += [one_event(fleet, event, sessions) for event in events]
        finally:
            fleet.stop()
            wait_for(
                lambda: not kernel_nexthops(lab, "leaf1"),
                30,
                "leaf1 still routes the prefix after the fleet stopped",
            )
    return rows
