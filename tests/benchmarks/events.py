"""Event sources measured on their own (no sidecar, no BGP): latency and cost.

    sudo .venv/bin/python -m tests.benchmarks.events [--quick] [--docs DIR]

Lab: tests/integration/events/events.clab.yml (srv with the anycast address on lo, a
client one veth away). The watchers run in srv as their own process
(``tests.benchmarks.events_agent watch``), which prints each event stamped with
CLOCK_MONOTONIC, the same clock this process reads, so latencies need no clock sync.

- **Listener gone**: a service (``tests.integration.events.tcpproc serve``) listens on
  10.255.0.1:8080; we stamp, then SIGKILL it (or SIGTERM, on which it closes its
  listener itself), and read the agent's confirmed ListenerGone. Latency = event stamp
  minus our stamp: process death, socket free, the kernel's destroy broadcast (a work
  queue), the filter, and the confirming LISTEN dump.
- **Churn cost**: the client opens and closes connections on the watched port at a
  paced 2,000 a second (the server closes first); we read the agent's utime+stime from
  /proc over the load window and over an idle window of the same length, and its
  counter of messages that reached user space. The same is measured with an agent
  that subscribes without the kernel filter, to show what the filter saves.
- **close() to broadcast**: the kernel's share alone: a listener made and closed by this
  process in srv, timed to its destroy message on a filtered subscriber of our own.
- **Address removed / added**: we send RTM_DELADDR (then RTM_NEWADDR) for 10.255.0.1/32
  on lo ourselves, from a socket opened in srv, stamped just before the send, and read
  the agent's AddressEvent.

Writes docs/benchmarks/events.json and prints a summary.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from anycast_announcer.events.netlink import error_code, messages, open_socket, pack_request
from anycast_announcer.events.sockdiag import (
    NETLINK_SOCK_DIAG,
    SKNLGRP_INET_TCP_DESTROY,
    destroy_filter,
    pack_filter,
)
from anycast_announcer.netlab import Lab
from tests.benchmarks.common import machine, summary, tree_cpu
from tests.integration.events.netns import entered
from tests.integration.events.support import TcpProcesses
from tests.lablib import REPO_ROOT, deployed

log = logging.getLogger("benchmarks.events")

TOPOLOGY = REPO_ROOT / "tests" / "integration" / "events" / "events.clab.yml"
ANYCAST = "10.255.0.1"
PORT = 8080
LO_INDEX = 1
_EVENT_TIMEOUT = 5.0


@dataclass(frozen=True, slots=True)
class Sizes:
    """How big the run is."""

    kills: int
    graceful: int
    address_cycles: int
    churn_seconds: float
    churn_rate: float


FULL = Sizes(kills=200, graceful=100, address_cycles=200, churn_seconds=30, churn_rate=2000)
QUICK = Sizes(kills=20, graceful=10, address_cycles=20, churn_seconds=5, churn_rate=2000)


class Agent:
    """events_agent watch, running in srv; events are read from its stdout."""

    def __init__(
        self,
        lab: Lab,
        unfiltered: bool = False,
        wrapper: Sequence[str] = (),
        python: str = sys.executable,
        env: dict[str, str] | None = None,
        cwd: Path = REPO_ROOT,
    ) -> None:
        argv = [*wrapper, python, "-m", "tests.benchmarks.events_agent", "watch", ANYCAST]
        self.proc: subprocess.Popen[str] = lab.popen(
            "srv",
            [*argv, str(PORT), *(["--unfiltered"] if unfiltered else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=env,
        )
        self.stray: list[dict[str, Any]] = []
        self.next("ready", 30)

    def next(self, kind: str, timeout: float = _EVENT_TIMEOUT) -> dict[str, Any]:
        """The next line of ``kind``; other kinds are kept as strays (there should be none)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.1)
            if not ready:
                continue
            line = self.proc.stdout.readline()
            if not line:
                break
            event: dict[str, Any] = json.loads(line)
            if event["kind"] == kind:
                return event
            self.stray.append(event)
        raise TimeoutError(f"agent sent no {kind!r} within {timeout:g}s (exit {self.proc.poll()})")

    def counters(self) -> dict[str, Any]:
        """The agent's counters now."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("counters\n")
        self.proc.stdin.flush()
        return self.next("counters")

    def cpu(self) -> float:
        """utime+stime seconds of the agent so far."""
        return sum(tree_cpu(self.proc.pid).values())

    def close(self) -> None:
        """End of input stops it; kill it if it does not go."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def listener_latencies(lab: Lab, agent: Agent, runs: int, graceful: bool) -> list[float]:
    """Seconds from our stamp (before the signal) to the agent's ListenerGone."""
    tcp = TcpProcesses(lab)
    latencies = []
    try:
        for _ in range(runs):
            service = tcp.serve(ANYCAST, PORT)
            started = time.monotonic()
            service.send_signal(signal.SIGTERM if graceful else signal.SIGKILL)
            event = agent.next("listener_gone")
            latencies.append(event["t"] - started)
            service.wait(timeout=10)
    finally:
        tcp.close()
    return latencies


def churn_cost(lab: Lab, sizes: Sizes, unfiltered: bool) -> dict[str, Any]:
    """Agent CPU over an idle window and over a window of paced client churn."""
    agent = Agent(lab, unfiltered)
    tcp = TcpProcesses(lab)
    try:
        tcp.serve(ANYCAST, PORT)
        cpu_idle_start = agent.cpu()
        time.sleep(sizes.churn_seconds)
        idle_cpu = agent.cpu() - cpu_idle_start
        before = agent.counters()
        cpu_start = agent.cpu()
        argv = [sys.executable, "-m", "tests.benchmarks.events_agent", "load", ANYCAST, str(PORT)]
        argv += [str(sizes.churn_rate), str(sizes.churn_seconds)]
        result = lab.run("client", argv, timeout=sizes.churn_seconds * 4 + 60)
        load_cpu = agent.cpu() - cpu_start
        after = agent.counters()
    finally:
        tcp.close()
        agent.close()
    load = json.loads(result.stdout.strip().splitlines()[-1])
    return {
        "kernel_filter": not unfiltered,
        "idle_cpu_percent": idle_cpu / sizes.churn_seconds * 100,
        "load_cpu_percent": load_cpu / load["seconds"] * 100,
        "added_cpu_percent": (load_cpu / load["seconds"] - idle_cpu / sizes.churn_seconds) * 100,
        "connections": load["connections"],
        "failed_connections": load["failed"],
        "connections_per_second": load["connections"] / load["seconds"],
        "messages_to_user_space": after["messages"] - before["messages"],
        "events": after.get("confirmed", 0) - before.get("confirmed", 0),
        "stray_events": agent.stray,
    }


def _address_request(kind: int, flags: int) -> bytes:
    attr = struct.pack("=HH", 8, 2) + socket.inet_aton(ANYCAST)  # IFA_LOCAL
    attr += struct.pack("=HH", 8, 1) + socket.inet_aton(ANYCAST)  # IFA_ADDRESS
    payload = struct.pack("=BBBBI", socket.AF_INET, 32, 0, 0, LO_INDEX) + attr
    return pack_request(kind, 0x1 | 0x4 | flags, 1, payload)  # REQUEST | ACK


def _change_address(sock: socket.socket, request: bytes) -> None:
    sock.send(request)
    for message in messages(sock.recv(65536)):
        if message.type == 2 and error_code(message):
            raise OSError(error_code(message), "address change refused")


def address_latencies(lab: Lab, agent: Agent, cycles: int) -> dict[str, list[float]]:
    """Seconds from our RTM_DELADDR / RTM_NEWADDR to the agent's AddressEvent."""
    with entered(lab.ns("srv")):
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    removed, added = [], []
    delete = _address_request(21, 0)
    create = _address_request(20, 0x400 | 0x200)  # CREATE | EXCL
    try:
        for _ in range(cycles):
            started = time.monotonic()
            _change_address(sock, delete)
            event = agent.next("address")
            assert event["present"] is False, event
            removed.append(event["t"] - started)
            started = time.monotonic()
            _change_address(sock, create)
            event = agent.next("address")
            assert event["present"] is True, event
            added.append(event["t"] - started)
    finally:
        sock.close()
        lab.run("srv", ["ip", "addr", "replace", f"{ANYCAST}/32", "dev", "lo"])
    return {"removed": removed, "added": added}


def broadcast_latencies(lab: Lab, runs: int) -> list[float]:
    """Seconds from close() of a listener to its destroy message in user space.

    The kernel's part alone: no process death, no confirmation. Both sockets are made
    in srv by this process; the netlink one carries the watch's kernel filter.
    """
    with entered(lab.ns("srv")):
        events = open_socket(NETLINK_SOCK_DIAG, 1 << (SKNLGRP_INET_TCP_DESTROY - 1))
    latencies = []
    try:
        events.setblocking(True)
        events.settimeout(_EVENT_TIMEOUT)
        code = destroy_filter([PORT + 1])
        buffer = ctypes.create_string_buffer(pack_filter(code))
        fprog = struct.pack("@HP", len(code), ctypes.addressof(buffer))
        events.setsockopt(socket.SOL_SOCKET, 26, fprog)  # SO_ATTACH_FILTER
        for _ in range(runs):
            with entered(lab.ns("srv")):
                listener = socket.socket()
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((ANYCAST, PORT + 1))
            listener.listen()
            started = time.monotonic()
            listener.close()
            events.recv(65536)
            latencies.append(time.monotonic() - started)
    finally:
        events.close()
    return latencies


def _ms(values: list[float]) -> dict[str, float | int]:
    return summary([v * 1000 for v in values])


def collect(sizes: Sizes) -> dict[str, Any]:
    """Deploy the lab once and run every measurement."""
    results: dict[str, Any] = {
        "machine": machine(),
        "run": {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "sizes": asdict(sizes)},
    }
    with deployed(TOPOLOGY) as lab:
        lab.run("client", ["sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000"])
        agent = Agent(lab)
        try:
            log.info("listener latency: %d SIGKILL, %d SIGTERM", sizes.kills, sizes.graceful)
            results["sigkill_ms"] = _ms(listener_latencies(lab, agent, sizes.kills, False))
            results["graceful_ms"] = _ms(listener_latencies(lab, agent, sizes.graceful, True))
            results["close_to_broadcast_ms"] = _ms(broadcast_latencies(lab, sizes.kills))
            log.info("address latency: %d cycles", sizes.address_cycles)
            addresses = address_latencies(lab, agent, sizes.address_cycles)
            results["address_removed_ms"] = _ms(addresses["removed"])
            results["address_added_ms"] = _ms(addresses["added"])
            results["stray_events"] = agent.stray
        finally:
            agent.close()
        log.info("churn: %g connections/s for %gs", sizes.churn_rate, sizes.churn_seconds)
        results["churn"] = [churn_cost(lab, sizes, unfiltered) for unfiltered in (False, True)]
    return results


def render(results: dict[str, Any]) -> str:
    """A short markdown summary of the results."""
    lines = ["| measurement | n | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for key, label in (
        ("close_to_broadcast_ms", "close() of a listener -> its destroy message (kernel only)"),
        ("sigkill_ms", "SIGKILL of the listener -> confirmed ListenerGone"),
        ("graceful_ms", "SIGTERM (service closes its listener) -> ListenerGone"),
        ("address_removed_ms", "RTM_DELADDR on lo -> AddressEvent(present=False)"),
        ("address_added_ms", "RTM_NEWADDR on lo -> AddressEvent(present=True)"),
    ):
        row = results[key]
        lines.append(
            f"| {label} | {row['n']} | {row['p50']:.2f} | {row['p99']:.2f} | {row['max']:.2f} |"
        )
    lines += [
        "",
        "| kernel filter | conn/s | msgs to user space | idle CPU % | load CPU % | added % |",
        "|---|---|---|---|---|---|",
    ]
    for row in results["churn"]:
        lines.append(
            f"| {'on' if row['kernel_filter'] else 'off'} | {row['connections_per_second']:.0f} | "
            f"{row['messages_to_user_space']} | {row['idle_cpu_percent']:.2f} | "
            f"{row['load_cpu_percent']:.2f} | {row['added_cpu_percent']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, under a minute")
    parser.add_argument(
        "--docs", type=Path, default=REPO_ROOT / "docs", help="where benchmarks/ is"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    results = collect(QUICK if args.quick else FULL)
    results["run"]["quick"] = args.quick
    out = args.docs / "benchmarks" / "events.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(render(results))
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
