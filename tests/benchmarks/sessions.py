"""Long-lived TCP sessions broken per fabric event, behind one leaf with N servers.

N servers (srv1..srvN) run the lab service and the sidecar (interval 0.2 s, fall 2) with
equal bandwidth, so leaf1 installs N equal-weight next hops and spreads new flows with
kernel hash-threshold ECMP over addresses, protocol and ports
(``fib_multipath_hash_policy=3``, ``fib_multipath_hash_fields=0x0037``, a per-router
seed; see containerlab/bench/bench.clab.yml). The client holds ``sessions`` sessions,
then one event happens to srvN (the *affected* server), and the client counts broken ones:

- failure: srvN's service is killed (its sidecar then withdraws);
- withdrawal: srvN's sidecar stops (SIGTERM: it withdraws; the service keeps running);
- drain: srvN's sidecar is drained through its API (``anycast-announcer drain``) with no
  drain hook: it waits ``connection_timeout`` (1 s here) for connections that never
  end, re-announces with GRACEFUL_SHUTDOWN, then withdraws; the service keeps running;
- weight change: srvN's sidecar reloads (SIGHUP) a config with half the bandwidth and
  re-announces the prefix with it;
- addition: srvN's sidecar starts while srv1..srvN-1 are announced.

Every event runs twice: rescue off, and rescue on (``anycast-announcer rescue install``
on srv1..srvN before their sidecars start, all N servers members; the sidecar itself does
not manage rescue yet). With rescue on, each row also has the rescue counters of all N
servers over the event: copies sent over the overlay per rescued packet accepted.

Next to each count: the floor a stateless fabric cannot beat (the failed or withdrawn
server's sessions; for an addition the hash-space share the new server takes; for a
weight change the share the server gives up; nothing for a drain) and the
hash-threshold expectation (``hashmath.movement``) for the kernel's actual next-hop order
before and after, applied to the sessions held, and the same had the kernel kept the old
next-hop order (RFC 2992's textbook case; FRR rebuilds the group and may reorder it).
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from anycast_announcer.netlab import Lab
from tests.benchmarks.common import (
    ANYCAST,
    SERVICE_PORT,
    CheckSettings,
    LabService,
    SidecarRunner,
    kernel_nexthops,
    server_address,
    start_hold,
    tcp_services,
    wait_for,
)
from tests.benchmarks.hashmath import movement

EVENTS = ("failure", "withdrawal", "drain", "weight_change", "addition")
SETTINGS = CheckSettings(interval=0.2, fall=2, rise=2, timeout=0.1)
SETTLE = 3.5
"""Seconds after the FIB changed for every broken session to notice (pings every 0.3 s)."""
BANDWIDTH = 10_000.0


class Fleet:
    """srv1..srvN with their services and sidecars (and rescue, when on)."""

    def __init__(self, lab: Lab, n: int, workdir: Path, rescue: bool = False) -> None:
        self.lab, self.n, self.workdir, self.rescue = lab, n, workdir, rescue
        self.services = {i: LabService(lab, f"srv{i}", workdir) for i in range(1, n + 1)}
        self.sidecars: dict[int, SidecarRunner] = {}
        self.token = workdir / "api-token"
        self.token.write_text(secrets.token_hex(16) + "\n", encoding="utf-8")
        self.token.chmod(0o600)

    def _extra(self, i: int) -> dict[str, Any]:
        """The API (for drain) on a unix socket, a quick drain, and rescue when on."""
        extra: dict[str, Any] = {
            "http": {
                "listen": "",
                "unix_socket": str(self.workdir / f"srv{i}-api.sock"),
                "token_file": str(self.token),
            },
            # No hook: wait 1 s for connections that never end, then GRACEFUL_SHUTDOWN
            # for 1 s, then withdraw.
            "drain": {"connection_timeout": 1.0, "graceful_shutdown_hold": 1.0},
        }
        if self.rescue:
            extra["rescue"] = {"members": [server_address(k) for k in range(1, self.n + 1)]}
        return extra

    def _runner(self, i: int) -> SidecarRunner:
        return SidecarRunner(
            self.lab,
            i,
            tcp_services(1, SETTINGS, port=SERVICE_PORT),
            self.workdir,
            bandwidth_mbps=BANDWIDTH,
            extra=self._extra(i),
        )

    def cli(self, i: int, *argv: str) -> str:
        """``anycast-announcer ARGV`` in srv i."""
        command = [sys.executable, "-m", "anycast_announcer", *argv]
        return self.lab.run(f"srv{i}", command).stdout

    def start_sidecar(self, i: int) -> None:
        sidecar = self._runner(i)
        sidecar.start()
        self.sidecars[i] = sidecar

    def stop_sidecar(self, i: int) -> None:
        self.sidecars.pop(i).stop()

    def start(self) -> None:
        for i, service in self.services.items():
            service.start()
            if self.rescue:
                # Before the sidecar may announce: no flow may reach a server without it.
                self.cli(i, "rescue", "install", "-c", str(self._runner(i).config_path))
            self.start_sidecar(i)
        self.wait_hops(self.n)

    def drain(self, i: int) -> None:
        socket_path = str(self.workdir / f"srv{i}-api.sock")
        self.cli(i, "drain", "--socket", socket_path, "--token-file", str(self.token))

    def counters(self) -> list[dict[str, Any]]:
        """Every server's rescue counters (``rescue status --json``)."""
        return [
            json.loads(self.cli(i, "rescue", "status", "--json"))["counters"]
            for i in range(1, self.n + 1)
        ]

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
        if self.rescue:
            for i in self.services:
                self.cli(i, "rescue", "remove")


_SOURCES = iter(range(10, 250))


def _fresh_source(lab: Lab) -> str:
    """A client address no earlier run used: a session's 4-tuple is never reused.

    One run's sessions can leave sockets behind on a server (a FIN nobody
    acknowledged); a later session on the same 4-tuple, moved to that server, would
    meet it and hang. Real clients spread over many addresses; the benchmark's one
    client would reuse ports within seconds.
    """
    address = f"10.0.100.{next(_SOURCES)}"
    lab.run("client", ["ip", "addr", "add", f"{address}/24", "dev", "eth1"])
    return address


def one_event(fleet: Fleet, event: str, sessions: int) -> dict[str, Any]:
    """Hold sessions, apply ``event`` to srvN, count, restore the fleet."""
    lab, n = fleet.lab, fleet.n
    affected = f"srv{n}"
    # Sessions of earlier runs that a reset ended on the client side are still open on
    # their server; a new session reusing the port would meet that socket. Abort them.
    for service in fleet.services.values():
        service.abort_sessions()
    time.sleep(0.5)
    if event == "addition":
        fleet.stop_sidecar(n)
        fleet.wait_hops(n - 1)
    tag = f"{n}-{event}-{'rescue' if fleet.rescue else 'plain'}"
    target = f"{ANYCAST}:{SERVICE_PORT}"
    hold, result_path = start_hold(lab, target, sessions, _fresh_source(lab), fleet.workdir, tag)
    before = kernel_nexthops(lab, "leaf1")
    counters_before = fleet.counters() if fleet.rescue else []
    try:
        if event == "failure":
            fleet.services[n].kill()
        elif event == "withdrawal":
            fleet.stop_sidecar(n)
        elif event == "drain":
            fleet.drain(n)
        elif event == "weight_change":
            fleet.sidecars[n].reload_with_bandwidth(BANDWIDTH / 2)
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
    rescue = _rescue_counts(counters_before, fleet.counters()) if fleet.rescue else None
    held = json.loads(result_path.read_text(encoding="utf-8"))["sessions"]
    _restore(fleet, event)
    row = _count(event, n, affected, held, before, after)
    row["rescue"] = fleet.rescue
    row["rescue_counters"] = rescue
    return row


def _rescue_counts(
    before: list[dict[str, Any]], after: list[dict[str, Any]]
) -> dict[str, int | float | None]:
    """Overlay copies, rescued packets, feedback, replicas and orphans over one event."""

    def peers(counters: list[dict[str, Any]], field: str) -> int:
        return sum(int(p[field]["packets"]) for c in counters for p in c["peers"])

    def glob(counters: list[dict[str, Any]], field: str) -> int:
        return sum(int(c[field]["packets"]) for c in counters)

    # Copies to one member by the flow directory (queries, and forwards by directory
    # members) are copies too; every VXLAN packet (feedback, registrations) is underlay.
    directory = sum(
        glob(after, name) - glob(before, name) for name in ("dir_queries", "dir_forwarded")
    )
    copies = peers(after, "forwarded") - peers(before, "forwarded") + directory
    rescued = peers(after, "received") - peers(before, "received")
    feedback = peers(after, "feedback_sent") - peers(before, "feedback_sent")
    underlay = glob(after, "underlay_sent") - glob(before, "underlay_sent")
    return {
        "copies": copies,
        "directory_copies": directory,
        "underlay_sent": underlay,
        "underlay_per_rescued": underlay / rescued if rescued else None,
        "rescued": rescued,
        "refused": peers(after, "refused") - peers(before, "refused"),
        "feedback": feedback,
        "replicated": glob(after, "replicated") - glob(before, "replicated"),
        "orphans": glob(after, "orphans") - glob(before, "orphans"),
        "copies_per_rescued": copies / rescued if rescued else None,
        "feedback_per_rescued": feedback / rescued if rescued else None,
    }


def _restore(fleet: Fleet, event: str) -> None:
    n = fleet.n
    if event == "failure":
        fleet.services[n].kill()
        fleet.services[n].start()
    if event in ("withdrawal", "drain", "weight_change"):
        if n in fleet.sidecars:
            fleet.stop_sidecar(n)
            fleet.wait_hops(n - 1)
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
    return {
        "event": event,
        "servers": n,
        "sessions": total,
        "failed_to_open": len(held) - total,
        "on_affected": on_affected,
        "broken": broken_affected + broken_others,
        "broken_on_affected": broken_affected,
        "broken_on_others": broken_others,
        "broken_by_reason": dict(
            Counter(str(s["reason"]) for s in opened if s["state"] == "broken")
        ),
        "drained": drained,
        "survived": sum(1 for s in opened if s["state"] == "open"),
        "floor": floor,
        "hash_threshold_expected": expected,
        "hash_threshold_order_kept": textbook,
        "next_hops_before": before,
        "next_hops_after": after,
        "simulated": False,
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
    rescue_modes: tuple[bool, ...] = (False, True),
) -> list[dict[str, Any]]:
    """Every event at every N, rescue off and on."""
    rows = []
    for n in server_counts:
        for rescue in rescue_modes:
            fleet = Fleet(lab, n, workdir, rescue=rescue)
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
